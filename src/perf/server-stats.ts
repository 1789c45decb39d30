// Server-side queue and compute times from the OIP statistics extension (Triton's
// GET /v2/models/{model}/stats shape), as deltas between two snapshots. Absent or different
// endpoints give null: the report then says the server did not expose them.

import { fetchGrpcStatistics } from './grpc-connection.js';

interface Duration { count?: number; ns?: number }
interface ModelStats {
  name?: string;
  version?: string;
  inference_stats?: Record<string, Duration | undefined>;
}

export interface StatsSnapshot {
  queueNs: number;
  queueCount: number;
  computeNs: number;
  computeCount: number;
}

/** `grpc`: ask the gRPC statistics RPC at `url` (a gRPC address) instead of the HTTP route. */
export async function fetchStatsSnapshot(url: string, model: string, version?: string, grpc = false): Promise<StatsSnapshot | null> {
  const path = version
    ? `/v2/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/stats`
    : `/v2/models/${encodeURIComponent(model)}/stats`;
  try {
    let body: { model_stats?: ModelStats[] };
    if (grpc) {
      body = ((await fetchGrpcStatistics(url, model, version)) ?? {}) as typeof body;
    } else {
      const res = await fetch(`${url.replace(/\/$/, '')}${path}`, { signal: AbortSignal.timeout(2000) });
      if (!res.ok) return null;
      body = (await res.json()) as typeof body;
    }
    if (!Array.isArray(body.model_stats)) return null;
    const snap: StatsSnapshot = { queueNs: 0, queueCount: 0, computeNs: 0, computeCount: 0 };
    let seen = false;
    for (const m of body.model_stats) {
      if (m.name !== undefined && m.name !== model) continue;
      if (version !== undefined && m.version !== undefined && m.version !== version) continue;
      const s = m.inference_stats;
      if (!s) continue;
      seen = true;
      snap.queueNs += s['queue']?.ns ?? 0;
      snap.queueCount += s['queue']?.count ?? 0;
      for (const k of ['compute_input', 'compute_infer', 'compute_output']) snap.computeNs += s[k]?.ns ?? 0;
      snap.computeCount += s['compute_infer']?.count ?? 0;
    }
    return seen ? snap : null;
  } catch {
    return null;
  }
}

/** Mean queue and compute milliseconds per request between two snapshots. */
export function statsBetween(before: StatsSnapshot | null, after: StatsSnapshot | null): { queueMs: number | null; computeMs: number | null } {
  if (!before || !after) return { queueMs: null, computeMs: null };
  const q = after.queueCount - before.queueCount;
  const c = after.computeCount - before.computeCount;
  return {
    queueMs: q > 0 ? (after.queueNs - before.queueNs) / q / 1e6 : null,
    computeMs: c > 0 ? (after.computeNs - before.computeNs) / c / 1e6 : null,
  };
}

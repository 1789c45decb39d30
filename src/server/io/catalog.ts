// Which signature each loaded version has, so an I/O thread can parse and validate requests
// itself. The core's thread builds it from the repository and sends it on every load and unload;
// a request the catalog cannot vouch for goes to the core's thread unparsed.
import { createHash } from 'node:crypto';
import type { ModelManager } from '../../repository/manager.js';
import type { ModelSignature } from '../../protocol/types.js';
import type { Catalog } from './wire.js';

const fingerprints = new WeakMap<ModelSignature, string>();

/** A short digest of everything parsing checks against (names, datatypes, dims, batch size). */
export function signatureFingerprint(signature: ModelSignature): string {
  let fp = fingerprints.get(signature);
  if (fp === undefined) {
    fp = createHash('sha1').update(JSON.stringify(signature)).digest('base64');
    fingerprints.set(signature, fp);
  }
  return fp;
}

export function buildCatalog(manager: ModelManager): Catalog {
  const catalog: Catalog = { models: {}, signatures: {} };
  for (const name of manager.names()) {
    const versions: Record<string, string> = {};
    const seen = new Set<string>();
    for (const mv of manager.versionsOf(name)) {
      const fp = signatureFingerprint(mv.signature);
      versions[mv.version] = fp;
      seen.add(fp);
      catalog.signatures[fp] = mv.signature;
    }
    // An unversioned request may be routed to any loaded version (canary, rollout): it can be
    // parsed ahead of routing only when every version takes the same inputs.
    catalog.models[name] = { versions, uniform: seen.size === 1 ? [...seen][0]! : null };
  }
  return catalog;
}

/** The I/O thread's copy. Signature objects stay the same while their fingerprint does (parsers cache per object). */
export class CatalogView {
  private catalog: Catalog = { models: {}, signatures: {} };
  private readonly objects = new Map<string, ModelSignature>();

  update(next: Catalog): void {
    this.catalog = next;
    for (const fp of [...this.objects.keys()]) if (!(fp in next.signatures)) this.objects.delete(fp);
    for (const [fp, sig] of Object.entries(next.signatures)) if (!this.objects.has(fp)) this.objects.set(fp, sig);
  }

  /** The signature a request for (model, version) can be parsed against, or undefined. */
  lookup(model: string, version: string | undefined): { fp: string; signature: ModelSignature } | undefined {
    const entry = Object.prototype.hasOwnProperty.call(this.catalog.models, model) ? this.catalog.models[model] : undefined;
    if (!entry) return undefined;
    const fp = version === undefined || version === '' ? entry.uniform : Object.prototype.hasOwnProperty.call(entry.versions, version) ? entry.versions[version] : undefined;
    if (fp === undefined || fp === null) return undefined;
    const signature = this.objects.get(fp);
    return signature ? { fp, signature } : undefined;
  }
}

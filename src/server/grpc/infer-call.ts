// One ModelInferRequest through the core: validated against the model as REST validates it, run
// by the same entry point (routing, batcher, traffic policy, shadows, monitoring), answered as
// ModelInferResponse bytes. Unary calls and streams both come through here.
import { SignatureChanged } from '../../core/front.js';
import type { RequestContext } from '../../core/hooks.js';
import type { Umbra } from '../../core/umbra.js';
import { binaryOutputsFor, parseInferRequest, placeSharedOutputs, type InferRequest } from '../../protocol/index.js';
import type { WireInferRequest, WireInferResponse } from '../../protocol/proto/infer-messages.js';
import type { AbortLike } from '../../scheduler/cancellation.js';
import { signatureFingerprint, type CatalogView } from '../io/catalog.js';
import type { GrpcCall } from './call.js';
import { binaryBody, wireAnswer, tensorBody, toBinaryForm } from './infer-request.js';

export interface InferDeps {
  core: Umbra;
  /** The loaded versions' signatures, kept current by the server. */
  catalog: CatalogView;
}

/** The request's metadata as the core's context: lower-case text entries, the canary key from x-umbra-key. */
export function contextOf(call: GrpcCall): RequestContext {
  const headers = call.textMetadata();
  const context: RequestContext = { headers, transport: 'grpc' };
  const key = headers['x-umbra-key'];
  if (key) context.routingKey = key;
  return context;
}

/**
 * Parsed here when every version the request may be routed to takes the same inputs (the common
 * case: no JSON at all); otherwise, or when the parse fails, or when routing picks a version of
 * another signature, the core parses the binary-extension form itself, words any error as REST
 * does and counts it in the metrics.
 */
export async function runInfer(deps: InferDeps, wire: WireInferRequest, context: RequestContext, signal: AbortLike): Promise<WireInferResponse> {
  const model = wire.modelName;
  const version = wire.modelVersion === '' ? undefined : wire.modelVersion;
  // While its version refuses every request, refused before its tensors are read (Umbra.refuseEarly).
  const refused = deps.core.refuseEarly(model, version, context);
  if (refused) throw refused;
  const form = toBinaryForm(wire);
  const known = deps.catalog.lookup(model, version);
  if (known) {
    let request: InferRequest | undefined;
    try {
      const shm = deps.core.sharedMemory;
      request = parseInferRequest(tensorBody(form.chunks), { signature: known.signature, header: form.header, headerLength: 1, ...(shm.enabled ? { sharedMemory: shm.table } : {}) });
    } catch {
      request = undefined;
    }
    if (request) {
      if (form.id !== undefined) request.id = form.id;
      const fp = known.fp;
      try {
        const { response } = await deps.core.infer(model, version, request, { context, signal, accepts: (sig) => signatureFingerprint(sig) === fp });
        return wireAnswer(placeSharedOutputs(request, response, deps.core.sharedMemory.table), form.raw, request.binaryDataOutput, binaryOutputsFor(request));
      } catch (err) {
        if (!(err instanceof SignatureChanged)) throw err;
      }
    }
  }
  const { body, headerLength } = binaryBody(form);
  const result = await deps.core.inferBody(model, version, body, headerLength, { context, signal });
  const binaryDataOutput = form.header.parameters['binary_data_output'];
  return wireAnswer(result.response, form.raw, typeof binaryDataOutput === 'boolean' ? binaryDataOutput : undefined, result.binaryOutputs);
}

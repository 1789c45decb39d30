// POST /v2/models/{m}[/versions/{v}]/infer as a transport-free reply: the same code answers it on
// the core's thread and on an I/O thread (which parses and encodes there and hands the parsed
// request to the core's thread).
import { UmbraError } from '../errors.js';
import { encodeInferResponseText } from '../protocol/index.js';
import type { RequestContext } from '../core/hooks.js';
import type { InferBodyOptions, InferenceFront } from '../core/front.js';
import type { ApiReply, ApiRequest } from './api.js';

export async function inferReply(front: InferenceFront, req: ApiRequest, model: string, version?: string): Promise<ApiReply> {
  const encoding = req.headers['content-encoding'];
  if (encoding && encoding !== 'identity') throw new UmbraError('UNSUPPORTED_MEDIA_TYPE', `content-encoding '${encoding}' is not supported; send the body uncompressed`);
  const headerLength = parseHeaderLength(req.headers['inference-header-content-length']);
  const context: RequestContext = { headers: req.headers, transport: 'http' };
  const key = req.headers['x-umbra-key'];
  if (key) context.routingKey = key;
  const options: InferBodyOptions = { context };
  if (req.signal) options.signal = req.signal;
  if (req.receivedAt !== undefined) options.receivedAt = req.receivedAt;
  const result = await front.inferBody(model, version, req.body, headerLength, options);
  const encoded = encodeInferResponseText(result.response, { binaryOutputs: result.binaryOutputs }, req.replyBuffer);
  const headers: Record<string, string> = {};
  if (encoded.headerLength !== undefined) {
    headers['content-type'] = 'application/octet-stream';
    headers['inference-header-content-length'] = String(encoded.headerLength);
  } else {
    headers['content-type'] = 'application/json';
  }
  headers['x-umbra-version'] = result.response.model_version;
  return { status: 200, headers, body: encoded.body };
}

function parseHeaderLength(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new UmbraError('INVALID_INPUT', `expected a non-negative integer for the Inference-Header-Content-Length header but received '${value.slice(0, 40)}'`);
  return Number(value);
}

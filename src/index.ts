// Umbra as a library: start the same server in-process, or predict with no HTTP hop at all.
export { Umbra, type UmbraOptions, type PredictInput, type PredictOptions, type InferRequestInput } from './core/umbra.js';
export { UmbraServer, startServer, DEFAULTS, type ServerOptions } from './server/server.js';
export { UmbraError, ERROR_CODES, type ErrorCode } from './errors.js';
export type { InferRequest, InferResponse, Tensor, DataType, TensorData, ModelSignature, TensorSpec } from './protocol/types.js';
export { VERSION } from './version.js';
export {
  runBatchJob, BatchInterrupted, openStore, predictionStorePlugin, parseShard, parseStaleness,
  type BatchJobOptions, type BatchSummary, type PredictionStore, type StoredPrediction, type PredictionService,
} from './batch/index.js';
export { UmbraApp, type AppOptions } from './app.js';
export type { PluginContext } from './api/plugin.js';
export { trafficPlugin, type TrafficController } from './traffic/index.js';
export { monitoringPlugin, Monitor, type MonitoringOptions } from './monitor/index.js';
export { runPerf, type PerfOptions, type PerfLevelResult } from './perf/index.js';

// Batch prediction's public surface: the job, the stores and the serving-side lookups.
export { runBatchJob, jobId, defaultRejectsPath, BatchInterrupted, BatchOptionError, DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, MAX_BATCH_BYTES, type BatchJobOptions, type BatchProgress, type BatchSummary, type StageCpu } from './job.js';
export { openStore, parseStoreUrl, redactUrl, DEFAULT_STORE_URL, type PredictionStore, type StoredPrediction, type StoredTensor, type PredictionRow, type Checkpoint } from './store.js';
export { predictionStorePlugin, type PredictionService, type LookupOptions, type LookupResult } from './lookup.js';
export { parseShard, shardFromEnvironment, shardOfKey, type ShardSpec } from './shard.js';
export { parseStaleness } from './staleness.js';
export { openInput, type InputFormat, type InputRecord } from './reader.js';
export type { ColumnMapping } from './features.js';
export { POSTGRES_KEY_RULES, type KeyRules } from './keys.js';

// The scheduler's public surface: the dynamic batcher, its queue contract and row arithmetic.

export { DynamicBatcher } from './batcher.js';
export type { BatchInfo, BatcherOptions, BatcherState, BatcherStats, SetTimer, SubmitOptions } from './options.js';
export { PriorityRequestQueue, isRequestQueue } from './queue.js';
export type { QueuedRequest, RequestQueue } from './queue.js';
export { rowOffsets, splitRows } from './rows.js';

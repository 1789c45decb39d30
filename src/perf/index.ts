// `umbra perf` as a library: the bench suite and tests call runPerf directly.
export { runPerf, isStable, type PerfOptions, type PerfLevelResult, type StabilitySample } from './runner.js';
export { parseSweep } from './sweep.js';
export { LatencyHistogram, type LatencySummary } from './histogram.js';
export { toJson, toCsv, toTable, CSV_COLUMNS } from './report.js';
export { latencyThroughputSvg, type PlotSeries } from './plot.js';
export { fetchModelMetadata, randomPayloads, filePayloads, encodePayload, parseShapes, PROTOCOLS, type InputShapes, type Payload, type Protocol, type ModelMetadata } from './payload.js';
export type { Distribution } from './load.js';

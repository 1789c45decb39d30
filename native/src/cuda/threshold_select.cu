#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "magnitude_chunks.cuh"
#include "prune/magnitude.h"
#include "threshold_select.cuh"

namespace umbra::cuda {
namespace {

constexpr int kThreads = 256, kMaxBins = 2048;
constexpr unsigned long long kNoNan = ~0ull;

struct Pass {
  int shift;  // digit = (key >> shift) & (bins - 1)
  int bins;
  int prefix_shift;  // only keys with key >> prefix_shift == prefix are counted
  uint32_t prefix;
};

// Histogram of one radix digit over every chunk. Shared-memory counts, flushed once per block.
// With `first_nan` set, NaN keys are left out and the smallest global index of one is recorded.
__global__ void __launch_bounds__(kThreads)
    radix_histogram_kernel(const MagnitudeChunk* __restrict__ chunks, int count, Pass pass,
                           unsigned long long* __restrict__ hist, unsigned long long* __restrict__ first_nan) {
  __shared__ uint32_t local[kMaxBins];
  for (int b = threadIdx.x; b < pass.bins; b += kThreads) local[b] = 0;
  __syncthreads();
  const uint32_t mask = static_cast<uint32_t>(pass.bins - 1);
  for (int c = blockIdx.x; c < count; c += gridDim.x) {
    const MagnitudeChunk ch = chunks[c];
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(ch.data);
    auto visit = [&](uint32_t raw, uint32_t i) {
      const uint32_t key = raw & 0x7fffffffu;
      if (first_nan != nullptr && key > 0x7f800000u) {
        atomicMin(first_nan, static_cast<unsigned long long>(ch.order + i));
        return;
      }
      if ((key >> pass.prefix_shift) == pass.prefix) atomicAdd(&local[(key >> pass.shift) & mask], 1u);
    };
    if ((reinterpret_cast<uintptr_t>(bits) & 15u) == 0) {
      const uint32_t quads = ch.size / 4;
      const uint4* q = reinterpret_cast<const uint4*>(bits);
      for (uint32_t i = threadIdx.x; i < quads; i += kThreads) {
        const uint4 v = __ldg(q + i);
        visit(v.x, 4 * i), visit(v.y, 4 * i + 1), visit(v.z, 4 * i + 2), visit(v.w, 4 * i + 3);
      }
      for (uint32_t i = quads * 4 + threadIdx.x; i < ch.size; i += kThreads) visit(__ldg(bits + i), i);
    } else {
      for (uint32_t i = threadIdx.x; i < ch.size; i += kThreads) visit(__ldg(bits + i), i);
    }
  }
  __syncthreads();
  for (int b = threadIdx.x; b < pass.bins; b += kThreads)
    if (local[b] != 0) atomicAdd(hist + b, static_cast<unsigned long long>(local[b]));
}

struct Workspace {
  MagnitudeChunk* chunks;
  unsigned long long* hist;  // kMaxBins, then first_nan
  uint32_t* keys;  // one per array
  uint32_t* below;  // one per chunk
  uint32_t* equal;  // one per chunk
};

Workspace workspace(Stream& stream, size_t chunk_count, size_t array_count) {
  const size_t chunk_bytes = (chunk_count * sizeof(MagnitudeChunk) + 255) & ~size_t(255);
  const size_t hist_bytes = (kMaxBins + 1) * sizeof(unsigned long long);
  const size_t key_bytes = (array_count * 4 + 255) & ~size_t(255);
  const size_t count_bytes = (chunk_count * 4 + 255) & ~size_t(255);
  char* base = static_cast<char*>(stream.scratch(kKernelWorkspaceSlot, chunk_bytes + hist_bytes + 256 + key_bytes + 2 * count_bytes));
  Workspace w;
  w.chunks = reinterpret_cast<MagnitudeChunk*>(base);
  w.hist = reinterpret_cast<unsigned long long*>(base + chunk_bytes);
  w.keys = reinterpret_cast<uint32_t*>(base + chunk_bytes + hist_bytes + 256 - (hist_bytes % 256));
  w.below = reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(w.keys) + key_bytes);
  w.equal = reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(w.below) + count_bytes);
  return w;
}

struct RankCut {
  uint32_t key;
  uint64_t ties;
};

// The cut pruning exactly `count` keys of the selected arrays (see threshold_select.cuh).
RankCut select_rank(const std::vector<WeightArray>& arrays, const std::vector<size_t>& which, uint64_t count,
                    Stream& stream, std::vector<uint64_t>* below, std::vector<uint64_t>* equal) {
  const std::vector<MagnitudeChunk> chunks = make_magnitude_chunks(arrays, which);
  uint64_t total = 0;
  for (size_t l : which) total += arrays[l].size;
  const auto s = static_cast<cudaStream_t>(stream.native());
  const Workspace ws = workspace(stream, chunks.size(), arrays.size());
  if (!chunks.empty())
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(ws.chunks, chunks.data(), chunks.size() * sizeof(MagnitudeChunk), cudaMemcpyHostToDevice, s));
  int sms = 0;
  UMBRA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, stream.device()));
  const unsigned blocks = static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(chunks.size(), static_cast<size_t>(sms) * 4)));
  std::vector<unsigned long long> hist(kMaxBins + 1);

  auto run_pass = [&](const Pass& pass, bool nan_check) {
    UMBRA_CUDA_CHECK(cudaMemsetAsync(ws.hist, 0, kMaxBins * sizeof(unsigned long long), s));
    UMBRA_CUDA_CHECK(cudaMemsetAsync(ws.hist + kMaxBins, 0xff, sizeof(unsigned long long), s));
    if (!chunks.empty()) {
      radix_histogram_kernel<<<blocks, kThreads, 0, s>>>(ws.chunks, static_cast<int>(chunks.size()), pass, ws.hist,
                                                         nan_check ? ws.hist + kMaxBins : nullptr);
      UMBRA_CUDA_CHECK_LAUNCH("radix_histogram_kernel");
    }
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(hist.data(), ws.hist, hist.size() * sizeof(unsigned long long), cudaMemcpyDeviceToHost, s));
    UMBRA_CUDA_CHECK(cudaStreamSynchronize(s));
  };
  auto locate = [&](int bins, uint64_t& rank) {
    uint64_t before = 0;
    for (int b = 0; b < bins; ++b) {
      if (rank < before + hist[b]) {
        rank -= before;
        return static_cast<uint32_t>(b);
      }
      before += hist[b];
    }
    throw std::logic_error("threshold_select_f32_cuda: histogram lost keys");
  };

  run_pass({20, 2048, 31, 0}, true);
  if (hist[kMaxBins] != kNoNan) {
    uint64_t at = hist[kMaxBins];
    for (size_t l : which) {
      if (at < arrays[l].size) throw_nan(arrays[l].name, static_cast<size_t>(at));
      at -= arrays[l].size;
    }
  }
  if (count >= total) return {kAboveAllKeys, 0};
  uint64_t rank = count;
  const uint32_t top = locate(2048, rank);
  run_pass({9, 2048, 20, top}, false);
  const uint32_t mid = locate(2048, rank);
  run_pass({0, 512, 9, (top << 11) | mid}, false);
  const uint32_t low = locate(512, rank);
  const RankCut cut{(top << 20) | (mid << 9) | low, rank};

  if (below != nullptr && equal != nullptr && !chunks.empty()) {
    std::vector<uint32_t> keys(arrays.size(), cut.key), chunk_below(chunks.size()), chunk_equal(chunks.size());
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(ws.keys, keys.data(), keys.size() * 4, cudaMemcpyHostToDevice, s));
    magnitude_count_cuda(ws.chunks, chunks.size(), ws.keys, ws.below, ws.equal, stream);
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(chunk_below.data(), ws.below, chunks.size() * 4, cudaMemcpyDeviceToHost, s));
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(chunk_equal.data(), ws.equal, chunks.size() * 4, cudaMemcpyDeviceToHost, s));
    UMBRA_CUDA_CHECK(cudaStreamSynchronize(s));
    below->assign(arrays.size(), 0);
    equal->assign(arrays.size(), 0);
    for (size_t c = 0; c < chunks.size(); ++c) {
      (*below)[chunks[c].array] += chunk_below[c];
      (*equal)[chunks[c].array] += chunk_equal[c];
    }
  }
  return cut;
}

}  // namespace

std::vector<LayerCut> threshold_select_f32_cuda(const std::vector<WeightArray>& arrays, const SelectOptions& o,
                                                Stream& stream) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("threshold_select_f32_cuda: " + what); };
  if (!(o.sparsity >= 0.0 && o.sparsity <= 1.0)) fail("sparsity must be in [0, 1]");
  if (!o.min_sparsity.empty() || !o.max_sparsity.empty())
    fail("per-array min/max sparsity clamps run on the CPU only (threshold_select_f32)");
  for (const auto& a : arrays)
    if (a.size != 0 && a.data == nullptr) fail("array \"" + a.name + "\" has no data");
  stream.activate();
  std::vector<LayerCut> cuts(arrays.size());
  if (o.per_layer) {
    for (size_t l = 0; l < arrays.size(); ++l) {
      const uint64_t count = prune_count(o.sparsity, arrays[l].size);
      const RankCut rc = select_rank(arrays, {l}, count, stream, nullptr, nullptr);
      cuts[l] = {rc.key, rc.ties, count};
    }
    return cuts;
  }
  uint64_t total = 0;
  std::vector<size_t> all(arrays.size());
  for (size_t l = 0; l < arrays.size(); ++l) all[l] = l, total += arrays[l].size;
  std::vector<uint64_t> below, equal;
  const RankCut rc = select_rank(arrays, all, prune_count(o.sparsity, total), stream, &below, &equal);
  if (rc.key == kAboveAllKeys) {
    for (size_t l = 0; l < arrays.size(); ++l) cuts[l] = {kAboveAllKeys, 0, arrays[l].size};
    return cuts;
  }
  uint64_t ties = rc.ties;
  for (size_t l = 0; l < arrays.size(); ++l) {
    const uint64_t below_l = below.empty() ? 0 : below[l], equal_l = equal.empty() ? 0 : equal[l];
    const uint64_t take = std::min(ties, equal_l);
    ties -= take;
    cuts[l] = {rc.key, take, below_l + take};
  }
  return cuts;
}

}  // namespace umbra::cuda

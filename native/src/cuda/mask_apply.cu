// Masking pass: one block per chunk (grid-stride). Keys below the array's threshold become
// zero. Keys equal to it are zeroed while their rank among equal keys of that array (the
// chunk's offset plus the rank inside the chunk) is below the cut's `ties`; only the one chunk
// per array that straddles that rank needs the ordered block scan, the rest decide per chunk.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "magnitude_chunks.cuh"
#include "mask_apply.cuh"

namespace umbra::cuda {
namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;

__global__ void __launch_bounds__(kThreads)
    mask_apply_kernel(const MagnitudeChunk* __restrict__ chunks, int count, const uint32_t* __restrict__ keys,
                      const unsigned long long* __restrict__ ties, const unsigned long long* __restrict__ tie_offset,
                      const uint32_t* __restrict__ chunk_equal, unsigned long long* __restrict__ zeroed) {
  __shared__ uint32_t warp_counts[kWarps];
  __shared__ uint32_t zero_counts[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint32_t my_zeroed = 0;
  for (int c = blockIdx.x; c < count; c += gridDim.x) {
    const MagnitudeChunk ch = chunks[c];
    float* data = const_cast<float*>(ch.data);
    const uint32_t key = keys[ch.array];
    const unsigned long long want = ties[ch.array];
    const unsigned long long offset = tie_offset != nullptr ? tie_offset[c] : 0;
    const uint32_t eq = chunk_equal != nullptr ? chunk_equal[c] : 0;
    const bool all_equal = want > 0 && offset + eq <= want;
    const bool partial = want > offset && offset + eq > want;
    if (!partial) {
      for (uint32_t i = threadIdx.x; i < ch.size; i += kThreads) {
        const uint32_t k = __float_as_uint(data[i]) & 0x7fffffffu;
        if (k < key || (all_equal && k == key)) {
          data[i] = 0.f;
          ++my_zeroed;
        }
      }
      continue;
    }
    // Ordered pass: tiles of kThreads elements, an exclusive scan of "equal" flags per tile.
    unsigned long long rank_base = offset;
    for (uint32_t base = 0; base < ch.size; base += kThreads) {
      const uint32_t i = base + threadIdx.x;
      const bool in = i < ch.size;
      const uint32_t k = in ? (__float_as_uint(data[i]) & 0x7fffffffu) : 0xffffffffu;
      const bool is_equal = in && k == key;
      const unsigned ballot = __ballot_sync(0xffffffffu, is_equal);
      if (lane == 0) warp_counts[warp] = __popc(ballot);
      __syncthreads();
      uint32_t before = __popc(ballot & ((1u << lane) - 1u)), tile_total = 0;
      for (int w = 0; w < kWarps; ++w) {
        if (w < warp) before += warp_counts[w];
        tile_total += warp_counts[w];
      }
      if (in && (k < key || (is_equal && rank_base + before < want))) {
        data[i] = 0.f;
        ++my_zeroed;
      }
      rank_base += tile_total;
      __syncthreads();  // warp_counts is rewritten by the next tile
    }
  }
  for (int o = 16; o > 0; o >>= 1) my_zeroed += __shfl_xor_sync(0xffffffffu, my_zeroed, o);
  if (lane == 0) zero_counts[warp] = my_zeroed;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long sum = 0;
    for (int w = 0; w < kWarps; ++w) sum += zero_counts[w];
    atomicAdd(zeroed, sum);
  }
}

}  // namespace

uint64_t mask_apply_f32_cuda(const std::vector<WeightArray>& arrays, const std::vector<LayerCut>& cuts, Stream& stream) {
  if (cuts.size() != arrays.size())
    throw std::invalid_argument("mask_apply_f32_cuda: expected one cut per array (" + std::to_string(arrays.size()) +
                                ") but received " + std::to_string(cuts.size()));
  for (const auto& a : arrays)
    if (a.size != 0 && a.data == nullptr) throw std::invalid_argument("mask_apply_f32_cuda: array \"" + a.name + "\" has no data");
  std::vector<size_t> all(arrays.size());
  for (size_t l = 0; l < all.size(); ++l) all[l] = l;
  const std::vector<MagnitudeChunk> chunks = make_magnitude_chunks(arrays, all);
  if (chunks.empty()) return 0;
  stream.activate();
  const auto s = static_cast<cudaStream_t>(stream.native());
  const size_t n_arrays = arrays.size(), n_chunks = chunks.size();
  // Workspace: chunks | keys | ties | tie offsets | chunk equal | chunk below (unused) | zeroed.
  auto round = [](size_t b) { return (b + 255) & ~size_t(255); };
  const size_t sizes[] = {round(n_chunks * sizeof(MagnitudeChunk)), round(n_arrays * 4), round(n_arrays * 8),
                          round(n_chunks * 8), round(n_chunks * 4), round(n_chunks * 4), 256};
  size_t total_bytes = 0;
  for (size_t b : sizes) total_bytes += b;
  char* p = static_cast<char*>(stream.scratch(kKernelWorkspaceSlot, total_bytes));
  auto* d_chunks = reinterpret_cast<MagnitudeChunk*>(p);
  auto* d_keys = reinterpret_cast<uint32_t*>(p += sizes[0]);
  auto* d_ties = reinterpret_cast<unsigned long long*>(p += sizes[1]);
  auto* d_offsets = reinterpret_cast<unsigned long long*>(p += sizes[2]);
  auto* d_equal = reinterpret_cast<uint32_t*>(p += sizes[3]);
  auto* d_below = reinterpret_cast<uint32_t*>(p += sizes[4]);
  auto* d_zeroed = reinterpret_cast<unsigned long long*>(p += sizes[5]);

  std::vector<uint32_t> keys(n_arrays);
  std::vector<unsigned long long> ties(n_arrays);
  bool any_ties = false;
  for (size_t l = 0; l < n_arrays; ++l) {
    keys[l] = cuts[l].threshold_key;
    ties[l] = cuts[l].ties;
    any_ties = any_ties || cuts[l].ties > 0;
  }
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(d_chunks, chunks.data(), n_chunks * sizeof(MagnitudeChunk), cudaMemcpyHostToDevice, s));
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(d_keys, keys.data(), n_arrays * 4, cudaMemcpyHostToDevice, s));
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(d_ties, ties.data(), n_arrays * 8, cudaMemcpyHostToDevice, s));
  UMBRA_CUDA_CHECK(cudaMemsetAsync(d_zeroed, 0, sizeof(unsigned long long), s));
  if (any_ties) {
    // Tie ranks need each chunk's count of equal keys and, per array, the running total before it.
    magnitude_count_cuda(d_chunks, n_chunks, d_keys, d_below, d_equal, stream);
    std::vector<uint32_t> equal(n_chunks);
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(equal.data(), d_equal, n_chunks * 4, cudaMemcpyDeviceToHost, s));
    UMBRA_CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<unsigned long long> offsets(n_chunks), running(n_arrays, 0);
    for (size_t c = 0; c < n_chunks; ++c) {
      offsets[c] = running[chunks[c].array];
      running[chunks[c].array] += equal[c];
    }
    for (size_t l = 0; l < n_arrays; ++l)
      if (running[l] < ties[l])
        throw std::invalid_argument("mask_apply_f32_cuda: array \"" + arrays[l].name +
                                    "\" has fewer weights at the threshold than the cut names (it changed since selection)");
    UMBRA_CUDA_CHECK(cudaMemcpyAsync(d_offsets, offsets.data(), n_chunks * 8, cudaMemcpyHostToDevice, s));
  }
  int sms = 0;
  UMBRA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, stream.device()));
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>(n_chunks, static_cast<size_t>(sms) * 8));
  mask_apply_kernel<<<blocks, kThreads, 0, s>>>(d_chunks, static_cast<int>(n_chunks), d_keys, d_ties,
                                                any_ties ? d_offsets : nullptr, any_ties ? d_equal : nullptr, d_zeroed);
  UMBRA_CUDA_CHECK_LAUNCH("mask_apply_kernel");
  unsigned long long zeroed = 0;
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(&zeroed, d_zeroed, sizeof(zeroed), cudaMemcpyDeviceToHost, s));
  UMBRA_CUDA_CHECK(cudaStreamSynchronize(s));
  return zeroed;
}

}  // namespace umbra::cuda

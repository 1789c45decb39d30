#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_check.cuh"
#include "magnitude_chunks.cuh"

namespace umbra::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    magnitude_count_kernel(const MagnitudeChunk* __restrict__ chunks, int count, const uint32_t* __restrict__ keys,
                           uint32_t* __restrict__ below, uint32_t* __restrict__ equal) {
  __shared__ uint32_t sums[2][kThreads / 32];
  for (int c = blockIdx.x; c < count; c += gridDim.x) {
    const MagnitudeChunk ch = chunks[c];
    const uint32_t key = keys[ch.array];
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(ch.data);
    uint32_t lo = 0, eq = 0;
    for (uint32_t i = threadIdx.x; i < ch.size; i += kThreads) {
      const uint32_t k = __ldg(bits + i) & 0x7fffffffu;
      lo += k < key;
      eq += k == key;
    }
    for (int o = 16; o > 0; o >>= 1) {
      lo += __shfl_xor_sync(0xffffffffu, lo, o);
      eq += __shfl_xor_sync(0xffffffffu, eq, o);
    }
    if ((threadIdx.x & 31) == 0) sums[0][threadIdx.x >> 5] = lo, sums[1][threadIdx.x >> 5] = eq;
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t b = 0, e = 0;
      for (int w = 0; w < kThreads / 32; ++w) b += sums[0][w], e += sums[1][w];
      below[c] = b;
      equal[c] = e;
    }
    __syncthreads();
  }
}

}  // namespace

void magnitude_count_cuda(const MagnitudeChunk* chunks, size_t count, const uint32_t* keys, uint32_t* below,
                          uint32_t* equal, Stream& stream) {
  if (count == 0) return;
  stream.activate();
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>(count, 65535));
  magnitude_count_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream.native())>>>(
      chunks, static_cast<int>(count), keys, below, equal);
  UMBRA_CUDA_CHECK_LAUNCH("magnitude_count_kernel");
}

}  // namespace umbra::cuda

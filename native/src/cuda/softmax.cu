// One warp per row: max, then sum of exp(x - max), then the scaled write. Rows up to a few
// thousand columns stay in L1 between the three sweeps, so the kernel moves each value from
// device memory about once each way.
#include <cuda_runtime.h>

#include <stdexcept>

#include "cuda_check.cuh"
#include "softmax.cuh"

namespace umbra::cuda {
namespace {

constexpr int kWarps = 8;

__global__ void __launch_bounds__(kWarps * 32) softmax_kernel(float* __restrict__ data, int rows, int cols) {
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= rows) return;
  float* p = data + static_cast<size_t>(row) * cols;
  float best = -INFINITY;
  for (int c = lane; c < cols; c += 32) best = fmaxf(best, p[c]);
  // fmaxf drops NaN; the sum below brings it back, so a NaN row stays NaN as on the CPU.
  for (int o = 16; o > 0; o >>= 1) best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, o));
  float sum = 0.f;
  for (int c = lane; c < cols; c += 32) sum += expf(p[c] - best);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float scale = 1.0f / sum;
  for (int c = lane; c < cols; c += 32) p[c] = expf(p[c] - best) * scale;
}

}  // namespace

void softmax_f32_cuda(float* data, size_t rows, size_t cols, Stream& stream) {
  if (rows > 2147483647u || cols > 2147483647u || rows * cols > 2147483647u)
    throw std::invalid_argument("softmax_f32_cuda: the array must hold fewer than 2^31 elements");
  if (rows == 0 || cols == 0) return;
  if (data == nullptr) throw std::invalid_argument("softmax_f32_cuda: data must be a device pointer");
  stream.activate();
  const unsigned blocks = static_cast<unsigned>((rows + kWarps - 1) / kWarps);
  softmax_kernel<<<blocks, kWarps * 32, 0, static_cast<cudaStream_t>(stream.native())>>>(data, static_cast<int>(rows),
                                                                                          static_cast<int>(cols));
  UMBRA_CUDA_CHECK_LAUNCH("softmax_kernel");
}

}  // namespace umbra::cuda

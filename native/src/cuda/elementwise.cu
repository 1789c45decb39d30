#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "activation.cuh"
#include "cuda_check.cuh"
#include "elementwise.cuh"

namespace umbra::cuda {
namespace {

__global__ void bias_activation_kernel(float* __restrict__ data, size_t total, size_t cols, const float* __restrict__ bias,
                                       int act) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += stride)
    data[i] = activate(data[i] + (bias != nullptr ? bias[i % cols] : 0.f), act);
}

// Several independent 16-byte loads in flight per thread before the stores.
__global__ void copy_kernel(float4* __restrict__ dst, const float4* __restrict__ src, size_t count4) {
  constexpr int kUnroll = 4;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < count4; i += kUnroll * stride) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) __stcs(dst + i + u * stride, v[u]);
  }
  for (; i < count4; i += stride) dst[i] = src[i];
}

__global__ void copy_tail_kernel(float* __restrict__ dst, const float* __restrict__ src, size_t count) {
  const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < count) dst[i] = src[i];
}

unsigned grid_for(size_t work, int device) {
  int sms = 0;
  UMBRA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>((work + 255) / 256, static_cast<size_t>(sms) * 8)));
}

}  // namespace

void bias_activation_f32_cuda(float* data, size_t rows, size_t cols, const float* bias, int activation, Stream& stream) {
  if (activation < 0 || activation > 4) throw std::invalid_argument("bias_activation_f32_cuda: activation must be 0..4");
  const size_t total = rows * cols;
  if (total == 0) return;
  if (data == nullptr) throw std::invalid_argument("bias_activation_f32_cuda: data must be a device pointer");
  stream.activate();
  bias_activation_kernel<<<grid_for(total, stream.device()), 256, 0, static_cast<cudaStream_t>(stream.native())>>>(
      data, total, cols, bias, activation);
  UMBRA_CUDA_CHECK_LAUNCH("bias_activation_kernel");
}

void copy_f32_cuda(float* dst, const float* src, size_t count, Stream& stream) {
  if (count == 0) return;
  if (dst == nullptr || src == nullptr) throw std::invalid_argument("copy_f32_cuda: dst and src must be device pointers");
  stream.activate();
  const auto s = static_cast<cudaStream_t>(stream.native());
  const bool vec = (reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) % 16 == 0;
  const size_t count4 = vec ? count / 4 : 0, done = count4 * 4;
  if (count4 > 0) {
    copy_kernel<<<grid_for(count4, stream.device()), 256, 0, s>>>(reinterpret_cast<float4*>(dst),
                                                                  reinterpret_cast<const float4*>(src), count4);
    UMBRA_CUDA_CHECK_LAUNCH("copy_kernel");
  }
  const size_t rest = count - done;
  if (rest > 0) {
    if (rest > (size_t(1) << 31)) throw std::invalid_argument("copy_f32_cuda: unaligned copies must be below 2^31 elements");
    copy_tail_kernel<<<static_cast<unsigned>((rest + 255) / 256), 256, 0, s>>>(dst + done, src + done, rest);
    UMBRA_CUDA_CHECK_LAUNCH("copy_tail_kernel");
  }
}

}  // namespace umbra::cuda

#include <algorithm>
#include <stdexcept>
#include <string>

#include "activation.cuh"
#include "cuda_check.cuh"
#include "gemm_common.cuh"

namespace umbra::cuda {
namespace {

__global__ void split_reduce_kernel(const float* __restrict__ workspace, int splits, const float* __restrict__ bias,
                                    float* __restrict__ y, size_t m, size_t n, int act) {
  const size_t total = m * n, stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += stride) {
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += workspace[s * total + i];
    if (bias != nullptr) v += bias[i % n];
    y[i] = activate(v, act);
  }
}

}  // namespace

SplitPlan plan_split(size_t tiles, size_t k, int multiprocessors, size_t k_step) {
  SplitPlan plan;
  plan.k_slice = k;
  const size_t want = 2 * static_cast<size_t>(multiprocessors);
  if (tiles >= want || k < 512) return plan;
  // Each slice keeps at least 256 K steps so the partial sums stay worth their round trip.
  const size_t splits = std::min<size_t>({(want + tiles - 1) / tiles, k / 256, 16});
  if (splits <= 1) return plan;
  const size_t chunk = 4 * k_step;
  plan.k_slice = ((k + splits - 1) / splits + chunk - 1) / chunk * chunk;
  plan.splits = static_cast<int>((k + plan.k_slice - 1) / plan.k_slice);
  return plan;
}

void split_reduce(const float* workspace, int splits, const GemmCudaArgs& a, cudaStream_t s) {
  const size_t total = a.m * a.n;
  const int blocks = static_cast<int>(std::min<size_t>((total + 255) / 256, 65535));
  split_reduce_kernel<<<blocks, 256, 0, s>>>(workspace, splits, a.bias, a.y, a.m, a.n, a.activation);
  UMBRA_CUDA_CHECK_LAUNCH("split_reduce_kernel");
}

void check_gemm_args(const GemmCudaArgs& a, const char* fn) {
  auto fail = [fn](const std::string& what) { throw std::invalid_argument(std::string(fn) + ": " + what); };
  // Kernels index with int: keep every dimension and the operands' sizes within it.
  constexpr size_t kMax = 2147483647u;
  if (a.m > kMax || a.n > kMax || a.k > kMax) fail("dimensions must be below 2^31");
  if (a.m * a.k > kMax || a.k * a.n > kMax || a.m * a.n > kMax) fail("each operand must hold fewer than 2^31 elements");
  if (a.activation < 0 || a.activation > 4) fail("activation must be 0..4");
  if (a.m != 0 && a.n != 0 && (a.y == nullptr || (a.k != 0 && (a.x == nullptr || a.w == nullptr))))
    fail("x, w and y must be device pointers");
}

int multiprocessor_count(int device) {
  static int cached[64] = {0};
  if (device >= 0 && device < 64 && cached[device] > 0) return cached[device];
  int count = 0;
  UMBRA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  if (device >= 0 && device < 64) cached[device] = count;
  return count;
}

}  // namespace umbra::cuda

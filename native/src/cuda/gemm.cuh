// Dense GEMM on the GPU: Y[M,N] = act(X[M,K] . W + bias), every pointer a device pointer.
// fp32 runs a register-tiled SIMT kernel (exact fp32 FMAs, the CPU reference's arithmetic);
// tf32 and bf16 run on the tensor cores (gemm_tensor.cu) with fp32 accumulation. Where cuBLASLt
// is loaded (cublaslt.cuh), fp32 and tf32 go through it instead unless the caller asks otherwise.
// Enqueues on the stream and returns; throws std::invalid_argument or CudaError.
#pragma once

#include <cstddef>

#include "device.cuh"

namespace umbra::cuda {

enum class GemmPrecision : int { fp32 = 0, tf32 = 1, bf16 = 2 };

struct GemmCudaArgs {
  const float* x = nullptr;  // [M,K] device
  const float* w = nullptr;  // [K,N] (w_n_by_k false) or [N,K] (true), device
  const float* bias = nullptr;  // [N] device or null
  float* y = nullptr;  // [M,N] device
  size_t m = 0, k = 0, n = 0;
  bool w_n_by_k = false;
  int activation = 0;  // umbra::Activation code
  GemmPrecision precision = GemmPrecision::fp32;
  // Run through cuBLASLt when it is loaded (cublaslt.cuh); false: always Umbra's own kernels
  // (the reference the tests compare the vendor path against).
  bool vendor = true;
};

void gemm_f32_cuda(const GemmCudaArgs& args, Stream& stream);

// Internal: the tensor-core path, called by gemm_f32_cuda for tf32 and bf16.
void gemm_tensor_cuda(const GemmCudaArgs& args, Stream& stream);

}  // namespace umbra::cuda

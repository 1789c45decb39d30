// The vendor BLAS when the machine has it: cuBLASLt, loaded at run time with dlopen (no cuBLAS
// headers or link-time dependency, so the addon builds and loads where neither exists). Dense
// layers in fp32 and tf32 run through cublasLtMatmul with bias and ReLU/GELU fused in its
// epilogue; Umbra's own kernels (gemm.cu, gemm_tensor.cu) stay the fallback and the reference the
// tests compare against. Plain C++ so the binding may include it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "device.cuh"
#include "gemm.cuh"

namespace umbra::cuda {

struct BlasLtInfo {
  bool found = false;
  std::string path;  // the library loaded, "" when none
  size_t version = 0;  // cublasLtGetVersion(), e.g. 130100
  std::string reason;  // why none is used ("" when found)
  std::vector<std::string> tried;  // every path or name tried, in order
};

// Looks once (thread-safe) and never throws. Where it looks, in order: UMBRA_CUBLASLT_PATH (a
// file), then libcublasLt.so.13 / .so.12 / .so by the loader's own search (LD_LIBRARY_PATH,
// ldconfig), then CUDA_HOME, CUDA_PATH and /usr/local/cuda (lib64, targets/*/lib), then the
// nvidia-cublas Python wheels (site-packages/nvidia/*/lib: nvidia/cublas/lib, nvidia/cu13/lib)
// under VIRTUAL_ENV, any virtual environment whose bin folder is on PATH, CONDA_PREFIX,
// /usr/local/lib and /usr/lib, and ~/.local/lib.
// UMBRA_CUBLASLT=off turns it off (reason says so).
const BlasLtInfo& cublaslt_info();

// Y = act(X.W + bias) through cuBLASLt: true when it ran (enqueued on the stream), false when the
// caller must run its own kernel (no library, bf16, or no algorithm for the shape). Throws
// CudaError when the library fails at run time on a call it accepted.
bool cublaslt_gemm(const GemmCudaArgs& args, Stream& stream);

// Scratch slot that holds cuBLASLt's workspace on each stream.
constexpr int kBlasWorkspaceSlot = 6;
constexpr size_t kBlasWorkspaceBytes = size_t(32) << 20;

}  // namespace umbra::cuda

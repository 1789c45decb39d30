// Every CUDA runtime call goes through UMBRA_CUDA_CHECK: a failure throws umbra::cuda::CudaError
// naming the call, the error and the source line. Nothing here aborts the process, so a bad
// launch or a lost device becomes a JS exception in the binding. Include from .cu files only.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "device.cuh"

namespace umbra::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);

inline void check_cuda(cudaError_t error, const char* call, const char* file, int line) {
  if (error != cudaSuccess) throw_cuda_error(error, call, file, line);
}

}  // namespace umbra::cuda

#define UMBRA_CUDA_CHECK(call) ::umbra::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After a <<<...>>> launch: configuration errors show up here, execution errors at the next sync.
#define UMBRA_CUDA_CHECK_LAUNCH(kernel) ::umbra::cuda::check_cuda(cudaGetLastError(), "launch " kernel, __FILE__, __LINE__)

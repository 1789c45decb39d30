// Sparse x dense on the GPU: Y[M,N] = act(X[M,K] . Wᵀ + bias) with W [N,K] in CSR over output
// rows, column indices ascending within each row (csr_upload_cuda sorts and validates them).
// Enqueues on the stream and returns; throws std::invalid_argument or CudaError.
#pragma once

#include <cstddef>
#include <cstdint>

#include "device.cuh"

namespace umbra::cuda {

struct CsrDevice {
  const int32_t* row_ptr = nullptr;  // [rows+1] device
  const int32_t* col_idx = nullptr;  // [nnz] device, ascending per row
  const float* values = nullptr;  // [nnz] device
  size_t rows = 0, cols = 0, nnz = 0;
};

struct SpmmCudaArgs {
  const float* x = nullptr;  // [M,K] device
  CsrDevice w;  // rows = N, cols = K
  const float* bias = nullptr;  // [N] device or null
  float* y = nullptr;  // [M,N] device
  size_t m = 0;
  int activation = 0;
};

void spmm_csr_f32_cuda(const SpmmCudaArgs& args, Stream& stream);

// Host-side check of a CSR matrix before it goes to the device (an out-of-range column on the
// GPU would be an illegal address that poisons the context). Sorts each row's columns in place
// when they are not ascending. Throws std::invalid_argument naming the first inconsistency.
void csr_prepare_host(size_t rows, size_t cols, const int32_t* row_ptr, int32_t* col_idx, float* values);

}  // namespace umbra::cuda

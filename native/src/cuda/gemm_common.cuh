// Pieces the two GEMM kernels share (gemm.cu, gemm_tensor.cu): argument checks, the split-K
// plan and its reduction (which also applies bias + activation), and small load/store helpers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "gemm.cuh"

namespace umbra::cuda {

struct SplitPlan {
  int splits = 1;
  size_t k_slice = 0;
};
// Splits K only when the output tiles cannot fill every multiprocessor twice over.
SplitPlan plan_split(size_t tiles, size_t k, int multiprocessors, size_t k_step);
// y = act(sum over splits of workspace[s] + bias); enqueued on `s`.
void split_reduce(const float* workspace, int splits, const GemmCudaArgs& args, cudaStream_t s);
void check_gemm_args(const GemmCudaArgs& args, const char* fn);
int multiprocessor_count(int device);

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// N consecutive floats from 16-byte (N = 4) or 8-byte (N = 2) aligned shared memory.
template <int N>
__device__ __forceinline__ void load_smem(const float* p, float* out) {
  if constexpr (N == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else if constexpr (N == 2) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    out[0] = v.x, out[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = p[i];
  }
}

// Stores v[0..3] to row[c..c+3], skipping columns >= n; one 16-byte store when `vec` (n % 4 == 0
// and the row 16-byte aligned).
__device__ __forceinline__ void store_row4(float* row, int c, int n, const float* v, bool vec) {
  if (vec && c + 3 < n) {
    *reinterpret_cast<float4*>(row + c) = make_float4(v[0], v[1], v[2], v[3]);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (c + j < n) row[c + j] = v[j];
}

}  // namespace umbra::cuda

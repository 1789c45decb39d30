// CSR SpMM. A block owns 8 batch rows and 256 output columns (sparse rows of W). X's 8 rows are
// staged transposed in shared memory one K-chunk at a time (xs[k][8]), so every stored weight
// costs one coalesced (column, value) read plus two 16-byte shared loads for 8 FMAs; warps take
// sparse rows, lanes take that row's non-zeros inside the chunk (found by binary search on the
// ascending columns), and a butterfly reduction leaves each row's 8 sums in shared memory.
// The epilogue writes Y coalesced along N with bias + activation fused.
#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "activation.cuh"
#include "cuda_check.cuh"
#include "spmm.cuh"

namespace umbra::cuda {
namespace {

constexpr int kMB = 8, kRows = 256, kKChunk = 1024, kThreads = 256, kWarps = kThreads / 32;

__device__ __forceinline__ int lower_bound_col(const int32_t* __restrict__ col, int lo, int hi, int key) {
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (__ldg(col + mid) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads)
    spmm_csr_kernel(const float* __restrict__ x, const int32_t* __restrict__ row_ptr, const int32_t* __restrict__ col_idx,
                    const float* __restrict__ values, const float* __restrict__ bias, float* __restrict__ y, int m, int n,
                    int k, int act) {
  __shared__ __align__(16) float xs[kKChunk * kMB];
  __shared__ float ys[kMB][kRows];
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
  const int n0 = blockIdx.x * kRows, m0 = blockIdx.y * kMB;
  for (int i = t; i < kMB * kRows; i += kThreads) ys[i / kRows][i % kRows] = 0.f;
  const bool chunked = k > kKChunk;

  for (int k0 = 0; k0 < k; k0 += kKChunk) {
    const int kc = min(kKChunk, k - k0);
    __syncthreads();  // previous chunk's readers are done with xs
    for (int idx = t; idx < kc * kMB; idx += kThreads) {
      const int i = idx / kc, kk = idx - i * kc;
      xs[kk * kMB + i] = m0 + i < m ? __ldg(x + static_cast<size_t>(m0 + i) * k + k0 + kk) : 0.f;
    }
    __syncthreads();
    for (int r = warp; r < kRows && n0 + r < n; r += kWarps) {
      int begin = __ldg(row_ptr + n0 + r), end = __ldg(row_ptr + n0 + r + 1);
      if (chunked) {
        begin = lower_bound_col(col_idx, begin, end, k0);
        end = lower_bound_col(col_idx, begin, end, k0 + kc);
      }
      float acc[kMB];
#pragma unroll
      for (int i = 0; i < kMB; ++i) acc[i] = 0.f;
      for (int j = begin + lane; j < end; j += 32) {
        const int c = __ldg(col_idx + j) - k0;
        const float v = __ldg(values + j);
        const float4 lo = *reinterpret_cast<const float4*>(&xs[c * kMB]);
        const float4 hi = *reinterpret_cast<const float4*>(&xs[c * kMB + 4]);
        acc[0] = fmaf(v, lo.x, acc[0]);
        acc[1] = fmaf(v, lo.y, acc[1]);
        acc[2] = fmaf(v, lo.z, acc[2]);
        acc[3] = fmaf(v, lo.w, acc[3]);
        acc[4] = fmaf(v, hi.x, acc[4]);
        acc[5] = fmaf(v, hi.y, acc[5]);
        acc[6] = fmaf(v, hi.z, acc[6]);
        acc[7] = fmaf(v, hi.w, acc[7]);
      }
#pragma unroll
      for (int i = 0; i < kMB; ++i)
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], offset);
      // Lane i keeps sum i; one store per batch row, no bank conflicts.
      float mine = acc[0];
#pragma unroll
      for (int i = 1; i < kMB; ++i)
        if (lane == i) mine = acc[i];
      if (lane < kMB) ys[lane][r] += mine;
    }
  }
  __syncthreads();
  for (int idx = t; idx < kMB * kRows; idx += kThreads) {
    const int i = idx / kRows, r = idx % kRows;
    if (m0 + i < m && n0 + r < n)
      y[static_cast<size_t>(m0 + i) * n + n0 + r] = activate(ys[i][r] + (bias != nullptr ? bias[n0 + r] : 0.f), act);
  }
}

}  // namespace

void spmm_csr_f32_cuda(const SpmmCudaArgs& a, Stream& stream) {
  constexpr size_t kMax = 2147483647u;
  if (a.m > kMax || a.w.rows > kMax || a.w.cols > kMax || a.w.nnz > kMax || a.m * a.w.cols > kMax ||
      a.m * a.w.rows > kMax)
    throw std::invalid_argument("spmm_csr_f32_cuda: dimensions and operands must stay below 2^31 elements");
  if (a.activation < 0 || a.activation > 4) throw std::invalid_argument("spmm_csr_f32_cuda: activation must be 0..4");
  if (a.m == 0 || a.w.rows == 0) return;
  if (a.y == nullptr || a.w.row_ptr == nullptr || (a.w.cols != 0 && a.x == nullptr))
    throw std::invalid_argument("spmm_csr_f32_cuda: x, y and the CSR arrays must be device pointers");
  stream.activate();
  const dim3 grid(static_cast<unsigned>((a.w.rows + kRows - 1) / kRows), static_cast<unsigned>((a.m + kMB - 1) / kMB));
  if (grid.y > 65535) throw std::invalid_argument("spmm_csr_f32_cuda: batch must be at most 524280 rows per call");
  spmm_csr_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream.native())>>>(
      a.x, a.w.row_ptr, a.w.col_idx, a.w.values, a.bias, a.y, static_cast<int>(a.m), static_cast<int>(a.w.rows),
      static_cast<int>(a.w.cols), a.activation);
  UMBRA_CUDA_CHECK_LAUNCH("spmm_csr_kernel");
}

void csr_prepare_host(size_t rows, size_t cols, const int32_t* row_ptr, int32_t* col_idx, float* values) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("csr_upload_cuda: " + what); };
  if (row_ptr == nullptr) fail("rowPtr is missing");
  if (row_ptr[0] != 0) fail("rowPtr[0] must be 0");
  for (size_t r = 0; r < rows; ++r)
    if (row_ptr[r + 1] < row_ptr[r]) fail("rowPtr decreases at row " + std::to_string(r));
  std::vector<int32_t> order;
  std::vector<int32_t> cols_tmp;
  std::vector<float> vals_tmp;
  for (size_t r = 0; r < rows; ++r) {
    const int32_t b = row_ptr[r], e = row_ptr[r + 1];
    bool sorted = true;
    for (int32_t j = b; j < e; ++j) {
      if (col_idx[j] < 0 || static_cast<size_t>(col_idx[j]) >= cols)
        fail("colIdx[" + std::to_string(j) + "] = " + std::to_string(col_idx[j]) + " is outside [0, " + std::to_string(cols) + ")");
      if (j > b && col_idx[j] < col_idx[j - 1]) sorted = false;
    }
    if (sorted) continue;
    order.resize(e - b);
    std::iota(order.begin(), order.end(), b);
    std::stable_sort(order.begin(), order.end(), [&](int32_t p, int32_t q) { return col_idx[p] < col_idx[q]; });
    cols_tmp.clear();
    vals_tmp.clear();
    for (int32_t p : order) cols_tmp.push_back(col_idx[p]), vals_tmp.push_back(values[p]);
    std::copy(cols_tmp.begin(), cols_tmp.end(), col_idx + b);
    std::copy(vals_tmp.begin(), vals_tmp.end(), values + b);
  }
}

}  // namespace umbra::cuda

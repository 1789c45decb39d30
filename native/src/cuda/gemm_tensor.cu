// Tensor-core GEMM (WMMA, sm_80+): fp32 inputs are rounded to tf32 or bf16 while they are staged
// into shared memory, products accumulate in fp32, and the epilogue (bias + activation, or the
// raw split-K slice) runs per 16x16 fragment through a small per-warp staging tile.
// 256 threads = 8 warps in a 2 x 4 grid over a 128 x 128 output tile; K steps of 32.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <stdexcept>
#include <type_traits>

#include "activation.cuh"
#include "cuda_check.cuh"
#include "gemm.cuh"
#include "gemm_common.cuh"

namespace umbra::cuda {
namespace {

using namespace nvcuda;

constexpr int kBM = 128, kBN = 128, kBK = 32, kLds = kBK + 8, kThreads = 256;

// Storage type in shared memory and the WMMA shape for each precision.
template <typename T>
struct TensorPath;
template <>
struct TensorPath<float> {  // tf32: stored as fp32, rounded when loaded into fragments
  static constexpr int kStep = 8;
  using A = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using B = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
  using C = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  __device__ static float to(float v) { return v; }
  template <typename F>
  __device__ static void round(F& f) {
#pragma unroll
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
  }
};
template <>
struct TensorPath<__nv_bfloat16> {
  static constexpr int kStep = 16;
  using A = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
  using B = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
  using C = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  __device__ static __nv_bfloat16 to(float v) { return __float2bfloat16_rn(v); }
  template <typename F>
  __device__ static void round(F&) {}
};

// Four consecutive floats of row r (stride ld), columns c..c+3, zero outside [rows, cols).
__device__ __forceinline__ float4 load4(const float* __restrict__ p, int rows, int ld, int cols, int r, int c, bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (r >= rows || c >= cols) return v;
  const float* q = p + static_cast<size_t>(r) * ld + c;
  if (vec && c + 3 < cols) return __ldg(reinterpret_cast<const float4*>(q));
  v.x = __ldg(q);
  if (c + 1 < cols) v.y = __ldg(q + 1);
  if (c + 2 < cols) v.z = __ldg(q + 2);
  if (c + 3 < cols) v.w = __ldg(q + 3);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gemm_tensor_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                       float* __restrict__ y, float* __restrict__ workspace, int m, int n, int k, int k_slice, int act,
                       bool w_n_by_k, bool vec_x, bool vec_w) {
  using P = TensorPath<T>;
  __shared__ __align__(128) T as[kBM * kLds];
  __shared__ __align__(128) T bs[kBN * kLds];  // column-major B: element (kk, col) at bs[col * kLds + kk]
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm*64 .. +63, columns wn*32 .. +31
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const int k_begin = blockIdx.z * k_slice, k_end = min(k, k_begin + k_slice);

  typename P::C acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  for (int k0 = k_begin; k0 < k_end; k0 += kBK) {
    // 128 x 32 floats per operand = 1024 float4, four per thread.
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int idx = t + q * kThreads, r = idx >> 3, c = (idx & 7) * 4;
      const float4 v = load4(x, m, k, k_end, m0 + r, k0 + c, vec_x);
      T* dst = &as[r * kLds + c];
      dst[0] = P::to(v.x), dst[1] = P::to(v.y), dst[2] = P::to(v.z), dst[3] = P::to(v.w);
    }
    if (w_n_by_k) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int idx = t + q * kThreads, r = idx >> 3, c = (idx & 7) * 4;
        const float4 v = load4(w, n, k, k_end, n0 + r, k0 + c, vec_w);
        T* dst = &bs[r * kLds + c];
        dst[0] = P::to(v.x), dst[1] = P::to(v.y), dst[2] = P::to(v.z), dst[3] = P::to(v.w);
      }
    } else {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int idx = t + q * kThreads, kr = idx >> 5, c = (idx & 31) * 4;
        // W is [K, N]: rows are K (bounded by this slice's end), columns N.
        const float4 v = k0 + kr < k_end ? load4(w, k_end, n, n, k0 + kr, n0 + c, vec_w) : make_float4(0.f, 0.f, 0.f, 0.f);
        bs[(c + 0) * kLds + kr] = P::to(v.x);
        bs[(c + 1) * kLds + kr] = P::to(v.y);
        bs[(c + 2) * kLds + kr] = P::to(v.z);
        bs[(c + 3) * kLds + kr] = P::to(v.w);
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += P::kStep) {
      typename P::A a[4];
      typename P::B b[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        wmma::load_matrix_sync(a[i], &as[(wm * 64 + i * 16) * kLds + kk], kLds);
        P::round(a[i]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(b[j], &bs[(wn * 32 + j * 16) * kLds + kk], kLds);
        P::round(b[j]);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

  // The A tile is free now: each warp stages its fragments through its own 16 x 16 floats.
  float* stage = reinterpret_cast<float*>(as) + warp * 256;
  float* out = workspace != nullptr ? workspace + static_cast<size_t>(blockIdx.z) * m * n : y;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int e = lane; e < 256; e += 32) {
        const int r = m0 + wm * 64 + i * 16 + (e >> 4), c = n0 + wn * 32 + j * 16 + (e & 15);
        if (r < m && c < n) {
          float v = stage[e];
          if (workspace == nullptr) v = activate(v + (bias != nullptr ? bias[c] : 0.f), act);
          out[static_cast<size_t>(r) * n + c] = v;
        }
      }
      __syncwarp();
    }
}

}  // namespace

void gemm_tensor_cuda(const GemmCudaArgs& a, Stream& stream) {
  check_gemm_args(a, "gemm_tensor_cuda");
  if (a.m == 0 || a.n == 0) return;
  stream.activate();
  const auto s = static_cast<cudaStream_t>(stream.native());
  const size_t tiles = ((a.n + kBN - 1) / kBN) * ((a.m + kBM - 1) / kBM);
  const SplitPlan plan = plan_split(tiles, a.k, multiprocessor_count(stream.device()), kBK);
  float* workspace = plan.splits > 1 ? static_cast<float*>(stream.scratch(kKernelWorkspaceSlot, plan.splits * a.m * a.n * sizeof(float)))
                                     : nullptr;
  const int m = static_cast<int>(a.m), n = static_cast<int>(a.n), k = static_cast<int>(a.k);
  const dim3 grid((n + kBN - 1) / kBN, (m + kBM - 1) / kBM, plan.splits);
  const bool vec_x = k % 4 == 0 && aligned16(a.x);
  const bool vec_w = (a.w_n_by_k ? k % 4 == 0 : n % 4 == 0) && aligned16(a.w);
  const int slice = static_cast<int>(plan.k_slice);
  if (a.precision == GemmPrecision::tf32) {
    gemm_tensor_kernel<float><<<grid, kThreads, 0, s>>>(a.x, a.w, a.bias, a.y, workspace, m, n, k, slice, a.activation,
                                                        a.w_n_by_k, vec_x, vec_w);
    UMBRA_CUDA_CHECK_LAUNCH("gemm_tensor_kernel<tf32>");
  } else if (a.precision == GemmPrecision::bf16) {
    gemm_tensor_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(a.x, a.w, a.bias, a.y, workspace, m, n, k, slice,
                                                                a.activation, a.w_n_by_k, vec_x, vec_w);
    UMBRA_CUDA_CHECK_LAUNCH("gemm_tensor_kernel<bf16>");
  } else {
    throw std::invalid_argument("gemm_tensor_cuda: precision must be tf32 or bf16");
  }
  if (workspace != nullptr) split_reduce(workspace, plan.splits, a, s);
}

}  // namespace umbra::cuda

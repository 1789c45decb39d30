// fp32 SIMT GEMM: 256 threads compute a BM x 128 tile (BM 128, or 64 for small batches), each
// thread an (BM/16) x 8 block of outputs from double-buffered shared-memory tiles of depth 8.
// When the tiles alone cannot fill the multiprocessors (batch 64 on a 4096-wide layer is 32
// tiles), K is split across blocks into a workspace and a second kernel sums the slices and
// applies bias + activation; otherwise the epilogue is fused into the GEMM.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "activation.cuh"
#include "cuda_check.cuh"
#include "cublaslt.cuh"
#include "gemm.cuh"
#include "gemm_common.cuh"

namespace umbra::cuda {
namespace {

constexpr int kBN = 128, kBK = 8, kThreads = 256, kPad = 4;

// Loads this thread's 4 consecutive elements along the K (column) axis of a row-major matrix with
// row stride ld: row r0 + t/2, columns c0 + (t%2)*4 .. +3. Rows >= rows and columns >= cols (the
// end of this block's K slice) read as zero.
__device__ __forceinline__ float4 load_along_k(const float* __restrict__ a, int rows, int ld, int cols, int r0, int c0,
                                               bool vec) {
  const int t = threadIdx.x, r = r0 + (t >> 1), c = c0 + (t & 1) * 4;
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (r < rows && c < cols) {
    const float* p = a + static_cast<size_t>(r) * ld + c;
    if (vec) {
      v = __ldg(reinterpret_cast<const float4*>(p));  // vec: cols % 4 == 0 and a 16-byte aligned
    } else {
      v.x = __ldg(p);
      if (c + 1 < cols) v.y = __ldg(p + 1);
      if (c + 2 < cols) v.z = __ldg(p + 2);
      if (c + 3 < cols) v.w = __ldg(p + 3);
    }
  }
  return v;
}

// Loads 4 consecutive N-columns of a row-major [k, n] weight: row k0 + t/32, column n0 + (t%32)*4.
__device__ __forceinline__ float4 load_along_n(const float* __restrict__ w, int k, int n, int k0, int n0, bool vec) {
  const int t = threadIdx.x, r = k0 + (t >> 5), c = n0 + (t & 31) * 4;
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (r < k && c < n) {
    const float* p = w + static_cast<size_t>(r) * n + c;
    if (vec) {
      v = __ldg(reinterpret_cast<const float4*>(p));
    } else {
      v.x = __ldg(p);
      if (c + 1 < n) v.y = __ldg(p + 1);
      if (c + 2 < n) v.z = __ldg(p + 2);
      if (c + 3 < n) v.w = __ldg(p + 3);
    }
  }
  return v;
}

template <int BM, bool kNByK>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_f32_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                    float* __restrict__ y, float* __restrict__ workspace, int m, int n, int k, int k_slice, int act,
                    bool vec_x, bool vec_w, bool vec_y) {
  constexpr int TM = BM / 16, HALF_M = TM / 2;  // rows per thread, in two groups BM/2 apart
  __shared__ __align__(16) float as[2][kBK][BM + kPad];
  __shared__ __align__(16) float bs[2][kBK][kBN + kPad];
  const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * kBN;
  const int k_begin = blockIdx.z * k_slice, k_end = min(k, k_begin + k_slice);
  const bool loads_a = t < BM * 2;  // BM rows x 8 = BM*2 float4 loads

  float acc[TM][8];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  auto load_a = [&](int k0) { return loads_a ? load_along_k(x, m, k, k_end, m0, k0, vec_x) : make_float4(0.f, 0.f, 0.f, 0.f); };
  auto load_b = [&](int k0) {
    return kNByK ? load_along_k(w, n, k, k_end, n0, k0, vec_w) : load_along_n(w, k_end, n, k0, n0, vec_w);
  };
  auto store = [&](int buf, float4 ra, float4 rb) {
    if (loads_a) {
      const int r = t >> 1, c = (t & 1) * 4;
      as[buf][c + 0][r] = ra.x;
      as[buf][c + 1][r] = ra.y;
      as[buf][c + 2][r] = ra.z;
      as[buf][c + 3][r] = ra.w;
    }
    if (kNByK) {
      const int r = t >> 1, c = (t & 1) * 4;
      bs[buf][c + 0][r] = rb.x;
      bs[buf][c + 1][r] = rb.y;
      bs[buf][c + 2][r] = rb.z;
      bs[buf][c + 3][r] = rb.w;
    } else {
      *reinterpret_cast<float4*>(&bs[buf][t >> 5][(t & 31) * 4]) = rb;
    }
  };
  float4 ra = load_a(k_begin), rb = load_b(k_begin);
  store(0, ra, rb);
  __syncthreads();
  int buf = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += kBK) {
    const bool more = k0 + kBK < k_end;
    if (more) {
      ra = load_a(k0 + kBK);
      rb = load_b(k0 + kBK);
    }
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[TM], b[8];
      load_smem<HALF_M>(&as[buf][kk][ty * HALF_M], a);
      load_smem<HALF_M>(&as[buf][kk][BM / 2 + ty * HALF_M], a + HALF_M);
      load_smem<4>(&bs[buf][kk][tx * 4], b);
      load_smem<4>(&bs[buf][kk][kBN / 2 + tx * 4], b + 4);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) store(buf ^ 1, ra, rb);
    __syncthreads();
    buf ^= 1;
  }

  float* out = workspace != nullptr ? workspace + static_cast<size_t>(blockIdx.z) * m * n : y;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = m0 + (i < HALF_M ? ty * HALF_M + i : BM / 2 + ty * HALF_M + (i - HALF_M));
    if (r >= m) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int c = n0 + half * (kBN / 2) + tx * 4;
      float v[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[j] = acc[i][half * 4 + j];
        if (workspace == nullptr && c + j < n) v[j] = activate(v[j] + (bias != nullptr ? bias[c + j] : 0.f), act);
      }
      store_row4(out + static_cast<size_t>(r) * n, c, n, v, vec_y);
    }
  }
}

template <int BM, bool kNByK>
void launch(const GemmCudaArgs& a, int splits, int k_slice, float* workspace, cudaStream_t s) {
  const int m = static_cast<int>(a.m), n = static_cast<int>(a.n), k = static_cast<int>(a.k);
  const dim3 grid((n + kBN - 1) / kBN, (m + BM - 1) / BM, splits);
  const bool vec_x = k % 4 == 0 && aligned16(a.x);
  const bool vec_w = (kNByK ? k % 4 == 0 : n % 4 == 0) && aligned16(a.w);
  const bool vec_y = n % 4 == 0 && aligned16(a.y) && aligned16(workspace);
  gemm_f32_kernel<BM, kNByK><<<grid, kThreads, 0, s>>>(a.x, a.w, a.bias, a.y, workspace, m, n, k, k_slice,
                                                       a.activation, vec_x, vec_w, vec_y);
  UMBRA_CUDA_CHECK_LAUNCH("gemm_f32_kernel");
}

}  // namespace

void gemm_f32_cuda(const GemmCudaArgs& a, Stream& stream) {
  check_gemm_args(a, "gemm_f32_cuda");
  if (a.m == 0 || a.n == 0) return;
  if (a.vendor && a.k > 0 && cublaslt_gemm(a, stream)) return;
  if (a.precision != GemmPrecision::fp32) return gemm_tensor_cuda(a, stream);
  stream.activate();
  const auto s = static_cast<cudaStream_t>(stream.native());
  const int sms = multiprocessor_count(stream.device());
  const bool small_m = a.m <= 64;
  const size_t tiles = ((a.n + kBN - 1) / kBN) * ((a.m + (small_m ? 63 : 127)) / (small_m ? 64 : 128));
  const SplitPlan plan = plan_split(tiles, a.k, sms, kBK);
  float* workspace = plan.splits > 1 ? static_cast<float*>(stream.scratch(kKernelWorkspaceSlot, plan.splits * a.m * a.n * sizeof(float)))
                                     : nullptr;
  const int slice = static_cast<int>(plan.k_slice);
  if (small_m) {
    a.w_n_by_k ? launch<64, true>(a, plan.splits, slice, workspace, s) : launch<64, false>(a, plan.splits, slice, workspace, s);
  } else {
    a.w_n_by_k ? launch<128, true>(a, plan.splits, slice, workspace, s) : launch<128, false>(a, plan.splits, slice, workspace, s);
  }
  if (workspace != nullptr) split_reduce(workspace, plan.splits, a, s);
}

}  // namespace umbra::cuda

#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "activation.h"
#include "thread_pool.h"

namespace umbra {
namespace {

constexpr size_t kBlockK = 256;  // a 256 x 32 panel block (32 KiB) stays in L1 across row tiles
constexpr size_t kTilePanels = 8;  // 8 panel blocks (256 KiB) stay in L2 across a tile's rows
constexpr size_t kTileRowBlocks = 8;  // row tiles per work item

template <size_t MR>
void micro_portable_rows(size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
                         const float* bias, bool accumulate) {
  float acc[MR][kGemmPanel];
  for (size_t i = 0; i < MR; ++i)
    for (size_t j = 0; j < kGemmPanel; ++j)
      acc[i][j] = j >= nc ? 0.0f : accumulate ? c[i * ldc + j] : bias ? bias[j] : 0.0f;
  for (size_t k = 0; k < kc; ++k) {
    const float* brow = b + k * kGemmPanel;
    for (size_t i = 0; i < MR; ++i) {
      const float av = a[i * lda + k];
      for (size_t j = 0; j < kGemmPanel; ++j) acc[i][j] += av * brow[j];
    }
  }
  for (size_t i = 0; i < MR; ++i) std::memcpy(c + i * ldc, acc[i], nc * sizeof(float));
}

void micro_portable(size_t mr, size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
                    const float* bias, bool accumulate) {
  switch (mr) {
    case 1: return micro_portable_rows<1>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    case 2: return micro_portable_rows<2>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    case 3: return micro_portable_rows<3>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    default: return micro_portable_rows<4>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
  }
}

GemmMicrokernel pick_micro() {
  static const IsaTable<GemmMicrokernel (*)()> table{gemm_micro_portable, gemm_micro_avx2, gemm_micro_avx512};
  return table.pick()();
}

void check_gemm(const GemmArgs& g) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("gemm_f32: " + what); };
  if (g.m * g.n != 0 && (g.x == nullptr && g.k != 0)) fail("x is null");
  if (g.m * g.n != 0 && (g.w == nullptr && g.k != 0)) fail("w is null");
  if (g.m * g.n != 0 && g.y == nullptr) fail("y is null");
  if (static_cast<int>(g.layout) < 0 || static_cast<int>(g.layout) > 2) fail("unknown weight layout");
  if (static_cast<int>(g.activation) < 0 || static_cast<int>(g.activation) > 4) fail("unknown activation");
  if (g.threads < 1) fail("threads must be >= 1");
  const size_t limit = size_t(1) << 31;  // indices stay within int32 for the JS side
  if (g.m >= limit || g.k >= limit || g.n >= limit) fail("a dimension is >= 2^31");
}

}  // namespace

GemmMicrokernel gemm_micro_portable() { return {micro_portable, 4}; }
#if !defined(UMBRA_HAVE_AVX2)
GemmMicrokernel gemm_micro_avx2() { return gemm_micro_portable(); }
#endif
#if !defined(UMBRA_HAVE_AVX512)
GemmMicrokernel gemm_micro_avx512() { return gemm_micro_portable(); }
#endif

size_t gemm_packed_size(size_t k, size_t n) { return (n + kGemmPanel - 1) / kGemmPanel * kGemmPanel * k; }

void gemm_pack_f32(const float* w, size_t k, size_t n, WeightLayout layout, float* packed, int threads) {
  if (layout != WeightLayout::k_by_n && layout != WeightLayout::n_by_k)
    throw std::invalid_argument("gemm_pack_f32: layout must be k_by_n or n_by_k");
  if (k * n != 0 && (w == nullptr || packed == nullptr)) throw std::invalid_argument("gemm_pack_f32: null pointer");
  const size_t panels = (n + kGemmPanel - 1) / kGemmPanel;
  parallel_for(panels, threads, [&](size_t p) {
    float* dst = packed + p * k * kGemmPanel;
    const size_t c0 = p * kGemmPanel;
    const size_t nc = std::min(kGemmPanel, n - c0);
    if (layout == WeightLayout::k_by_n) {
      for (size_t kk = 0; kk < k; ++kk) {
        std::memcpy(dst + kk * kGemmPanel, w + kk * n + c0, nc * sizeof(float));
        std::fill(dst + kk * kGemmPanel + nc, dst + (kk + 1) * kGemmPanel, 0.0f);
      }
      return;
    }
    // [N,K]: transpose in 64-row strips so the written block (8 KiB) stays in L1.
    for (size_t k0 = 0; k0 < k; k0 += 64) {
      const size_t k1 = std::min(k, k0 + 64);
      for (size_t j = 0; j < kGemmPanel; ++j) {
        if (j < nc) {
          const float* src = w + (c0 + j) * k;
          for (size_t kk = k0; kk < k1; ++kk) dst[kk * kGemmPanel + j] = src[kk];
        } else {
          for (size_t kk = k0; kk < k1; ++kk) dst[kk * kGemmPanel + j] = 0.0f;
        }
      }
    }
  });
}

void gemm_f32(const GemmArgs& g) {
  check_gemm(g);
  if (g.m == 0 || g.n == 0) return;
  const BiasActivationFn activate = bias_activation_variant();
  if (g.k == 0) {
    for (size_t i = 0; i < g.m; ++i)
      for (size_t j = 0; j < g.n; ++j) g.y[i * g.n + j] = g.bias ? g.bias[j] : 0.0f;
    activate(g.y, g.m, g.n, g.n, nullptr, g.activation);
    return;
  }
  const float* packed = g.w;
  std::vector<float> scratch;
  if (g.layout != WeightLayout::packed) {
    scratch.resize(gemm_packed_size(g.k, g.n));
    gemm_pack_f32(g.w, g.k, g.n, g.layout, scratch.data(), g.threads);
    packed = scratch.data();
  }
  const GemmMicrokernel micro = pick_micro();
  const size_t m = g.m, n = g.n, k = g.k;
  const size_t panels = (n + kGemmPanel - 1) / kGemmPanel;
  const size_t tile_rows = micro.rows * kTileRowBlocks;
  const size_t row_tiles = (m + tile_rows - 1) / tile_rows;
  const size_t panel_groups = (panels + kTilePanels - 1) / kTilePanels;
  // Work item = tile_rows rows x kTilePanels panels over all of K; neighbours share rows of X.
  parallel_for(row_tiles * panel_groups, g.threads, [&](size_t item) {
    const size_t r0 = item / panel_groups * tile_rows;
    const size_t r1 = std::min(m, r0 + tile_rows);
    const size_t p0 = item % panel_groups * kTilePanels;
    const size_t p1 = std::min(panels, p0 + kTilePanels);
    // One row block (small batches): nothing to reuse across K blocks, so stream each panel
    // whole; the tile's panels are adjacent in memory, making one long sequential read.
    const size_t block_k = r1 - r0 <= micro.rows ? k : kBlockK;
    for (size_t k0 = 0; k0 < k; k0 += block_k) {
      const size_t kc = std::min(block_k, k - k0);
      const bool last = k0 + kc == k;
      for (size_t i0 = r0; i0 < r1; i0 += micro.rows) {
        const size_t mr = std::min(micro.rows, r1 - i0);
        for (size_t p = p0; p < p1; ++p) {
          const size_t c0 = p * kGemmPanel;
          const size_t nc = std::min(kGemmPanel, n - c0);
          float* c = g.y + i0 * n + c0;
          micro.fn(mr, nc, kc, g.x + i0 * k + k0, k, packed + (p * k + k0) * kGemmPanel, c, n,
                   g.bias ? g.bias + c0 : nullptr, k0 != 0);
          if (last && g.activation != Activation::none) activate(c, mr, nc, n, nullptr, g.activation);
        }
      }
    }
  });
}

}  // namespace umbra

// The batch >= 2 SpMM inner loop, written once over vector types and compiled per ISA.
#pragma once

#include <cstdint>

#include "spmm.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include "vector_math.h"

namespace umbra {
namespace vec {

// Rows are short (~50 stored weights per panel at 90% sparsity), so the hardware prefetcher
// keeps restarting on the value and index streams; each row asks for the weights kAhead further
// on by hand, as many lines as a row of the panel holds on average (a count fixed per panel, so
// its loop is predicted). Measured ~9% at batch 8, 90% sparse, on a quiet cache and ~1.3x with
// another core streaming through L3 (512 or 1024 ahead measured the same).
constexpr size_t kAhead = 256;  // stored weights: 1 KiB of values, 512 bytes of indices
inline size_t mean_length(const int32_t* ptr, size_t row_begin, size_t row_end) {
  return row_end > row_begin ? static_cast<size_t>(ptr[row_end] - ptr[row_begin]) / (row_end - row_begin) : 0;
}
inline size_t prefetch_lines(const int32_t* ptr, size_t row_begin, size_t row_end) {
  const size_t lines = mean_length(ptr, row_begin, row_end) * sizeof(float) / 64 + 1;
  return lines < 8 ? lines : 8;
}
// Addresses as integers: they may lie past the arrays' ends, where a prefetch is harmless.
inline void prefetch_ahead(const float* val, const uint16_t* col, size_t j, size_t lines) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(val) + (j + kAhead) * sizeof(float);
  const uintptr_t c = reinterpret_cast<uintptr_t>(col) + (j + kAhead) * sizeof(uint16_t);
  for (size_t l = 0; l < lines; ++l) __builtin_prefetch(reinterpret_cast<const void*>(v + 64 * l));
  for (size_t l = 0; l < lines; l += 2) __builtin_prefetch(reinterpret_cast<const void*>(c + 32 * l));
}

// NV vectors of W lanes cover the block's batch; U independent accumulator sets hide FMA
// latency when NV is small (each stored weight is one dependent FMA per vector). Panel by
// panel, row by row: a row's partial sum goes back to Yt between panels (NV vectors, from L1/L2),
// which costs far less than reading Xt rows from further away than the panel's working set.
// Finished rows are activated kActivateRows at a time, still in cache: one row of a small batch
// holds a few lanes (8 at batch 1), and a call per row spent most of its time on a padded tail:
// sigmoid or tanh on a 512x512 layer at 95% sparsity and batch 1 took 23-25 µs against 8 without.
constexpr size_t kActivateRows = 64;

// act() over Yt rows [r0, r1), `width` lanes each from the block's first: one flat run over
// whole rows when the block covers every lane (its rows are then contiguous), else row by row.
inline void activate_rows(const SpmmBlock& b, size_t r0, size_t r1, size_t width) {
  float* first = b.yt + r0 * b.ldxt;
  if (width == b.ldxt) b.activate(first, 1, (r1 - r0) * b.ldxt, 0, nullptr, b.activation);
  else b.activate(first, r1 - r0, width, b.ldxt, nullptr, b.activation);
}

// Stride: the row stride of Xt when known at compile time (batches up to 8 use rows of 8, so
// an index becomes an offset by a shift), else 0 for b.ldxt.
template <int W, int NV, int U, size_t Stride = 0>
void spmm_rows(const SpmmBlock& b) {
  using F = typename V<W>::f;
  const size_t ld = Stride != 0 ? Stride : b.ldxt;
  const SparsePanels& w = *b.w;
  const size_t panels = w.panels();
  const size_t stride = w.rows + 1;
  const uint16_t* col = w.col_idx;
  const float* val = w.values;
  for (size_t q = 0; q < panels; ++q) {
    const int32_t* ptr = w.panel_ptr + q * stride;
    const float* xp = b.xt + q * kSparsePanel * ld;
    const bool first = q == 0, last = q + 1 == panels;
    const size_t lines = prefetch_lines(ptr, b.row_begin, b.row_end);
    size_t unactivated = b.row_begin;  // first finished row the activation has not reached (last panel)
    for (size_t n = b.row_begin; n < b.row_end; ++n) {
      float* yr = b.yt + n * b.ldxt;
      prefetch_ahead(val, col, static_cast<size_t>(ptr[n]), lines);
      F acc[U][NV];
      for (int u = 0; u < U; ++u)
        for (int v = 0; v < NV; ++v) acc[u][v] = (u == 0 && !first) ? load<W>(yr + v * W) : splat<W>(0.0f);
      size_t j = static_cast<size_t>(ptr[n]);
      const size_t end = static_cast<size_t>(ptr[n + 1]);
      // The mask keeps a corrupt index inside its panel's rows of Xt (never outside the buffer).
      for (; j + U <= end; j += U) {
        for (int u = 0; u < U; ++u) {
          const F v = splat<W>(val[j + u]);
          const float* xr = xp + static_cast<size_t>(col[j + u] & (kSparsePanel - 1)) * ld;
          for (int i = 0; i < NV; ++i) acc[u][i] += v * load<W>(xr + i * W);
        }
      }
      for (; j < end; ++j) {
        const F v = splat<W>(val[j]);
        const float* xr = xp + static_cast<size_t>(col[j] & (kSparsePanel - 1)) * ld;
        for (int i = 0; i < NV; ++i) acc[0][i] += v * load<W>(xr + i * W);
      }
      const float bias = last && b.bias ? b.bias[n] : 0.0f;
      for (int i = 0; i < NV; ++i) {
        F s = acc[0][i];
        for (int u = 1; u < U; ++u) s += acc[u][i];
        store<W>(yr + i * W, last ? s + bias : s);
      }
      if (last && b.activation != Activation::none && (n + 1 - unactivated == kActivateRows || n + 1 == b.row_end)) {
        activate_rows(b, unactivated, n + 1, NV * W);
        unactivated = n + 1;
      }
    }
  }
}

// Picks the register tile for the block's batch; wider batches than MaxNV vectors are walked
// in slices of MaxNV * W columns (Xt rows are padded to 16).
template <int W, int MaxNV>
void spmm_block(const SpmmBlock& b) {
  const size_t nv = (b.batch + W - 1) / W;
  if (nv > static_cast<size_t>(MaxNV)) {
    constexpr size_t slice_width = static_cast<size_t>(MaxNV * W);
    for (size_t m0 = 0; m0 < b.batch; m0 += slice_width) {
      SpmmBlock slice = b;
      slice.xt = b.xt + m0;
      slice.yt = b.yt + m0;
      slice.batch = b.batch - m0 < slice_width ? b.batch - m0 : slice_width;
      spmm_block<W, MaxNV>(slice);
    }
    return;
  }
  if (b.ldxt == 8 && W == 8 && nv == 1) return spmm_rows<W, 1, 4, 8>(b);
  switch (nv) {
    case 1: return spmm_rows<W, 1, 4>(b);
    case 2: return spmm_rows<W, (MaxNV >= 2 ? 2 : 1), 2>(b);
    case 3: return spmm_rows<W, (MaxNV >= 3 ? 3 : 1), 2>(b);
    default: return spmm_rows<W, (MaxNV >= 4 ? 4 : 1), 2>(b);
  }
}

#if defined(__AVX2__)
// 8 x 8 block transpose in registers: r[i] holds row i; on return r[j] holds column j.
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// transpose_in over 8 x 8 blocks; edges (rows of X past m, a k not a multiple of 8) scalar.
inline void transpose_in_x8(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1) {
  const size_t kend = k1 < k ? k1 : k;
  size_t kk = k0;
  for (; kk + 8 <= kend; kk += 8) {
    size_t i0 = 0;
    for (; i0 < m; i0 += 8) {
      __m256 r[8];
      for (size_t i = 0; i < 8; ++i) r[i] = i0 + i < m ? _mm256_loadu_ps(x + (i0 + i) * k + kk) : _mm256_setzero_ps();
      transpose8(r);
      for (size_t c = 0; c < 8; ++c) _mm256_storeu_ps(xt + (kk + c) * ldxt + i0, r[c]);
    }
    for (; i0 < ldxt; i0 += 8)
      for (size_t c = 0; c < 8; ++c) _mm256_storeu_ps(xt + (kk + c) * ldxt + i0, _mm256_setzero_ps());
  }
  for (; kk < k1; ++kk) {
    float* row = xt + kk * ldxt;
    for (size_t i = 0; i < ldxt; ++i) row[i] = kk < k && i < m ? x[i * k + kk] : 0.0f;
  }
}

// transpose_out over 8 x 8 blocks; a part block of rows (r1 - r0 not a multiple of 8) scalar.
inline void transpose_out_x8(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n) {
  size_t r = r0;
  for (; r + 8 <= r1; r += 8) {
    for (size_t i0 = 0; i0 < batch; i0 += 8) {
      __m256 v[8];
      for (size_t c = 0; c < 8; ++c) v[c] = _mm256_loadu_ps(yt + (r + c) * ldyt + m0 + i0);  // lanes padded to ldyt
      transpose8(v);
      const size_t rows = batch - i0 < 8 ? batch - i0 : 8;
      for (size_t i = 0; i < rows; ++i) _mm256_storeu_ps(y + (m0 + i0 + i) * n + r, v[i]);
    }
  }
  for (; r < r1; ++r)
    for (size_t i = 0; i < batch; ++i) y[(m0 + i) * n + r] = yt[r * ldyt + m0 + i];
}
#endif

}  // namespace vec
}  // namespace umbra

// The batch >= 2 SpMM inner loop, written once over vector types and compiled per ISA.
#pragma once

#include "spmm.h"
#include "vector_math.h"

namespace umbra {
namespace vec {

// NV vectors of W lanes cover the block's batch; U independent accumulator sets hide FMA
// latency when NV is small (each stored weight is one dependent FMA per vector). Panel by
// panel, row by row: a row's partial sum goes back to Yt between panels (NV vectors, from L1/L2),
// which costs far less than reading Xt rows from further away than the panel's working set.
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
    for (size_t n = b.row_begin; n < b.row_end; ++n) {
      float* yr = b.yt + n * b.ldxt;
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
      if (last && b.activation != Activation::none) b.activate(yr, 1, NV * W, 0, nullptr, b.activation);
    }
  }
}

// Batch-1 kernel over panels, scalar: four independent sums per row.
inline void spmv_rows_scalar(const SparsePanels& w, size_t row_begin, size_t row_end, const float* x, const float* bias,
                             float* y) {
  const size_t panels = w.panels(), stride = w.rows + 1;
  for (size_t n = row_begin; n < row_end; ++n) {
    float acc[4] = {0, 0, 0, 0};
    for (size_t q = 0; q < panels; ++q) {
      const float* xp = x + q * kSparsePanel;
      size_t j = static_cast<size_t>(w.panel_ptr[q * stride + n]);
      const size_t end = static_cast<size_t>(w.panel_ptr[q * stride + n + 1]);
      for (; j + 4 <= end; j += 4)
        for (size_t u = 0; u < 4; ++u) acc[u] += w.values[j + u] * xp[w.col_idx[j + u] & (kSparsePanel - 1)];
      for (; j < end; ++j) acc[0] += w.values[j] * xp[w.col_idx[j] & (kSparsePanel - 1)];
    }
    y[n] = (acc[0] + acc[1]) + (acc[2] + acc[3]) + (bias ? bias[n] : 0.0f);
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

}  // namespace vec
}  // namespace umbra

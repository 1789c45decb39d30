// The batch >= 2 SpMM inner loop, written once over vector types and compiled per ISA.
#pragma once

#include "spmm.h"
#include "vector_math.h"

namespace umbra {
namespace vec {

// NV vectors of W lanes cover the block's batch; U independent accumulator sets hide FMA
// latency when NV is small (each stored weight is one dependent FMA per vector).
template <int W, int NV, int U>
void spmm_rows(const SpmmBlock& b) {
  using F = typename V<W>::f;
  const int32_t* row_ptr = b.w->row_ptr;
  const int32_t* col = b.w->col_idx;
  const float* val = b.w->values;
  alignas(64) float out[NV * W];
  for (size_t n = b.row_begin; n < b.row_end; ++n) {
    F acc[U][NV];
    for (int u = 0; u < U; ++u)
      for (int q = 0; q < NV; ++q) acc[u][q] = splat<W>(0.0f);
    size_t j = static_cast<size_t>(row_ptr[n]);
    const size_t end = static_cast<size_t>(row_ptr[n + 1]);
    for (; j + U <= end; j += U) {
      for (int u = 0; u < U; ++u) {
        const float v = val[j + u];
        const float* xr = b.xt + static_cast<size_t>(col[j + u]) * b.ldxt;
        for (int q = 0; q < NV; ++q) acc[u][q] += v * load<W>(xr + q * W);
      }
    }
    for (; j < end; ++j) {
      const float v = val[j];
      const float* xr = b.xt + static_cast<size_t>(col[j]) * b.ldxt;
      for (int q = 0; q < NV; ++q) acc[0][q] += v * load<W>(xr + q * W);
    }
    const float bias = b.bias ? b.bias[n] : 0.0f;
    for (int q = 0; q < NV; ++q) {
      F s = acc[0][q];
      for (int u = 1; u < U; ++u) s += acc[u][q];
      store<W>(out + q * W, s + bias);
    }
    if (b.activation != Activation::none) b.activate(out, 1, b.batch, 0, nullptr, b.activation);
    for (size_t i = 0; i < b.batch; ++i) b.y[i * b.ldy + n] = out[i];
  }
}

template <int W>
void spmm_block(const SpmmBlock& b) {
  const size_t nv = (b.batch + W - 1) / W;
  switch (nv) {
    case 1: return spmm_rows<W, 1, 8>(b);
    case 2: return spmm_rows<W, 2, 4>(b);
    case 3: return spmm_rows<W, 3, 2>(b);
    case 4: return spmm_rows<W, 4, 2>(b);
    default: {
      // Narrow vectors: walk the block in 16-column slices (Xt rows are padded to 16).
      for (size_t m0 = 0; m0 < b.batch; m0 += 16) {
        SpmmBlock slice = b;
        slice.xt = b.xt + m0;
        slice.y = b.y + m0 * b.ldy;
        slice.batch = b.batch - m0 < 16 ? b.batch - m0 : 16;
        spmm_block<W>(slice);
      }
    }
  }
}

}  // namespace vec
}  // namespace umbra

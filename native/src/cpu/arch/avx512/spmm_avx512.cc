// AVX-512 SpMM: the shared batch template at 16 lanes, and a gather-based batch-1 kernel.
#include <immintrin.h>

#include "../../spmm_block.h"

namespace umbra {

// Batches up to 8 use 8-lane vectors over an 8-wide Xt: half the bytes per stored weight.
void spmm_block_avx512(const SpmmBlock& block) {
  if (block.ldxt <= 8) vec::spmm_block<8>(block);
  else vec::spmm_block<16>(block);
}

void spmv_rows_avx512(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y) {
  for (size_t n = row_begin; n < row_end; ++n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t j = static_cast<size_t>(w.row_ptr[n]);
    const size_t end = static_cast<size_t>(w.row_ptr[n + 1]);
    for (; j + 32 <= end; j += 32) {
      const __m512i i0 = _mm512_loadu_si512(w.col_idx + j);
      const __m512i i1 = _mm512_loadu_si512(w.col_idx + j + 16);
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + j), _mm512_i32gather_ps(i0, x, 4), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + j + 16), _mm512_i32gather_ps(i1, x, 4), acc1);
    }
    for (; j < end; j += 16) {
      const size_t left = end - j;
      const __mmask16 mask = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const __m512i idx = _mm512_maskz_loadu_epi32(mask, w.col_idx + j);
      const __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, idx, x, 4);
      acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, w.values + j), g, acc0);
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (bias ? bias[n] : 0.0f);
  }
}

}  // namespace umbra

// AVX-512 SpMM: the shared batch template at 16 lanes (8 for batches up to 8), and a
// gather-based batch-1 kernel over panels.
#include <immintrin.h>

#include "../../spmm_block.h"

namespace umbra {

// Batches up to 8 use 8-lane vectors over an 8-wide Xt: half the bytes per stored weight.
void spmm_block_avx512(const SpmmBlock& block) {
  if (block.ldxt <= 8) vec::spmm_block<8, 1>(block);
  else vec::spmm_block<16, 4>(block);
}

void spmv_rows_avx512(const SparsePanels& w, size_t row_begin, size_t row_end, const float* x, const float* bias,
                      float* y) {
  const size_t panels = w.panels(), stride = w.rows + 1;
  const __m512i index_mask = _mm512_set1_epi32(static_cast<int>(kSparsePanel - 1));
  for (size_t n = row_begin; n < row_end; ++n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (size_t q = 0; q < panels; ++q) {
      const float* xp = x + q * kSparsePanel;
      size_t j = static_cast<size_t>(w.panel_ptr[q * stride + n]);
      const size_t end = static_cast<size_t>(w.panel_ptr[q * stride + n + 1]);
      for (; j + 32 <= end; j += 32) {
        const __m512i i0 = _mm512_and_si512(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_idx + j))), index_mask);
        const __m512i i1 = _mm512_and_si512(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_idx + j + 16))), index_mask);
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + j), _mm512_i32gather_ps(i0, xp, 4), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + j + 16), _mm512_i32gather_ps(i1, xp, 4), acc1);
      }
      for (; j < end; j += 16) {
        const size_t left = end - j;
        const __mmask16 mask = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
        const __m512i idx = _mm512_and_si512(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, w.col_idx + j)), index_mask);
        const __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, idx, xp, 4);
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, w.values + j), g, acc1);
      }
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (bias ? bias[n] : 0.0f);
  }
}

}  // namespace umbra

// AVX2 SpMM: the shared batch template at 8 lanes, and a gather-based batch-1 kernel over panels.
#include <immintrin.h>

#include "../../spmm_block.h"

namespace umbra {

void spmm_block_avx2(const SpmmBlock& block) { vec::spmm_block<8, 4>(block); }

void transpose_in_avx2(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1) {
  vec::transpose_in_x8(x, m, k, xt, ldxt, k0, k1);
}

void transpose_out_avx2(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n) {
  vec::transpose_out_x8(yt, ldyt, m0, batch, r0, r1, y, n);
}

void spmv_rows_avx2(const SparsePanels& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y) {
  const size_t panels = w.panels(), stride = w.rows + 1;
  const __m256i index_mask = _mm256_set1_epi32(static_cast<int>(kSparsePanel - 1));
  for (size_t n = row_begin; n < row_end; ++n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float tail = 0.0f;
    for (size_t q = 0; q < panels; ++q) {
      const float* xp = x + q * kSparsePanel;
      size_t j = static_cast<size_t>(w.panel_ptr[q * stride + n]);
      const size_t end = static_cast<size_t>(w.panel_ptr[q * stride + n + 1]);
      for (; j + 16 <= end; j += 16) {
        const __m256i i0 = _mm256_and_si256(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.col_idx + j))), index_mask);
        const __m256i i1 = _mm256_and_si256(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.col_idx + j + 8))), index_mask);
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + j), _mm256_i32gather_ps(xp, i0, 4), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + j + 8), _mm256_i32gather_ps(xp, i1, 4), acc1);
      }
      for (; j < end; ++j) tail += w.values[j] * xp[w.col_idx[j] & (kSparsePanel - 1)];
    }
    const __m256 s = _mm256_add_ps(acc0, acc1);
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    float lanes[4];
    _mm_storeu_ps(lanes, h);
    y[n] = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + tail + (bias ? bias[n] : 0.0f);
  }
}

}  // namespace umbra

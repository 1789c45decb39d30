// AVX2 SpMM: the shared batch template at 8 lanes, and a gather-based batch-1 kernel.
#include <immintrin.h>

#include "../../spmm_block.h"

namespace umbra {

void spmm_block_avx2(const SpmmBlock& block) { vec::spmm_block<8>(block); }

void spmv_rows_avx2(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y) {
  for (size_t n = row_begin; n < row_end; ++n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t j = static_cast<size_t>(w.row_ptr[n]);
    const size_t end = static_cast<size_t>(w.row_ptr[n + 1]);
    for (; j + 16 <= end; j += 16) {
      const __m256i i0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_idx + j));
      const __m256i i1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_idx + j + 8));
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + j), _mm256_i32gather_ps(x, i0, 4), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + j + 8), _mm256_i32gather_ps(x, i1, 4), acc1);
    }
    const __m256 s = _mm256_add_ps(acc0, acc1);
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    float lanes[4];
    _mm_storeu_ps(lanes, h);
    float tail = 0.0f;
    for (; j < end; ++j) tail += w.values[j] * x[w.col_idx[j]];
    y[n] = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + tail + (bias ? bias[n] : 0.0f);
  }
}

}  // namespace umbra

// AVX2/FMA GEMM microkernel: 6 rows x 16 columns in 12 ymm accumulators, run once per half of
// a 32-column panel (16 registers do not hold a 32-wide tile).
#include <immintrin.h>

#include "../../gemm.h"

namespace umbra {
namespace {

constexpr size_t kRows = 6;

inline __m256i lane_mask(size_t valid) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(valid)), lanes);
}

template <size_t R>
void half_rows(size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
               const float* bias, bool accumulate) {
  const __m256i m0 = lane_mask(nc >= 8 ? 8 : nc);
  const __m256i m1 = lane_mask(nc >= 16 ? 8 : nc > 8 ? nc - 8 : 0);
  __m256 acc0[R], acc1[R];
  if (accumulate) {
    for (size_t i = 0; i < R; ++i) {
      acc0[i] = _mm256_maskload_ps(c + i * ldc, m0);
      acc1[i] = _mm256_maskload_ps(c + i * ldc + 8, m1);
    }
  } else {
    const __m256 b0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
    const __m256 b1 = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
    for (size_t i = 0; i < R; ++i) {
      acc0[i] = b0;
      acc1[i] = b1;
    }
  }
  for (size_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_loadu_ps(b + k * 32);
    const __m256 w1 = _mm256_loadu_ps(b + k * 32 + 8);
    for (size_t i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i * lda + k);
      acc0[i] = _mm256_fmadd_ps(av, w0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, w1, acc1[i]);
    }
  }
  for (size_t i = 0; i < R; ++i) {
    _mm256_maskstore_ps(c + i * ldc, m0, acc0[i]);
    _mm256_maskstore_ps(c + i * ldc + 8, m1, acc1[i]);
  }
}

template <size_t R>
void micro_rows(size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
                const float* bias, bool accumulate) {
  half_rows<R>(nc < 16 ? nc : 16, kc, a, lda, b, c, ldc, bias, accumulate);
  if (nc > 16) half_rows<R>(nc - 16, kc, a, lda, b + 16, c + 16, ldc, bias ? bias + 16 : nullptr, accumulate);
}

void micro(size_t mr, size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
           const float* bias, bool accumulate) {
  switch (mr) {
    case 1: return micro_rows<1>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    case 2: return micro_rows<2>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    case 3: return micro_rows<3>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    case 4: return micro_rows<4>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    case 5: return micro_rows<5>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    default: return micro_rows<kRows>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
  }
}

}  // namespace

GemmMicrokernel gemm_micro_avx2() { return {micro, kRows}; }

}  // namespace umbra

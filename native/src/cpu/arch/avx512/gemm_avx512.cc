// AVX-512 GEMM microkernel: 12 rows x 32 columns held in 24 zmm accumulators; per k it loads
// one 32-float panel row (2 zmm) and broadcasts 12 values of X into 24 FMAs.
#include <immintrin.h>

#include "../../gemm.h"

namespace umbra {
namespace {

constexpr size_t kRows = 12;

template <size_t R>
void micro_rows(size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
                const float* bias, bool accumulate) {
  const __mmask16 m0 = nc >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << nc) - 1);
  const __mmask16 m1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : static_cast<__mmask16>((1u << (nc - 16)) - 1);
  __m512 acc0[R], acc1[R];
  if (accumulate) {
    for (size_t i = 0; i < R; ++i) {
      acc0[i] = _mm512_maskz_loadu_ps(m0, c + i * ldc);
      acc1[i] = _mm512_maskz_loadu_ps(m1, c + i * ldc + 16);
    }
  } else {
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (size_t i = 0; i < R; ++i) {
      acc0[i] = b0;
      acc1[i] = b1;
    }
  }
  for (size_t k = 0; k < kc; ++k) {
    // The panel is read once per row block; fetch 16 rows (2 KiB) ahead of use.
    _mm_prefetch(reinterpret_cast<const char*>(b + (k + 16) * 32), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b + (k + 16) * 32 + 16), _MM_HINT_T0);
    const __m512 w0 = _mm512_loadu_ps(b + k * 32);
    const __m512 w1 = _mm512_loadu_ps(b + k * 32 + 16);
    for (size_t i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
      acc0[i] = _mm512_fmadd_ps(av, w0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(av, w1, acc1[i]);
    }
  }
  for (size_t i = 0; i < R; ++i) {
    _mm512_mask_storeu_ps(c + i * ldc, m0, acc0[i]);
    _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc1[i]);
  }
}

void micro(size_t mr, size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c, size_t ldc,
           const float* bias, bool accumulate) {
  switch (mr) {
#define UMBRA_ROWS(r) \
  case r: return micro_rows<r>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
    UMBRA_ROWS(1) UMBRA_ROWS(2) UMBRA_ROWS(3) UMBRA_ROWS(4) UMBRA_ROWS(5) UMBRA_ROWS(6)
    UMBRA_ROWS(7) UMBRA_ROWS(8) UMBRA_ROWS(9) UMBRA_ROWS(10) UMBRA_ROWS(11)
#undef UMBRA_ROWS
    default: return micro_rows<kRows>(nc, kc, a, lda, b, c, ldc, bias, accumulate);
  }
}

}  // namespace

GemmMicrokernel gemm_micro_avx512() { return {micro, kRows}; }

}  // namespace umbra

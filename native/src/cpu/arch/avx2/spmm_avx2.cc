// AVX2 SpMM: the shared batch template at 8 lanes.
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

}  // namespace umbra

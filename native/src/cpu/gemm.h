// GEMM internals shared by the driver (gemm.cc) and the ISA microkernels (arch/*/gemm_*.cc).
//
// W is repacked into panels of kGemmPanel columns: panel p holds columns [32p, 32p+32) for all
// K, k-major, zero-padded past N: packed[(p*K + k)*32 + j]. The driver walks cache blocks of
// KC rows of K; a microkernel computes an mr x 32 tile of Y over one block, keeping the tile in
// registers and streaming one row of the panel per k.
#pragma once

#include <cstddef>

#include "isa.h"

namespace umbra {

constexpr size_t kGemmPanel = 32;

// C[0..mr, 0..nc) (+)= A[0..mr, 0..kc) . B[0..kc, 0..nc). A has row stride lda; B is a packed
// panel (row stride 32); C has row stride ldc. When !accumulate the tile starts from bias
// (nc values, may be null = zeros) instead of C. mr <= the variant's rows; nc <= 32.
using GemmMicroFn = void (*)(size_t mr, size_t nc, size_t kc, const float* a, size_t lda, const float* b, float* c,
                             size_t ldc, const float* bias, bool accumulate);

struct GemmMicrokernel {
  GemmMicroFn fn;
  size_t rows;  // register tile height (MR)
};

GemmMicrokernel gemm_micro_portable();
GemmMicrokernel gemm_micro_avx2();
GemmMicrokernel gemm_micro_avx512();

}  // namespace umbra

// SpMM internals: the driver (spmm.cc) transposes X to Xt [K, M padded] once per call so every
// stored weight w[n,k] becomes one broadcast-FMA over a contiguous row of Xt (vectorised over
// the batch); batch 1 instead gathers x[k] per weight. Variants per ISA.
//
// Format: CSR over output rows with int32 column indices. Unstructured magnitude pruning leaves
// no block structure to exploit (blocked formats would store and multiply many zeros), rows
// split evenly across threads by stored-value count, and each row's result is finished (bias,
// activation) while still in registers. Column indices must lie in [0, K); their order within a
// row does not matter.
#pragma once

#include <cstddef>

#include "activation.h"
#include "isa.h"

namespace umbra {

struct SpmmBlock {
  const CsrMatrix* w;
  size_t row_begin, row_end;  // output rows (features) of this work item
  const float* xt;  // Xt at column m0, row stride ldxt (8 when batch <= 8, else a multiple of 16; zero-padded)
  size_t ldxt;
  size_t batch;  // columns of Xt this block covers (<= spmm_block_width)
  const float* bias;  // [N] or null
  float* y;  // Y at row m0, row stride ldy
  size_t ldy;
  Activation activation;
  BiasActivationFn activate;
};

constexpr size_t kSpmmBlockWidth = 64;  // batch columns per block: 4 zmm / 8 ymm / 16 xmm

// Batch >= 2: Y[m, n] for the block's rows and columns.
using SpmmBlockFn = void (*)(const SpmmBlock& block);
// Batch 1: y[n] = bias[n] + sum w[n,k] x[k] for n in [row_begin, row_end) (no activation).
using SpmvRowsFn = void (*)(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias,
                            float* y);

void spmm_block_portable(const SpmmBlock& block);
void spmm_block_avx2(const SpmmBlock& block);
void spmm_block_avx512(const SpmmBlock& block);
void spmv_rows_portable(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y);
void spmv_rows_avx2(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y);
void spmv_rows_avx512(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y);

}  // namespace umbra

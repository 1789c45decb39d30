// SpMM internals. The driver (spmm.cc) transposes X to Xt [K, lanes] once per call so every
// stored weight w[n,k] becomes one broadcast-FMA over a contiguous row of Xt (vectorised over
// the batch). W is stored in column panels (see SparsePanels in umbra_kernels.h): the kernel
// walks panel by panel, so the rows of Xt one panel touches (512 x up to 256 bytes) stay in
// L1/L2 while every output row reads them, and partial sums wait in Yt [N, lanes] between
// panels. Batch 1 runs the same way with one live lane. Variants per ISA.
//
// Unstructured magnitude pruning leaves no block structure to exploit (blocked formats would
// store and multiply many zeros); rows are split across threads by stored-value count, and each
// row's result is finished (bias, activation) on the last panel while it is hot.
#pragma once

#include <cstddef>

#include "activation.h"
#include "isa.h"

namespace umbra {

struct SpmmBlock {
  const SparsePanels* w;
  size_t row_begin, row_end;  // output rows (features) of this work item
  const float* xt;  // Xt at column m0, row stride ldxt, rows padded with zeros to panels * kSparsePanel
  size_t ldxt;  // 8 when batch <= 8, else a multiple of 16
  size_t batch;  // columns of Xt this block covers (<= kSpmmBlockWidth); lanes past it are zero
  const float* bias;  // [N] or null
  float* yt;  // Yt at row 0, column m0, row stride ldxt (partial sums, then results)
  Activation activation;
  BiasActivationFn activate;
};

constexpr size_t kSpmmBlockWidth = 64;  // batch columns per block: 4 zmm / 8 ymm / 16 xmm

// Batch >= 2: Yt[n, 0..batch) for the block's rows, over every panel.
using SpmmBlockFn = void (*)(const SpmmBlock& block);
// Xt rows [k0, k1): Xt[kk, i] = X[i, kk] for i < m and kk < k, zero elsewhere up to ldxt lanes.
using TransposeInFn = void (*)(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1);
// Y[m0 + i, r] = Yt[r, m0 + i] for i < batch and r in [r0, r1); Y has n columns.
using TransposeOutFn = void (*)(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y,
                                size_t n);

void spmm_block_portable(const SpmmBlock& block);
void spmm_block_avx2(const SpmmBlock& block);
void spmm_block_avx512(const SpmmBlock& block);
void transpose_in_portable(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1);
void transpose_in_avx2(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1);
void transpose_in_avx512(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1);
void transpose_out_portable(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n);
void transpose_out_avx2(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n);
void transpose_out_avx512(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n);
}  // namespace umbra

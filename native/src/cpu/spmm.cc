#include "spmm.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "spmm_block.h"
#include "thread_pool.h"

namespace umbra {
namespace {

void check_csr(const CsrMatrix& w, const char* who) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(who) + ": " + what); };
  if (w.row_ptr == nullptr) fail("rowPtr is null");
  if (w.nnz != 0 && (w.col_idx == nullptr || w.values == nullptr)) fail("colIdx or values is null");
  if (w.row_ptr[0] != 0) fail("rowPtr[0] must be 0");
  for (size_t r = 0; r < w.rows; ++r)
    if (w.row_ptr[r + 1] < w.row_ptr[r]) fail("rowPtr must be non-decreasing (row " + std::to_string(r) + ")");
  if (static_cast<size_t>(w.row_ptr[w.rows]) != w.nnz) fail("rowPtr[rows] must equal the number of stored values");
  // One branch-free pass the compiler vectorises: an out-of-range index would read past X.
  uint32_t bad = 0;
  const uint32_t cols = static_cast<uint32_t>(w.cols);
  for (size_t j = 0; j < w.nnz; ++j) bad |= static_cast<uint32_t>(static_cast<uint32_t>(w.col_idx[j]) >= cols);
  if (bad) fail("a column index is outside [0, cols)");
}

// Row ranges with about equal stored values each, so threads finish together.
std::vector<size_t> balanced_rows(const CsrMatrix& w, size_t parts) {
  std::vector<size_t> cuts{0};
  for (size_t p = 1; p < parts; ++p) {
    const int32_t target = static_cast<int32_t>(w.nnz * p / parts);
    const size_t r = static_cast<size_t>(std::lower_bound(w.row_ptr, w.row_ptr + w.rows + 1, target) - w.row_ptr);
    cuts.push_back(std::max(cuts.back(), std::min(r, w.rows)));
  }
  cuts.push_back(w.rows);
  return cuts;
}

}  // namespace

void spmm_block_portable(const SpmmBlock& block) { vec::spmm_block<4>(block); }

void spmv_rows_portable(const CsrMatrix& w, size_t row_begin, size_t row_end, const float* x, const float* bias, float* y) {
  for (size_t n = row_begin; n < row_end; ++n) {
    float acc[4] = {0, 0, 0, 0};
    size_t j = static_cast<size_t>(w.row_ptr[n]);
    const size_t end = static_cast<size_t>(w.row_ptr[n + 1]);
    for (; j + 4 <= end; j += 4)
      for (size_t u = 0; u < 4; ++u) acc[u] += w.values[j + u] * x[w.col_idx[j + u]];
    for (; j < end; ++j) acc[0] += w.values[j] * x[w.col_idx[j]];
    y[n] = (acc[0] + acc[1]) + (acc[2] + acc[3]) + (bias ? bias[n] : 0.0f);
  }
}

#if !defined(UMBRA_HAVE_AVX2)
void spmm_block_avx2(const SpmmBlock& block) { spmm_block_portable(block); }
void spmv_rows_avx2(const CsrMatrix& w, size_t b, size_t e, const float* x, const float* bias, float* y) {
  spmv_rows_portable(w, b, e, x, bias, y);
}
#endif
#if !defined(UMBRA_HAVE_AVX512)
void spmm_block_avx512(const SpmmBlock& block) { spmm_block_portable(block); }
void spmv_rows_avx512(const CsrMatrix& w, size_t b, size_t e, const float* x, const float* bias, float* y) {
  spmv_rows_portable(w, b, e, x, bias, y);
}
#endif

void spmm_csr_f32(const SpmmArgs& a) {
  if (static_cast<int>(a.activation) < 0 || static_cast<int>(a.activation) > 4)
    throw std::invalid_argument("spmm_csr_f32: unknown activation");
  if (a.threads < 1) throw std::invalid_argument("spmm_csr_f32: threads must be >= 1");
  check_csr(a.w, "spmm_csr_f32");
  const size_t m = a.m, n = a.w.rows, k = a.w.cols;
  if (m == 0 || n == 0) return;
  if (a.y == nullptr || (k != 0 && a.x == nullptr)) throw std::invalid_argument("spmm_csr_f32: x or y is null");
  static const IsaTable<SpmmBlockFn> blocks{spmm_block_portable, spmm_block_avx2, spmm_block_avx512};
  static const IsaTable<SpmvRowsFn> spmvs{spmv_rows_portable, spmv_rows_avx2, spmv_rows_avx512};
  const BiasActivationFn activate = bias_activation_variant();
  const size_t parts = a.threads > 1 ? static_cast<size_t>(a.threads) * 8 : 1;
  const std::vector<size_t> cuts = balanced_rows(a.w, parts);

  if (m == 1) {
    const SpmvRowsFn spmv = spmvs.pick();
    parallel_for(parts, a.threads, [&](size_t p) {
      const size_t r0 = cuts[p], r1 = cuts[p + 1];
      spmv(a.w, r0, r1, a.x, a.bias, a.y);
      if (a.activation != Activation::none) activate(a.y + r0, 1, r1 - r0, 0, nullptr, a.activation);
    });
    return;
  }

  // Xt [K, ldxt], zero-padded to 8 (small batches) or 16 columns so full-vector loads never
  // leave the buffer.
  const size_t ldxt = m <= 8 ? 8 : (m + 15) / 16 * 16;
  std::vector<float> xt(k * ldxt, 0.0f);
  parallel_for((k + 63) / 64, a.threads, [&](size_t kb) {
    const size_t k0 = kb * 64, k1 = std::min(k, k0 + 64);
    for (size_t i = 0; i < m; ++i)
      for (size_t kk = k0; kk < k1; ++kk) xt[kk * ldxt + i] = a.x[i * k + kk];
  });
  const SpmmBlockFn block_fn = blocks.pick();
  const size_t batch_blocks = (m + kSpmmBlockWidth - 1) / kSpmmBlockWidth;
  parallel_for(parts * batch_blocks, a.threads, [&](size_t item) {
    const size_t p = item / batch_blocks, mb = item % batch_blocks;
    SpmmBlock b{};
    b.w = &a.w;
    b.row_begin = cuts[p];
    b.row_end = cuts[p + 1];
    b.xt = xt.data() + mb * kSpmmBlockWidth;
    b.ldxt = ldxt;
    b.batch = std::min(kSpmmBlockWidth, m - mb * kSpmmBlockWidth);
    b.bias = a.bias;
    b.y = a.y + mb * kSpmmBlockWidth * n;
    b.ldy = n;
    b.activation = a.activation;
    b.activate = activate;
    block_fn(b);
  });
}

CsrOwned csr_from_dense_f32(const float* w, size_t rows, size_t cols) {
  if (rows * cols != 0 && w == nullptr) throw std::invalid_argument("csr_from_dense_f32: w is null");
  if (cols >= (size_t(1) << 31)) throw std::invalid_argument("csr_from_dense_f32: cols must be < 2^31");
  CsrOwned out;
  out.row_ptr.assign(rows + 1, 0);
  size_t nnz = 0;
  for (size_t i = 0; i < rows * cols; ++i) nnz += w[i] != 0.0f;
  if (nnz >= (size_t(1) << 31)) throw std::invalid_argument("csr_from_dense_f32: more than 2^31-1 non-zeros");
  out.col_idx.reserve(nnz);
  out.values.reserve(nnz);
  for (size_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      if (row[c] != 0.0f) {
        out.col_idx.push_back(static_cast<int32_t>(c));
        out.values.push_back(row[c]);
      }
    }
    out.row_ptr[r + 1] = static_cast<int32_t>(out.values.size());
  }
  return out;
}

}  // namespace umbra

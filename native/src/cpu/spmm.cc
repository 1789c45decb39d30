#include "spmm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
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

void check_panels(const SparsePanels& w, const char* who) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string(who) + ": " + what); };
  const size_t panels = w.panels(), stride = w.rows + 1;
  if (panels == 0) return;
  if (w.panel_ptr == nullptr) fail("panelPtr is null");
  if (w.nnz != 0 && (w.col_idx == nullptr || w.values == nullptr)) fail("colIdx or values is null");
  if (w.panel_ptr[0] != 0) fail("panelPtr[0] must be 0");
  for (size_t q = 0; q < panels; ++q) {
    const int32_t* p = w.panel_ptr + q * stride;
    if (q > 0 && p[0] != p[-1]) fail("panel " + std::to_string(q) + " must start where panel " + std::to_string(q - 1) + " ends");
    int32_t bad = 0;
    for (size_t r = 0; r < w.rows; ++r) bad |= static_cast<int32_t>(p[r + 1] < p[r]);
    if (bad) fail("panelPtr must be non-decreasing within panel " + std::to_string(q));
  }
  if (static_cast<size_t>(w.panel_ptr[panels * stride - 1]) != w.nnz) fail("the last panel pointer must equal the number of stored values");
}

// Row ranges with about equal stored values each, so threads finish together.
std::vector<size_t> balanced_rows(const SparsePanels& w, size_t parts) {
  if (parts <= 1 || w.rows == 0) return {0, w.rows};
  const size_t panels = w.panels(), stride = w.rows + 1;
  std::vector<size_t> before(w.rows + 1, 0);  // stored values in rows [0, r)
  for (size_t r = 0; r < w.rows; ++r) {
    size_t count = 0;
    for (size_t q = 0; q < panels; ++q) count += static_cast<size_t>(w.panel_ptr[q * stride + r + 1] - w.panel_ptr[q * stride + r]);
    before[r + 1] = before[r] + count;
  }
  std::vector<size_t> cuts{0};
  for (size_t p = 1; p < parts; ++p) {
    const size_t target = before[w.rows] * p / parts;
    const size_t r = static_cast<size_t>(std::lower_bound(before.begin(), before.end(), target) - before.begin());
    cuts.push_back(std::max(cuts.back(), std::min(r, w.rows)));
  }
  cuts.push_back(w.rows);
  return cuts;
}

// Per-thread scratch that grows and is reused, so a call does not page in fresh memory.
// Cache-line aligned: with rows of Xt a multiple of 64 bytes, no vector load splits a line
// (a 16-byte offset measured 2x slower).
struct AlignedFree {
  void operator()(float* p) const { ::operator delete[](p, std::align_val_t(64)); }
};
using ScratchBuffer = std::unique_ptr<float[], AlignedFree>;
float* scratch(ScratchBuffer& buffer, size_t& capacity, size_t floats) {
  if (capacity < floats) {
    buffer.reset(static_cast<float*>(::operator new[](floats * sizeof(float), std::align_val_t(64))));
    capacity = floats;
  }
  return buffer.get();
}

}  // namespace

void spmm_block_portable(const SpmmBlock& block) { vec::spmm_block<4, 4>(block); }

void transpose_in_portable(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1) {
  constexpr size_t kTile = 16;  // 16 x 16 tiles
  for (size_t kk = k0; kk < k1; ++kk) std::fill(xt + kk * ldxt + (kk < k ? m : 0), xt + (kk + 1) * ldxt, 0.0f);
  for (size_t t0 = k0; t0 < std::min(k, k1); t0 += kTile) {
    const size_t t1 = std::min({k, k1, t0 + kTile});
    for (size_t i = 0; i < m; ++i)
      for (size_t kk = t0; kk < t1; ++kk) xt[kk * ldxt + i] = x[i * k + kk];
  }
}

void transpose_out_portable(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n) {
  constexpr size_t kTile = 16;
  for (size_t n0 = r0; n0 < r1; n0 += kTile) {
    const size_t n1 = std::min(r1, n0 + kTile);
    for (size_t i = 0; i < batch; ++i) {
      float* dst = y + (m0 + i) * n;
      for (size_t r = n0; r < n1; ++r) dst[r] = yt[r * ldyt + m0 + i];
    }
  }
}

#if !defined(UMBRA_HAVE_AVX2)
void spmm_block_avx2(const SpmmBlock& block) { spmm_block_portable(block); }
void transpose_in_avx2(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1) {
  transpose_in_portable(x, m, k, xt, ldxt, k0, k1);
}
void transpose_out_avx2(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n) {
  transpose_out_portable(yt, ldyt, m0, batch, r0, r1, y, n);
}
#endif
#if !defined(UMBRA_HAVE_AVX512)
void spmm_block_avx512(const SpmmBlock& block) { spmm_block_portable(block); }
void transpose_in_avx512(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1) {
  transpose_in_portable(x, m, k, xt, ldxt, k0, k1);
}
void transpose_out_avx512(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n) {
  transpose_out_portable(yt, ldyt, m0, batch, r0, r1, y, n);
}
#endif

SparsePanelsOwned sparse_pack_f32(const CsrMatrix& w) {
  check_csr(w, "sparse_pack_f32");
  if (w.nnz >= (size_t(1) << 31)) throw std::invalid_argument("sparse_pack_f32: more than 2^31-1 non-zeros");
  const size_t panels = (w.cols + kSparsePanel - 1) / kSparsePanel, stride = w.rows + 1;
  SparsePanelsOwned out;
  out.panel_ptr.assign(panels * stride, 0);
  out.col_idx.resize(w.nnz);
  out.values.resize(w.nnz);
  // Count per (panel, row), turn counts into starts, then place each entry.
  for (size_t r = 0; r < w.rows; ++r)
    for (int32_t j = w.row_ptr[r]; j < w.row_ptr[r + 1]; ++j)
      ++out.panel_ptr[static_cast<size_t>(w.col_idx[j]) / kSparsePanel * stride + r + 1];
  int32_t running = 0;
  for (size_t q = 0; q < panels; ++q) {
    int32_t* p = out.panel_ptr.data() + q * stride;
    p[0] = running;
    for (size_t r = 0; r < w.rows; ++r) p[r + 1] = running += p[r + 1];
  }
  std::vector<int32_t> fill(panels * stride);
  for (size_t i = 0; i < fill.size(); ++i) fill[i] = out.panel_ptr[i];
  for (size_t r = 0; r < w.rows; ++r) {
    for (int32_t j = w.row_ptr[r]; j < w.row_ptr[r + 1]; ++j) {
      const size_t c = static_cast<size_t>(w.col_idx[j]);
      const size_t at = static_cast<size_t>(fill[c / kSparsePanel * stride + r]++);
      out.col_idx[at] = static_cast<uint16_t>(c % kSparsePanel);
      out.values[at] = w.values[j];
    }
  }
  return out;
}

// Xt [padded K, lanes] and Yt [N, lanes] are padded to 8 lanes (small batches) or a multiple of
// 16, so full-vector loads never leave the buffers.
size_t spmm_lanes(size_t m) { return m <= 8 ? 8 : (m + 15) / 16 * 16; }

void spmm_panels_f32(const SpmmPanelsArgs& a) {
  if (static_cast<int>(a.activation) < 0 || static_cast<int>(a.activation) > 4)
    throw std::invalid_argument("spmm_panels_f32: unknown activation");
  if (a.threads < 1) throw std::invalid_argument("spmm_panels_f32: threads must be >= 1");
  check_panels(a.w, "spmm_panels_f32");
  const size_t m = a.m, n = a.w.rows, k = a.w.cols;
  if (m == 0 || n == 0) return;
  if (a.y == nullptr || (k != 0 && a.x == nullptr)) throw std::invalid_argument("spmm_panels_f32: x or y is null");
  const size_t ldxt = spmm_lanes(m);
  if ((a.x_lanes != 0 && a.x_lanes != ldxt) || (a.y_lanes != 0 && a.y_lanes != ldxt))
    throw std::invalid_argument("spmm_panels_f32: transposed activations of " + std::to_string(m) + " rows need " +
                                std::to_string(ldxt) + " lanes");
  const BiasActivationFn activate = bias_activation_variant();
  if (k == 0 && (a.x_lanes != 0 || a.y_lanes != 0)) throw std::invalid_argument("spmm_panels_f32: lanes need k > 0");
  if (k == 0) {
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < n; ++j) a.y[i * n + j] = a.bias ? a.bias[j] : 0.0f;
    activate(a.y, m, n, n, nullptr, a.activation);
    return;
  }
  static const IsaTable<SpmmBlockFn> blocks{spmm_block_portable, spmm_block_avx2, spmm_block_avx512};
  const size_t parts = a.threads > 1 ? static_cast<size_t>(a.threads) * 8 : 1;
  const std::vector<size_t> cuts = balanced_rows(a.w, parts);
  const size_t padded_k = a.w.panels() * kSparsePanel;
  // A matrix with no stored weights (a layer pruned whole) comes with null arrays. The kernels'
  // masked tail loads then address the unmapped first page: with every lane masked off nothing
  // is read, but each one costs a fault-suppression assist (a 1024x1024 layer of zeros took
  // 600 µs at batch 1 instead of 10). They read from an empty array that exists instead.
  static constexpr uint16_t kNoIndex[16] = {};
  static constexpr float kNoValue[16] = {};
  SparsePanels w = a.w;
  if (w.nnz == 0) {
    w.col_idx = kNoIndex;
    w.values = kNoValue;
  }
  thread_local ScratchBuffer x_buffer, y_buffer;
  thread_local size_t x_capacity = 0, y_capacity = 0;

  // One row (batch 1) takes the batch-8 path too, with seven idle lanes: a gather per 16 stored
  // weights measured 1.7x slower than that on an AMD Zen host (4096x4096 at 90% sparsity, 1.0
  // against 0.6 ns per weight) and no faster on Intel, where both took the same time per pass.
  static const IsaTable<TransposeInFn> transposes_in{transpose_in_portable, transpose_in_avx2, transpose_in_avx512};
  static const IsaTable<TransposeOutFn> transposes_out{transpose_out_portable, transpose_out_avx2, transpose_out_avx512};
  const float* xt = a.x;
  if (a.x_lanes == 0) {
    float* own = scratch(x_buffer, x_capacity, padded_k * ldxt);
    const TransposeInFn transpose_in = transposes_in.pick();
    constexpr size_t kTile = 64;  // rows of Xt per parallel item
    parallel_for((padded_k + kTile - 1) / kTile, a.threads, [&](size_t t) {
      transpose_in(a.x, m, k, own, ldxt, t * kTile, std::min(padded_k, (t + 1) * kTile));
    });
    xt = own;
  }
  float* yt = a.y_lanes == 0 ? scratch(y_buffer, y_capacity, n * ldxt) : a.y;
  const TransposeOutFn transpose_out = a.y_lanes == 0 ? transposes_out.pick() : nullptr;
  const SpmmBlockFn block_fn = blocks.pick();
  const size_t batch_blocks = (m + kSpmmBlockWidth - 1) / kSpmmBlockWidth;
  parallel_for(parts * batch_blocks, a.threads, [&](size_t item) {
    const size_t p = item / batch_blocks, mb = item % batch_blocks;
    const size_t m0 = mb * kSpmmBlockWidth;
    SpmmBlock b{};
    b.w = &w;
    b.row_begin = cuts[p];
    b.row_end = cuts[p + 1];
    b.xt = xt + m0;
    b.ldxt = ldxt;
    b.batch = std::min(kSpmmBlockWidth, m - m0);
    b.bias = a.bias;
    b.yt = yt + m0;
    b.activation = a.activation;
    b.activate = activate;
    block_fn(b);
    if (transpose_out) transpose_out(yt, ldxt, m0, b.batch, b.row_begin, b.row_end, a.y, n);
  });
}

void spmm_csr_f32(const SpmmArgs& a) {
  if (static_cast<int>(a.activation) < 0 || static_cast<int>(a.activation) > 4)
    throw std::invalid_argument("spmm_csr_f32: unknown activation");
  if (a.threads < 1) throw std::invalid_argument("spmm_csr_f32: threads must be >= 1");
  check_csr(a.w, "spmm_csr_f32");
  if (a.m == 0 || a.w.rows == 0) return;
  if (a.y == nullptr || (a.w.cols != 0 && a.x == nullptr)) throw std::invalid_argument("spmm_csr_f32: x or y is null");
  const SparsePanelsOwned packed = sparse_pack_f32(a.w);
  SpmmPanelsArgs p;
  p.x = a.x;
  p.w.panel_ptr = packed.panel_ptr.data();
  p.w.col_idx = packed.col_idx.data();
  p.w.values = packed.values.data();
  p.w.rows = a.w.rows;
  p.w.cols = a.w.cols;
  p.w.nnz = a.w.nnz;
  p.bias = a.bias;
  p.y = a.y;
  p.m = a.m;
  p.activation = a.activation;
  p.threads = a.threads;
  spmm_panels_f32(p);
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

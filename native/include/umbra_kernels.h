// Kernel entry points the binding calls. Every entry point validates its arguments up front
// and throws std::invalid_argument (bad shapes or options) or std::domain_error (NaN weights);
// none aborts the process. All calls block the calling thread until done; `threads` > 1 also
// borrows helpers from one process-wide pool (see native/src/cpu/thread_pool.h).
// All tensors are fp32, row-major, caller-owned; kernels never allocate outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace umbra {

enum class Activation : int { none = 0, relu = 1, sigmoid = 2, tanh = 3, gelu = 4 };
// Parses "none" | "relu" | "sigmoid" | "tanh" | "gelu"; throws std::invalid_argument otherwise.
Activation activation_from_name(const std::string& name);

// Instruction-set variants. The best one the CPU supports is picked once at load; tests may
// force a lower one (isa_force returns false when the CPU or the build lacks it).
enum class Isa : int { portable = 0, avx2 = 1, avx512 = 2 };
Isa isa_active();
bool isa_force(Isa isa);
const char* isa_name(Isa isa);

// ---- GEMM: Y[M,N] = act(X[M,K] . W + bias) -------------------------------------------------
// W layouts: kRowsK = [K,N] (ONNX MatMul / Gemm transB=0), kRowsN = [N,K] (Gemm transB=1,
// PyTorch Linear), kPacked = the output of gemm_pack_f32 (pack once at load, reuse per call).
enum class WeightLayout : int { k_by_n = 0, n_by_k = 1, packed = 2 };

struct GemmArgs {
  const float* x = nullptr;  // [M,K]
  const float* w = nullptr;  // see layout
  const float* bias = nullptr;  // [N] or null
  float* y = nullptr;  // [M,N]
  size_t m = 0, k = 0, n = 0;
  WeightLayout layout = WeightLayout::k_by_n;
  Activation activation = Activation::none;
  int threads = 1;
};
void gemm_f32(const GemmArgs& args);
// Floats needed by gemm_pack_f32's output for a K x N weight.
size_t gemm_packed_size(size_t k, size_t n);
// Repacks W (layout k_by_n or n_by_k) into the panel format gemm_f32 reads fastest.
void gemm_pack_f32(const float* w, size_t k, size_t n, WeightLayout layout, float* packed, int threads);

// ---- Sparse: Y[M,N] = act(X[M,K] . Wᵀ + bias), W [N,K] in CSR over output rows ----------
struct CsrMatrix {
  const int32_t* row_ptr = nullptr;  // [rows+1], non-decreasing, row_ptr[0] == 0
  const int32_t* col_idx = nullptr;  // [nnz], each in [0, cols)
  const float* values = nullptr;  // [nnz]
  size_t rows = 0, cols = 0, nnz = 0;
};
struct SpmmArgs {
  const float* x = nullptr;  // [M,K]
  CsrMatrix w;  // rows = N, cols = K
  const float* bias = nullptr;  // [N] or null
  float* y = nullptr;  // [M,N]
  size_t m = 0;
  Activation activation = Activation::none;
  int threads = 1;
};
// Throws std::invalid_argument when row_ptr/col_idx are inconsistent (checked in O(rows+nnz)).
// Packs W into panels on every call and runs spmm_panels_f32: pack once (sparse_pack_f32)
// where W is reused.
void spmm_csr_f32(const SpmmArgs& args);
struct CsrOwned {
  std::vector<int32_t> row_ptr, col_idx;
  std::vector<float> values;
};
// Keeps every non-zero (exact zeros are dropped; NaN is kept and so propagates).
CsrOwned csr_from_dense_f32(const float* w, size_t rows, size_t cols);

// ---- Sparse panels: the CSR matrix cut into column panels of kSparsePanel inputs ----------
// What spmm reads fastest: panel q holds columns [512q, 512q+512) of every row, so the kernel
// streams the batch's activations for one panel (at most 128 KiB) from cache for all rows, and
// a column needs only a 16-bit index within its panel. Entries are stored panel by panel, row
// by row: panel_ptr[q * (rows + 1) + r] is where row r of panel q starts; each panel's last
// pointer is the next panel's first. Build once at load (sparse_pack_f32), use per call.
constexpr size_t kSparsePanel = 512;
struct SparsePanels {
  const int32_t* panel_ptr = nullptr;  // [panels * (rows + 1)]
  const uint16_t* col_idx = nullptr;  // [nnz], column within the panel (< kSparsePanel)
  const float* values = nullptr;  // [nnz]
  size_t rows = 0, cols = 0, nnz = 0;
  size_t panels() const { return (cols + kSparsePanel - 1) / kSparsePanel; }
};
struct SparsePanelsOwned {
  std::vector<int32_t> panel_ptr;
  std::vector<uint16_t> col_idx;
  std::vector<float> values;
};
// Cuts a CSR matrix into panels (order within a row is kept). Throws std::invalid_argument on
// an inconsistent CSR matrix (checked in O(rows + nnz)).
SparsePanelsOwned sparse_pack_f32(const CsrMatrix& w);
// The kernel works on activations transposed to "lanes": Xt [panels * kSparsePanel, L] and
// Yt [N, L], one batch row per lane, L = spmm_lanes(M). A caller that chains sparse layers can
// hand Yt of one layer to the next as its Xt and skip both transposes in between. Lanes past M
// hold values that belong to no row (never read back into a row); rows of Xt past K are never
// read for a valid column index.
size_t spmm_lanes(size_t m);
struct SpmmPanelsArgs {
  const float* x = nullptr;  // [M,K] row-major, or Xt [panels * kSparsePanel, x_lanes] when x_lanes != 0
  SparsePanels w;  // rows = N, cols = K
  const float* bias = nullptr;  // [N] or null
  float* y = nullptr;  // [M,N] row-major, or Yt [N, y_lanes] when y_lanes != 0
  size_t m = 0;
  Activation activation = Activation::none;
  int threads = 1;
  size_t x_lanes = 0, y_lanes = 0;  // 0 (row-major) or spmm_lanes(m)
};
// Y[M,N] = act(X . Wᵀ + bias). Checks panel_ptr in O(panels * rows); column indices are not
// checked per call but are masked to their panel, so a corrupt index can give a wrong result,
// never a read outside X. Throws std::invalid_argument on inconsistent pointers or lanes.
void spmm_panels_f32(const SpmmPanelsArgs& args);

// ---- Elementwise ---------------------------------------------------------------------------
// data[r,c] = act(data[r,c] + bias[c]) in place; bias may be null.
void bias_activation_f32(float* data, size_t rows, size_t cols, const float* bias, Activation act);
// Numerically stable softmax over each row, in place.
void softmax_f32(float* data, size_t rows, size_t cols);

// ---- Monitoring statistics (native/src/cpu/tensor_stats.cc) --------------------------------
struct TensorStatsF32 {
  double min;   // of the finite values; +inf when there are none
  double max;   // of the finite values; -inf when there are none
  double sum;   // of the finite values, in eight interleaved lanes added in order
  size_t non_finite;
};
// Min, max and sum of the finite values of v[0..n) and the count of the others. Blocking.
TensorStatsF32 tensor_stats_f32(const float* v, size_t n);
// Whether every value of v[0..n) is finite (no NaN, no infinity). Blocking.
bool all_finite_f32(const float* v, size_t n);
// out[r] = the first column of row r's largest value; NaN never wins, and a row that starts
// with NaN gives 0 (the result of a scan that keeps the first value no later one exceeds).
void argmax_rows_f32(const float* data, size_t rows, size_t cols, double* out);

// ---- Drift counting (native/src/cpu/drift_count.cc) ------------------------------------------
// One watched column per kDriftColumnStride doubles of `table`: low, high, scale (a grid's),
// cellsAt (>= 0: a grid whose cells start there; kDriftCategory; kDriftHalving), cells (the grid's
// cell count), pointsAt, length (edges or category values), binOffset (its bins in the segment).
constexpr size_t kDriftColumnStride = 8;
constexpr double kDriftCategory = -1;
constexpr double kDriftHalving = -2;
// The most edges a value walks past from its grid cell's first candidate (MAX_WALK in drift.ts).
constexpr size_t kDriftMaxWalk = 3;
struct DriftColumns {
  const double* table;
  size_t columns;
  const int32_t* cells;
  size_t cells_length;
  const double* points;
  size_t points_length;
  size_t segment_length;
};
// nullptr when table columns [first_column, first_column + columns) index only inside the arrays;
// else what is wrong. drift_count_f32 trusts a checked table.
const char* drift_columns_check(const DriftColumns& t, size_t first_column, size_t columns);
// Rows first, first + step, ... of data (n rows of `width`): value k of a row counts one in the
// bin of table column first_column + k (k < columns): the first edge >= the value, past the last
// (and NaN) the last bin; a category's position, an unknown one the last bin. Blocking.
void drift_count_f32(const float* data, size_t n, size_t width, size_t first_column, size_t columns, size_t first, size_t step,
                     const DriftColumns& t, uint32_t* segment);

// ---- Magnitude pruning (native/src/prune) --------------------------------------------------
struct WeightArray {
  float* data = nullptr;
  size_t size = 0;
  std::string name;  // used in error messages
};
// What mask_apply_f32 zeroes in one array: every |w| whose bit pattern is below threshold_key,
// then the first `ties` (in index order) whose bit pattern equals threshold_key.
struct LayerCut {
  uint32_t threshold_key = 0;  // bit pattern of |w| (sign cleared); 0x80000000 = above all
  uint64_t ties = 0;
  uint64_t pruned = 0;  // total zeroed in this array (for reporting)
};
struct SelectOptions {
  double sparsity = 0;  // fraction to prune; pruned count = round-half-up(sparsity * total)
  bool per_layer = false;  // false: one global threshold across all arrays
  std::vector<double> min_sparsity, max_sparsity;  // optional per-array clamps (global mode)
  int threads = 1;
};
// Exact magnitude selection by radix histogram on the float bit patterns; ties are broken by
// global index order (array order, then index), so the pruned count is exact. Reads only.
// Throws std::domain_error naming the array and index of the first NaN seen.
std::vector<LayerCut> threshold_select_f32(const std::vector<WeightArray>& arrays, const SelectOptions& options);
// Zeroes what threshold_select_f32 chose, in place. Returns the number zeroed.
uint64_t mask_apply_f32(const std::vector<WeightArray>& arrays, const std::vector<LayerCut>& cuts, int threads);
// N:M along the reduction (input) axis: in every group of m consecutive weights along K keep the
// n largest |w| (ties keep the lower index). `k_contiguous`: W is [N,K] (groups run along a row);
// otherwise W is [K,N] (groups run down a column). A trailing partial group keeps min(n, size).
// Returns the number zeroed. Throws on NaN or n > m or m == 0.
uint64_t nm_prune_f32(float* w, size_t rows, size_t cols, size_t n, size_t m, bool k_contiguous, const std::string& name);
enum class NormKind : int { l1 = 1, l2 = 2 };
// Structured: zeroes round-half-up(sparsity * outputs) whole output units with the smallest
// norm (ties: lower index first). `k_contiguous` as above (outputs are rows of [N,K], columns
// of [K,N]). Returns the pruned output indices, ascending.
std::vector<int32_t> rows_prune_f32(float* w, size_t rows, size_t cols, double sparsity, NormKind norm,
                                    bool k_contiguous, const std::string& name);

}  // namespace umbra

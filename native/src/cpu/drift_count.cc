// Drift counting for wide FP32 tensors (src/monitor/drift.ts): every sampled value of every
// watched column lands in its profile bin, on the serving thread after the answer. The bins and
// the ways of finding one (a grid, halving, categories) are drift.ts's; here the loop runs
// without JavaScript's per-element checks, so more of the table loads that miss the cache are in
// flight at once: on a 2,048-wide model a sampled value cost about 26 ns in JavaScript.
#include <cstddef>
#include <cstdint>

#include "umbra_kernels.h"

namespace umbra {

namespace {

inline size_t to_index(double v) { return static_cast<size_t>(v); }

// The first edge i of points[0..length) with x <= points[i], or length (also for NaN), found by
// halving without branching on x (live values land in random bins).
inline size_t halve(const double* points, size_t length, double x) {
  if (length == 0 || !(x <= points[length - 1])) return length;
  size_t lo = 0, n = length;
  while (n > 1) {
    const size_t half = n >> 1;
    lo += half * static_cast<size_t>(x > points[lo + half - 1]);
    n -= half;
  }
  return lo;
}

}  // namespace

const char* drift_columns_check(const DriftColumns& t, size_t first_column, size_t columns) {
  if (first_column + columns > t.columns) return "columns past the table";
  for (size_t col = first_column; col < first_column + columns; ++col) {
    const double* c = t.table + col * kDriftColumnStride;
    const double cells_at = c[3], cells = c[4], points_at = c[5], length = c[6], bin_offset = c[7];
    if (!(points_at >= 0 && length >= 0 && points_at + length <= static_cast<double>(t.points_length))) return "a column's points past the points";
    if (!(bin_offset >= 0 && bin_offset + length + 1 <= static_cast<double>(t.segment_length))) return "a column's bins past the segment";
    if (cells_at >= 0 && !(cells >= 1 && length >= 1 && cells_at + cells <= static_cast<double>(t.cells_length))) return "a column's grid past the cells";
    if (cells_at < 0 && cells_at != kDriftCategory && cells_at != kDriftHalving) return "a column of no known kind";
  }
  return nullptr;
}

void drift_count_f32(const float* data, size_t n, size_t width, size_t first_column, size_t columns, size_t first, size_t step,
                     const DriftColumns& t, uint32_t* segment) {
  if (step == 0) step = 1;
  for (size_t r = first; r < n; r += step) {
    const float* row = data + r * width;
    const double* c = t.table + first_column * kDriftColumnStride;
    for (size_t k = 0; k < columns; ++k, c += kDriftColumnStride) {
      const double x = row[k];
      const size_t length = to_index(c[6]);
      const double* points = t.points + to_index(c[5]);
      size_t bin;
      if (c[3] >= 0) {
        const double lo = c[0];
        if (x <= lo) {
          bin = 0;
        } else if (!(x <= c[1])) {
          bin = length;  // also NaN
        } else {
          size_t g = to_index((x - lo) * c[2]);
          const size_t cells = to_index(c[4]);
          if (g >= cells) g = cells - 1;
          bin = static_cast<uint32_t>(t.cells[to_index(c[3]) + g]);
          if (bin >= length) bin = length - 1;  // x <= high, the last edge: bin < length
          // drift.ts builds grids whose walks take at most kDriftMaxWalk steps from a cell's
          // start: added without branching (live values land in random bins), each read kept
          // inside the column (the last edge is >= x, so a clamped read adds nothing).
          const size_t last = length - 1;
          size_t walk = 0;
          for (size_t j = 0; j < kDriftMaxWalk; ++j) walk += static_cast<size_t>(x > points[bin + j < last ? bin + j : last]);
          bin += walk;
          while (bin < length && x > points[bin]) ++bin;  // a longer walk: never taken for drift.ts's grids
        }
      } else if (c[3] == kDriftCategory) {
        bin = 0;
        while (bin < length && points[bin] != x) ++bin;
      } else {
        bin = halve(points, length, x);
      }
      ++segment[to_index(c[7]) + bin];
    }
  }
}

}  // namespace umbra

#include "rows_prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "magnitude.h"

namespace umbra {

std::vector<int32_t> rows_prune_f32(float* w, size_t rows, size_t cols, double sparsity, NormKind norm, bool k_contiguous,
                                    const std::string& name) {
  if (!(sparsity >= 0.0 && sparsity <= 1.0)) throw std::invalid_argument("rows_prune_f32: sparsity must be in [0, 1]");
  if (norm != NormKind::l1 && norm != NormKind::l2) throw std::invalid_argument("rows_prune_f32: norm must be l1 or l2");
  if (rows * cols != 0 && w == nullptr) throw std::invalid_argument("rows_prune_f32: \"" + name + "\" has no data");
  const size_t outputs = k_contiguous ? rows : cols;
  if (outputs >= (size_t(1) << 31)) throw std::invalid_argument("rows_prune_f32: too many outputs");
  std::vector<double> score(outputs, 0.0);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      const float v = w[r * cols + c];
      if (magnitude_key(v) > kInfinityKey) throw_nan(name, r * cols + c);
      // L2 ranks by the sum of squares (same order as the norm, no sqrt needed).
      score[k_contiguous ? r : c] += norm == NormKind::l1 ? std::fabs(static_cast<double>(v)) : static_cast<double>(v) * v;
    }
  }
  std::vector<int32_t> order(outputs);
  std::iota(order.begin(), order.end(), 0);
  const size_t count = static_cast<size_t>(prune_count(sparsity, outputs));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(), [&](int32_t a, int32_t b) {
    return score[a] < score[b] || (score[a] == score[b] && a < b);
  });
  order.resize(count);
  std::sort(order.begin(), order.end());
  for (int32_t o : order) {
    if (k_contiguous) std::fill(w + static_cast<size_t>(o) * cols, w + static_cast<size_t>(o + 1) * cols, 0.0f);
    else for (size_t r = 0; r < rows; ++r) w[r * cols + static_cast<size_t>(o)] = 0.0f;
  }
  return order;
}

}  // namespace umbra

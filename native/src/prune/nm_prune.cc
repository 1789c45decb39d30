#include "nm_prune.h"

#include <stdexcept>
#include <vector>

#include "magnitude.h"

namespace umbra {

uint64_t nm_prune_f32(float* w, size_t rows, size_t cols, size_t n, size_t m, bool k_contiguous, const std::string& name) {
  if (m == 0 || n > m) throw std::invalid_argument("nm_prune_f32: expected 0 <= n <= m and m >= 1 for \"" + name + "\"");
  if (m > 1024) throw std::invalid_argument("nm_prune_f32: m must be <= 1024");
  if (rows * cols != 0 && w == nullptr) throw std::invalid_argument("nm_prune_f32: \"" + name + "\" has no data");
  for (size_t i = 0; i < rows * cols; ++i)
    if (magnitude_key(w[i]) > kInfinityKey) throw_nan(name, i);
  // Groups run along K: a row of [N,K] (stride 1), or a column of [K,N] (stride N).
  const size_t lines = k_contiguous ? rows : cols;
  const size_t length = k_contiguous ? cols : rows;
  const size_t step = k_contiguous ? 1 : cols;
  std::vector<uint32_t> keys(m);
  uint64_t zeroed = 0;
  for (size_t line = 0; line < lines; ++line) {
    float* base = k_contiguous ? w + line * cols : w + line;
    for (size_t g0 = 0; g0 < length; g0 += m) {
      const size_t size = std::min(m, length - g0);
      if (size <= n) continue;
      for (size_t i = 0; i < size; ++i) keys[i] = magnitude_key(base[(g0 + i) * step]);
      // Rank by (larger magnitude, then lower index) first; keep ranks below n.
      for (size_t i = 0; i < size; ++i) {
        size_t rank = 0;
        for (size_t j = 0; j < size; ++j) rank += keys[j] > keys[i] || (keys[j] == keys[i] && j < i);
        if (rank >= n) {
          base[(g0 + i) * step] = 0.0f;
          ++zeroed;
        }
      }
    }
  }
  return zeroed;
}

}  // namespace umbra

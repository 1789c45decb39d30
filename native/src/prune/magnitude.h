// Magnitudes as ordered integer keys: clearing the sign bit of an fp32 leaves a uint32 whose
// order equals the order of |w| for every non-NaN value (keys above 0x7f800000 are NaN).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace umbra {

constexpr uint32_t kInfinityKey = 0x7f800000u;
constexpr uint32_t kAboveAllKeys = 0x80000000u;

inline uint32_t magnitude_key(float w) {
  uint32_t bits;
  std::memcpy(&bits, &w, sizeof(bits));
  return bits & 0x7fffffffu;
}

[[noreturn]] inline void throw_nan(const std::string& name, size_t index) {
  throw std::domain_error("weight array \"" + name + "\" has NaN at index " + std::to_string(index) +
                          "; pruning by magnitude needs finite weights");
}

// Pruned count for a fraction of `total`: round half up, computed in double.
inline uint64_t prune_count(double sparsity, uint64_t total) {
  const double exact = sparsity * static_cast<double>(total);
  uint64_t count = static_cast<uint64_t>(std::floor(exact + 0.5));
  return count > total ? total : count;
}

}  // namespace umbra

#include "magnitude_scan.h"

#include <algorithm>

#include "../cpu/isa.h"
#include "magnitude.h"

namespace umbra {

// Blocks of 64: a counting loop the compiler vectorises, then (only when the block holds an
// inside key, about half the blocks at a 1% window) a branch-free append over the same 64
// keys, still in L1. The former single loop with a push_back per hit ran ~4 cycles a weight.
void magnitude_scan_portable(const float* data, size_t size, uint32_t lo, uint32_t hi, WindowCounts& counts,
                             std::vector<uint32_t>& inside) {
  constexpr size_t kBlock = 64;
  const uint32_t span = hi - lo;
  uint64_t below = 0, at_lo = 0;
  uint32_t max_key = 0;
  uint32_t hits[kBlock];
  for (size_t b = 0; b < size; b += kBlock) {
    const size_t n = std::min(kBlock, size - b);
    const float* block = data + b;
    uint32_t lt = 0, eq = 0, in = 0, mx = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t key = magnitude_key(block[i]);
      mx = std::max(mx, key);
      lt += key < lo;
      eq += key == lo;
      in += key - lo - 1 < span;  // lo < key <= hi
    }
    below += lt;
    at_lo += eq;
    max_key = std::max(max_key, mx);
    if (in == 0) continue;
    uint32_t count = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t key = magnitude_key(block[i]);
      hits[count] = key;
      count += key - lo - 1 < span;
    }
    inside.insert(inside.end(), hits, hits + count);
  }
  counts.below += below;
  counts.at_lo += at_lo;
  counts.max_key = std::max(counts.max_key, max_key);
}

MagnitudeScanFn magnitude_scan_variant() {
#if defined(UMBRA_HAVE_AVX512)
  static const IsaTable<MagnitudeScanFn> table{magnitude_scan_portable, nullptr, magnitude_scan_avx512};
#else
  static const IsaTable<MagnitudeScanFn> table{magnitude_scan_portable, nullptr, nullptr};
#endif
  return table.pick();
}

}  // namespace umbra

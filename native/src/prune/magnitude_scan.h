// The one read pass of sampled-window selection, per ISA: over a run of weights, count the
// magnitude keys below the window's lower end and equal to it, keep the keys inside the window
// (lo, hi], and track the largest key (anything above +Inf's key is NaN).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace umbra {

struct WindowCounts {
  uint64_t below = 0, at_lo = 0;
  uint32_t max_key = 0;
};

// Appends the inside keys to `inside` in index order. Requires lo < hi.
using MagnitudeScanFn = void (*)(const float* data, size_t size, uint32_t lo, uint32_t hi, WindowCounts& counts,
                                 std::vector<uint32_t>& inside);

void magnitude_scan_portable(const float* data, size_t size, uint32_t lo, uint32_t hi, WindowCounts& counts,
                             std::vector<uint32_t>& inside);
#if defined(UMBRA_HAVE_AVX512)
void magnitude_scan_avx512(const float* data, size_t size, uint32_t lo, uint32_t hi, WindowCounts& counts,
                           std::vector<uint32_t>& inside);
#endif

// The variant for the active ISA (AVX2 uses the portable one, which the compiler vectorises).
MagnitudeScanFn magnitude_scan_variant();

}  // namespace umbra

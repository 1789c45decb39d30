// AVX-512 window scan for magnitude selection: 64 keys per step as four compares into mask
// registers; counts by popcount, inside keys appended by compress-store.
#include <immintrin.h>

#include <algorithm>

#include "../../../prune/magnitude_scan.h"

namespace umbra {

void magnitude_scan_avx512(const float* data, size_t size, uint32_t lo, uint32_t hi, WindowCounts& counts,
                           std::vector<uint32_t>& inside) {
  const __m512i sign_off = _mm512_set1_epi32(0x7fffffff);
  const __m512i vlo = _mm512_set1_epi32(static_cast<int>(lo));
  const __m512i vlo1 = _mm512_set1_epi32(static_cast<int>(lo + 1));
  const __m512i vspan = _mm512_set1_epi32(static_cast<int>(hi - lo - 1));  // key - lo - 1 <= span - 1
  __m512i vmax = _mm512_setzero_si512();
  uint64_t below = 0, at_lo = 0;
  size_t i = 0;
  auto step = [&](__m512i key, __mmask16 valid) {
    vmax = _mm512_mask_max_epu32(vmax, valid, vmax, key);
    below += static_cast<uint64_t>(__builtin_popcount(_mm512_mask_cmplt_epu32_mask(valid, key, vlo)));
    at_lo += static_cast<uint64_t>(__builtin_popcount(_mm512_mask_cmpeq_epu32_mask(valid, key, vlo)));
    return _mm512_mask_cmple_epu32_mask(valid, _mm512_sub_epi32(key, vlo1), vspan);
  };
  auto append = [&](__m512i key, __mmask16 hit) {
    if (hit == 0) return;
    const size_t at = inside.size();
    inside.resize(at + static_cast<size_t>(__builtin_popcount(hit)));
    _mm512_mask_compressstoreu_epi32(inside.data() + at, hit, key);
  };
  for (; i + 64 <= size; i += 64) {
    const __m512i k0 = _mm512_and_si512(_mm512_loadu_si512(data + i), sign_off);
    const __m512i k1 = _mm512_and_si512(_mm512_loadu_si512(data + i + 16), sign_off);
    const __m512i k2 = _mm512_and_si512(_mm512_loadu_si512(data + i + 32), sign_off);
    const __m512i k3 = _mm512_and_si512(_mm512_loadu_si512(data + i + 48), sign_off);
    const __mmask16 h0 = step(k0, 0xFFFF), h1 = step(k1, 0xFFFF), h2 = step(k2, 0xFFFF), h3 = step(k3, 0xFFFF);
    if ((h0 | h1 | h2 | h3) == 0) continue;
    append(k0, h0);
    append(k1, h1);
    append(k2, h2);
    append(k3, h3);
  }
  for (; i < size; i += 16) {
    const size_t left = size - i;
    const __mmask16 valid = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
    const __m512i key = _mm512_and_si512(_mm512_maskz_loadu_epi32(valid, data + i), sign_off);
    append(key, step(key, valid));
  }
  counts.below += below;
  counts.at_lo += at_lo;
  // Lanes through memory: GCC 12's _mm512_reduce_max_epu32 warns about its own temporaries.
  alignas(64) uint32_t lanes[16];
  _mm512_store_si512(lanes, vmax);
  counts.max_key = std::max(counts.max_key, *std::max_element(lanes, lanes + 16));
}

}  // namespace umbra

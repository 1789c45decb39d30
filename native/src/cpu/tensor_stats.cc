// Statistics over a whole output tensor for monitoring (the prediction log's summary, feedback's
// predicted class), on the serving thread after every answer. Eight lanes in SSE2 (every x86-64
// CPU has it), a plain loop elsewhere: a 64 x 4096 answer takes tens of microseconds here against
// ~0.3 ms per pass in JavaScript. The results do not depend on which loop ran.
#include <cmath>
#include <cstddef>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "umbra_kernels.h"

namespace umbra {

namespace {

constexpr size_t kLanes = 8;

// Lane j holds the values at j, j + 8, j + 16, ... (the tail included), summed in that order;
// the lanes are added 0..7. src/monitor/tensor-summary.ts defines the same sum for JavaScript.
TensorStatsF32 finite_stats(const float* v, size_t n) {
  double sum[kLanes] = {};
  double min = INFINITY, max = -INFINITY;
  size_t non_finite = 0;
  for (size_t i = 0; i < n; ++i) {
    const float x = v[i];
    if (!std::isfinite(x)) {
      ++non_finite;
      continue;
    }
    sum[i % kLanes] += x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  double total = 0;
  for (size_t j = 0; j < kLanes; ++j) total += sum[j];
  return {min, max, total, non_finite};
}

}  // namespace

TensorStatsF32 tensor_stats_f32(const float* v, size_t n) {
  // A pass without branches first: a NaN or infinity anywhere makes the sum non-finite (floats
  // summed as doubles cannot overflow), and only then does the exact pass that skips them run.
  float lo[kLanes], hi[kLanes];
  double sum[kLanes] = {};
  for (size_t j = 0; j < kLanes; ++j) {
    lo[j] = INFINITY;
    hi[j] = -INFINITY;
  }
  const size_t whole = n - n % kLanes;
#if defined(__SSE2__)
  // minps / maxps keep their second operand when either is NaN: `x < lo ? x : lo`, as below.
  __m128 lo0 = _mm_loadu_ps(lo), lo1 = lo0, hi0 = _mm_loadu_ps(hi), hi1 = hi0;
  __m128d s01 = _mm_setzero_pd(), s23 = s01, s45 = s01, s67 = s01;
  for (size_t i = 0; i < whole; i += kLanes) {
    const __m128 a = _mm_loadu_ps(v + i), b = _mm_loadu_ps(v + i + 4);
    lo0 = _mm_min_ps(a, lo0);
    lo1 = _mm_min_ps(b, lo1);
    hi0 = _mm_max_ps(a, hi0);
    hi1 = _mm_max_ps(b, hi1);
    s01 = _mm_add_pd(s01, _mm_cvtps_pd(a));
    s23 = _mm_add_pd(s23, _mm_cvtps_pd(_mm_movehl_ps(a, a)));
    s45 = _mm_add_pd(s45, _mm_cvtps_pd(b));
    s67 = _mm_add_pd(s67, _mm_cvtps_pd(_mm_movehl_ps(b, b)));
  }
  _mm_storeu_ps(lo, lo0);
  _mm_storeu_ps(lo + 4, lo1);
  _mm_storeu_ps(hi, hi0);
  _mm_storeu_ps(hi + 4, hi1);
  _mm_storeu_pd(sum, s01);
  _mm_storeu_pd(sum + 2, s23);
  _mm_storeu_pd(sum + 4, s45);
  _mm_storeu_pd(sum + 6, s67);
#else
  for (size_t i = 0; i < whole; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      const float x = v[i + j];
      lo[j] = x < lo[j] ? x : lo[j];
      hi[j] = x > hi[j] ? x : hi[j];
      sum[j] += x;
    }
  }
#endif
  for (size_t i = whole; i < n; ++i) {
    const float x = v[i];
    const size_t j = i % kLanes;
    lo[j] = x < lo[j] ? x : lo[j];
    hi[j] = x > hi[j] ? x : hi[j];
    sum[j] += x;
  }
  double total = 0;
  float min = INFINITY, max = -INFINITY;
  for (size_t j = 0; j < kLanes; ++j) {
    total += sum[j];
    min = lo[j] < min ? lo[j] : min;
    max = hi[j] > max ? hi[j] : max;
  }
  if (!std::isfinite(total)) return finite_stats(v, n);
  return {min, max, total, 0};
}

bool all_finite_f32(const float* v, size_t n) {
  // A float is NaN or an infinity exactly when its exponent bits are all ones. Four independent
  // ORs of that test per 16 values, and one look at them per 256: no branch per value, and the
  // memory bandwidth, not a chain of compares, sets the pace (the NaN gate reads every value of
  // every FP32 input before it is admitted).
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i exponent = _mm_set1_epi32(0x7f800000);
  constexpr size_t kBlock = 256;
  while (i + kBlock <= n) {
    __m128i bad0 = _mm_setzero_si128(), bad1 = bad0, bad2 = bad0, bad3 = bad0;
    for (const size_t end = i + kBlock; i < end; i += 16) {
      const __m128i a = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)), exponent);
      const __m128i b = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i + 4)), exponent);
      const __m128i c = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i + 8)), exponent);
      const __m128i d = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i + 12)), exponent);
      bad0 = _mm_or_si128(bad0, _mm_cmpeq_epi32(a, exponent));
      bad1 = _mm_or_si128(bad1, _mm_cmpeq_epi32(b, exponent));
      bad2 = _mm_or_si128(bad2, _mm_cmpeq_epi32(c, exponent));
      bad3 = _mm_or_si128(bad3, _mm_cmpeq_epi32(d, exponent));
    }
    const __m128i bad = _mm_or_si128(_mm_or_si128(bad0, bad1), _mm_or_si128(bad2, bad3));
    if (_mm_movemask_epi8(bad) != 0) return false;
  }
#endif
  for (; i < n; ++i) {
    if (!std::isfinite(v[i])) return false;
  }
  return true;
}

void argmax_rows_f32(const float* data, size_t rows, size_t cols, double* out) {
  // Eight running maxima of four (maxps has a latency of several cycles: two chains, as before,
  // left most of each cycle idle on a 2,048-wide row), then the first column that holds the
  // largest, four columns a compare.
  constexpr size_t kWide = 32;
  for (size_t r = 0; r < rows; ++r) {
    const float* row = data + r * cols;
    // A NaN never compares greater, so a row that starts with one keeps column 0, and a NaN
    // later in a row is passed over: the row's largest other value wins, at its first column.
    if (cols == 0 || std::isnan(row[0])) {
      out[r] = 0;
      continue;
    }
    float best = row[0];
    size_t c = 0;
#if defined(__SSE2__)
    // maxps(x, top) is `x > top ? x : top`: a NaN x leaves top as it was.
    __m128 top0 = _mm_set1_ps(row[0]);
    if (cols >= kWide) {
      // A class score vector of ten columns never gets here: setting up eight chains costs more
      // than it wins on a short row.
      __m128 top[8];
      for (auto& v : top) v = top0;
      for (; c + kWide <= cols; c += kWide) {
        for (size_t j = 0; j < 8; ++j) top[j] = _mm_max_ps(_mm_loadu_ps(row + c + 4 * j), top[j]);
      }
      for (size_t j = 0; j < 8; ++j) top0 = _mm_max_ps(top[j], top0);
    }
    for (; c + 4 <= cols; c += 4) top0 = _mm_max_ps(_mm_loadu_ps(row + c), top0);
    float lanes[4];
    _mm_storeu_ps(lanes, top0);
    for (const float v : lanes) best = v > best ? v : best;
#endif
    for (; c < cols; ++c) best = row[c] > best ? row[c] : best;
    // The first column holding it (equal zeros of either sign count as the same value, as `>` does).
    size_t at = 0;
#if defined(__SSE2__)
    const __m128 want = _mm_set1_ps(best);
    for (; at + 4 <= cols; at += 4) {
      const int hit = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(row + at), want));
      if (hit != 0) {
        at += static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(hit)));
        break;
      }
    }
#endif
    while (!(row[at] == best)) ++at;
    out[r] = static_cast<double>(at);
  }
}

}  // namespace umbra

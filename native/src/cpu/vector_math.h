// Elementwise math written once over GCC/Clang vector types of W floats and compiled per ISA
// (portable: W=4, arch/avx2: W=8, arch/avx512: W=16); the compiler maps the operators onto
// the instruction set each translation unit is built for. Accuracy: exp ~2 ulp; tanh and
// sigmoid within 2e-7 absolute / 1e-6 relative of the libm reference; gelu within 2e-6 relative.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>

#include "umbra_kernels.h"

namespace umbra {
namespace vec {

template <int W>
struct V {
  typedef float f __attribute__((vector_size(W * 4)));
  typedef int i __attribute__((vector_size(W * 4)));
};

template <int W>
inline typename V<W>::f load(const float* p) {
  typename V<W>::f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <int W>
inline void store(float* p, typename V<W>::f v) {
  std::memcpy(p, &v, sizeof(v));
}
// s - (+0) is s for every s (-0 included), so the compiler emits a bare broadcast; the former
// {} + s is not an identity for -0 and cost a scalar add before every broadcast.
template <int W>
inline typename V<W>::f splat(float s) {
  const typename V<W>::f zero = {};
  return s - zero;
}
template <int W>
inline typename V<W>::f vmax(typename V<W>::f a, typename V<W>::f b) {
  return a > b ? a : b;
}
template <int W>
inline typename V<W>::f vmin(typename V<W>::f a, typename V<W>::f b) {
  return a < b ? a : b;
}
template <int W>
inline typename V<W>::f vabs(typename V<W>::f x) {
  typename V<W>::i bits;
  std::memcpy(&bits, &x, sizeof(x));
  bits &= 0x7fffffff;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

// e^x by range reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for e^r.
template <int W>
inline typename V<W>::f exp(typename V<W>::f x) {
  using F = typename V<W>::f;
  using I = typename V<W>::i;
  const F input = x;
  x = vmin<W>(vmax<W>(x, splat<W>(-87.3f)), splat<W>(88.0f));
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  F t = x * 1.44269504088896341f + shifter;
  F n = t - shifter;
  F r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  F p = splat<W>(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  I ti, si;
  std::memcpy(&ti, &t, sizeof(t));
  const F s = splat<W>(shifter);
  std::memcpy(&si, &s, sizeof(s));
  I e = ((ti - si) + 127) << 23;
  F scale;
  std::memcpy(&scale, &e, sizeof(e));
  F out = p * scale;
  // Saturate like libm: 0 below the normal range, +Inf above, NaN stays NaN.
  out = input < -87.3f ? splat<W>(0.0f) : out;
  out = input > 88.72f ? splat<W>(std::numeric_limits<float>::infinity()) : out;
  return input != input ? input : out;
}

template <int W>
inline typename V<W>::f sigmoid(typename V<W>::f x) {
  return 1.0f / (1.0f + exp<W>(-x));
}

template <int W>
inline typename V<W>::f tanh(typename V<W>::f x) {
  using F = typename V<W>::f;
  const F a = vabs<W>(x);
  // Near zero the exp form cancels; the odd Taylor series is exact to ~4e-7 below 0.4.
  const F x2 = x * x;
  F poly = splat<W>(62.0f / 2835);
  poly = poly * x2 - 17.0f / 315;
  poly = poly * x2 + 2.0f / 15;
  poly = poly * x2 - 1.0f / 3;
  poly = poly * x2 * x + x;
  const F e = exp<W>(-2.0f * a);
  F big = (1.0f - e) / (1.0f + e);
  big = x < 0.0f ? -big : big;
  return a < 0.4f ? poly : big;
}

// Exact (erf) GELU: 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2). erfc(z) for z >= 0 is
// the Chebyshev-fitted form t exp(-z^2 + P(t)), t = 1/(1 + z/2), published in Numerical Recipes
// (erfcc) with a relative error under 1.2e-7 everywhere, so the negative tail, where the output
// is a small multiple of erfc, keeps its relative accuracy (an absolute-error fit such as
// Abramowitz & Stegun 7.1.26 was off by 6e-4 relative there).
template <int W>
inline typename V<W>::f gelu(typename V<W>::f x) {
  using F = typename V<W>::f;
  const F z = vabs<W>(x) * 0.70710678118654752f;
  const F t = 1.0f / (1.0f + 0.5f * z);
  F p = splat<W>(0.17087277f);
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const F erfc = t * exp<W>(p - z * z);
  return x >= 0.0f ? 0.5f * x * (2.0f - erfc) : 0.5f * x * erfc;
}

template <int W>
inline typename V<W>::f activate(typename V<W>::f x, Activation act) {
  switch (act) {
    case Activation::relu: return x < 0.0f ? splat<W>(0.0f) : x;  // NaN passes through
    case Activation::sigmoid: return sigmoid<W>(x);
    case Activation::tanh: return tanh<W>(x);
    case Activation::gelu: return gelu<W>(x);
    default: return x;
  }
}

// In place over one row: act(row + bias). Tails go through a padded stack copy so every lane
// uses the same formula (results do not depend on where a value sits in the row).
template <int W>
inline void bias_activation_row(float* row, size_t cols, const float* bias, Activation act) {
  using F = typename V<W>::f;
  size_t c = 0;
  for (; c + W <= cols; c += W) {
    F v = load<W>(row + c);
    if (bias) v += load<W>(bias + c);
    store<W>(row + c, activate<W>(v, act));
  }
  if (c < cols) {
    float tmp[W] = {};
    const size_t r = cols - c;
    for (size_t i = 0; i < r; ++i) tmp[i] = row[c + i] + (bias ? bias[c + i] : 0.0f);
    store<W>(tmp, activate<W>(load<W>(tmp), act));
    for (size_t i = 0; i < r; ++i) row[c + i] = tmp[i];
  }
}

template <int W>
inline void softmax_row(float* row, size_t cols) {
  using F = typename V<W>::f;
  if (cols == 0) return;
  const size_t full = cols / W * W;
  float m = -std::numeric_limits<float>::infinity();
  for (size_t c = 0; c < cols; ++c) m = row[c] > m || std::isnan(row[c]) ? row[c] : m;
  if (std::isnan(m) || std::isinf(m)) {
    // NaN anywhere, or +Inf: fall back to the scalar definition so NaN/Inf propagate as libm does.
    float sum = 0;
    for (size_t c = 0; c < cols; ++c) sum += row[c] = std::exp(row[c] - m);
    for (size_t c = 0; c < cols; ++c) row[c] /= sum;
    return;
  }
  F acc = splat<W>(0.0f);
  for (size_t c = 0; c < full; c += W) {
    F e = exp<W>(load<W>(row + c) - m);
    store<W>(row + c, e);
    acc += e;
  }
  float sum = 0;
  for (int i = 0; i < W; ++i) sum += acc[i];
  if (full < cols) {
    float tmp[W] = {};
    const size_t r = cols - full;
    for (size_t i = 0; i < r; ++i) tmp[i] = row[full + i] - m;
    store<W>(tmp, exp<W>(load<W>(tmp)));
    for (size_t i = 0; i < r; ++i) sum += row[full + i] = tmp[i];
  }
  const float inv = 1.0f / sum;
  for (size_t c = 0; c < full; c += W) store<W>(row + c, load<W>(row + c) * inv);
  for (size_t c = full; c < cols; ++c) row[c] *= inv;
}

}  // namespace vec
}  // namespace umbra

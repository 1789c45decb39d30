// Bias + activation over a strided block of rows, one variant per ISA (gemm and spmm call the
// picked variant on tiles still hot in cache; bias_activation_f32 is the public entry point).
#pragma once

#include <cstddef>

#include "isa.h"

namespace umbra {

// data[r*ld + c] = act(data[r*ld + c] + bias[c]) for r < rows, c < cols; bias may be null.
using BiasActivationFn = void (*)(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act);
void bias_activation_portable(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act);
void bias_activation_avx2(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act);
void bias_activation_avx512(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act);
BiasActivationFn bias_activation_variant();

}  // namespace umbra

// Row softmax, one variant per ISA; softmax_f32 (umbra_kernels.h) is the entry point.
#pragma once

#include <cstddef>

#include "isa.h"

namespace umbra {

using SoftmaxFn = void (*)(float* data, size_t rows, size_t cols);
void softmax_portable(float* data, size_t rows, size_t cols);
void softmax_avx2(float* data, size_t rows, size_t cols);
void softmax_avx512(float* data, size_t rows, size_t cols);

}  // namespace umbra

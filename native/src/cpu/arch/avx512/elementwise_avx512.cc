// avx512 builds of the shared elementwise templates (vector width 16).
#include "../../activation.h"
#include "../../softmax.h"
#include "../../vector_math.h"

namespace umbra {

void bias_activation_avx512(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act) {
  for (size_t r = 0; r < rows; ++r) vec::bias_activation_row<16>(data + r * ld, cols, bias, act);
}

void softmax_avx512(float* data, size_t rows, size_t cols) {
  for (size_t r = 0; r < rows; ++r) vec::softmax_row<16>(data + r * cols, cols);
}

}  // namespace umbra

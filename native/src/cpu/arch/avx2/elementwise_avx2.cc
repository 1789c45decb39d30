// avx2 builds of the shared elementwise templates (vector width 8).
#include "../../activation.h"
#include "../../softmax.h"
#include "../../vector_math.h"

namespace umbra {

void bias_activation_avx2(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act) {
  for (size_t r = 0; r < rows; ++r) vec::bias_activation_row<8>(data + r * ld, cols, bias, act);
}

void softmax_avx2(float* data, size_t rows, size_t cols) {
  for (size_t r = 0; r < rows; ++r) vec::softmax_row<8>(data + r * cols, cols);
}

}  // namespace umbra

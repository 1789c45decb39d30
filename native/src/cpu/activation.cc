#include "activation.h"

#include <stdexcept>

#include "vector_math.h"

namespace umbra {

void bias_activation_portable(float* data, size_t rows, size_t cols, size_t ld, const float* bias, Activation act) {
  for (size_t r = 0; r < rows; ++r) vec::bias_activation_row<4>(data + r * ld, cols, bias, act);
}

// Builds without an ISA's sources forward to the portable variant (never picked anyway).
#if !defined(UMBRA_HAVE_AVX2)
void bias_activation_avx2(float* d, size_t r, size_t c, size_t ld, const float* b, Activation a) {
  bias_activation_portable(d, r, c, ld, b, a);
}
#endif
#if !defined(UMBRA_HAVE_AVX512)
void bias_activation_avx512(float* d, size_t r, size_t c, size_t ld, const float* b, Activation a) {
  bias_activation_portable(d, r, c, ld, b, a);
}
#endif

BiasActivationFn bias_activation_variant() {
  static const IsaTable<BiasActivationFn> table{bias_activation_portable, bias_activation_avx2, bias_activation_avx512};
  return table.pick();
}

void bias_activation_f32(float* data, size_t rows, size_t cols, const float* bias, Activation act) {
  if (rows * cols != 0 && data == nullptr) throw std::invalid_argument("bias_activation_f32: data is null");
  if (static_cast<int>(act) < 0 || static_cast<int>(act) > 4) throw std::invalid_argument("bias_activation_f32: unknown activation");
  if (act == Activation::none && bias == nullptr) return;
  bias_activation_variant()(data, rows, cols, cols, bias, act);
}

}  // namespace umbra

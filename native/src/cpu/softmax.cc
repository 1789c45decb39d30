#include "softmax.h"

#include <stdexcept>

#include "vector_math.h"

namespace umbra {

void softmax_portable(float* data, size_t rows, size_t cols) {
  for (size_t r = 0; r < rows; ++r) vec::softmax_row<4>(data + r * cols, cols);
}

#if !defined(UMBRA_HAVE_AVX2)
void softmax_avx2(float* data, size_t rows, size_t cols) { softmax_portable(data, rows, cols); }
#endif
#if !defined(UMBRA_HAVE_AVX512)
void softmax_avx512(float* data, size_t rows, size_t cols) { softmax_portable(data, rows, cols); }
#endif

void softmax_f32(float* data, size_t rows, size_t cols) {
  if (rows * cols != 0 && data == nullptr) throw std::invalid_argument("softmax_f32: data is null");
  static const IsaTable<SoftmaxFn> table{softmax_portable, softmax_avx2, softmax_avx512};
  table.pick()(data, rows, cols);
}

}  // namespace umbra

// Memory-bound elementwise kernels on device arrays: bias + activation in place, and a plain
// 16-byte-vector copy (the bandwidth yardstick the benchmark sets against cudaMemcpy).
// Both enqueue on the stream and return; throw std::invalid_argument or CudaError.
#pragma once

#include <cstddef>

#include "device.cuh"

namespace umbra::cuda {

// data[r, c] = act(data[r, c] + bias[c]); bias may be null.
void bias_activation_f32_cuda(float* data, size_t rows, size_t cols, const float* bias, int activation, Stream& stream);
// dst[i] = src[i] for i < count; the ranges must not overlap.
void copy_f32_cuda(float* dst, const float* src, size_t count, Stream& stream);

}  // namespace umbra::cuda

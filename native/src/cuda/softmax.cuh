// Numerically stable softmax over each row of a device [rows, cols] array, in place.
// Enqueues on the stream and returns; throws std::invalid_argument or CudaError.
#pragma once

#include <cstddef>

#include "device.cuh"

namespace umbra::cuda {

void softmax_f32_cuda(float* data, size_t rows, size_t cols, Stream& stream);

}  // namespace umbra::cuda

// Zeroes what threshold_select_f32_cuda chose in DEVICE arrays, in place: keys below each
// array's threshold, then the first `ties` keys equal to it in index order. Returns the number
// zeroed. Blocks until done. Throws std::invalid_argument (cut count, stale cuts) or CudaError.
#pragma once

#include <cstdint>
#include <vector>

#include "device.cuh"
#include "umbra_kernels.h"

namespace umbra::cuda {

uint64_t mask_apply_f32_cuda(const std::vector<WeightArray>& arrays, const std::vector<LayerCut>& cuts, Stream& stream);

}  // namespace umbra::cuda

// Global (or per-array) magnitude threshold on the GPU by radix selection on the fp32 bit
// patterns with the sign cleared: three histogram passes (11, 11 and 9 bits) narrow the key down
// exactly, a fourth pass counts keys below and equal per array; nothing is sorted. The result is
// the CPU's threshold_select_f32 result bit for bit (same keys, same ties in array-then-index
// order). `arrays` hold DEVICE pointers. Blocks until done. Throws std::domain_error naming the
// first NaN, std::invalid_argument for bad options (per-array clamps are CPU-only), CudaError.
#pragma once

#include <vector>

#include "device.cuh"
#include "umbra_kernels.h"

namespace umbra::cuda {

std::vector<LayerCut> threshold_select_f32_cuda(const std::vector<WeightArray>& arrays, const SelectOptions& options,
                                                Stream& stream);

}  // namespace umbra::cuda

// The chunk table the pruning kernels walk: every weight array is cut into pieces of at most
// kChunkSize elements, each tagged with its array and its position in the global order (array
// order, then index) so NaN reports and tie ranks follow the CPU's order exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "umbra_kernels.h"

namespace umbra::cuda {

constexpr size_t kChunkSize = size_t(1) << 16;

struct MagnitudeChunk {
  const float* data;  // device pointer to the chunk's first element
  uint64_t order;  // global index of that element
  uint32_t size;
  uint32_t array;
};

inline std::vector<MagnitudeChunk> make_magnitude_chunks(const std::vector<WeightArray>& arrays,
                                                         const std::vector<size_t>& which) {
  std::vector<MagnitudeChunk> chunks;
  uint64_t order = 0;
  for (size_t l : which) {
    for (size_t b = 0; b < arrays[l].size; b += kChunkSize) {
      const size_t size = arrays[l].size - b < kChunkSize ? arrays[l].size - b : kChunkSize;
      chunks.push_back({arrays[l].data + b, order + b, static_cast<uint32_t>(size), static_cast<uint32_t>(l)});
    }
    order += arrays[l].size;
  }
  return chunks;
}

}  // namespace umbra::cuda

namespace umbra::cuda {

class Stream;
// Per chunk, how many magnitude keys are below and equal to its array's key (keys[array]).
// Device pointers throughout; enqueued on the stream (magnitude_count.cu).
void magnitude_count_cuda(const MagnitudeChunk* chunks, size_t count, const uint32_t* keys, uint32_t* below,
                          uint32_t* equal, Stream& stream);

}  // namespace umbra::cuda

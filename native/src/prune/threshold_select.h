// Exact rank selection over the magnitude keys of one or more arrays by two radix-histogram
// passes (top 16 bits; then the low 15 bits of the few keys inside the chosen bin), multithreaded
// by chunks.
#pragma once

#include <cstdint>
#include <vector>

#include "umbra_kernels.h"

namespace umbra {

// The cut that prunes exactly `count` of the keys of `arrays[layers...]` taken together:
// keys below `key` plus the first `ties` keys equal to it, in array-then-index order.
struct RankCut {
  uint32_t key;
  uint64_t ties;
};
// Throws std::domain_error on the first NaN (in array-then-index order). When `below` and
// `equal` are given they receive, per array index, the keys below and equal to the cut's key.
RankCut select_rank(const std::vector<WeightArray>& arrays, const std::vector<size_t>& layers, uint64_t count, int threads,
                    std::vector<uint64_t>* below = nullptr, std::vector<uint64_t>* equal = nullptr);

}  // namespace umbra

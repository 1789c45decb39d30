#include "mask_apply.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../cpu/thread_pool.h"
#include "magnitude.h"

namespace umbra {

uint64_t mask_apply_f32(const std::vector<WeightArray>& arrays, const std::vector<LayerCut>& cuts, int threads) {
  if (cuts.size() != arrays.size())
    throw std::invalid_argument("mask_apply_f32: expected one cut per array (" + std::to_string(arrays.size()) +
                                ") but received " + std::to_string(cuts.size()));
  if (threads < 1) throw std::invalid_argument("mask_apply_f32: threads must be >= 1");
  for (const auto& a : arrays)
    if (a.size != 0 && a.data == nullptr) throw std::invalid_argument("mask_apply_f32: array \"" + a.name + "\" has no data");
  constexpr size_t kChunk = size_t(1) << 20;
  struct Piece {
    size_t layer, begin, end;
  };
  std::vector<Piece> pieces;
  for (size_t l = 0; l < arrays.size(); ++l)
    for (size_t b = 0; b < arrays[l].size; b += kChunk) pieces.push_back({l, b, std::min(arrays[l].size, b + kChunk)});
  std::vector<uint64_t> zeroed(pieces.size(), 0);
  // Strictly-below keys in parallel; ties afterwards, in index order, one array at a time.
  parallel_for(pieces.size(), threads, [&](size_t p) {
    const Piece& piece = pieces[p];
    float* data = arrays[piece.layer].data;
    const uint32_t key = cuts[piece.layer].threshold_key;
    uint64_t count = 0;
    for (size_t i = piece.begin; i < piece.end; ++i) {
      const bool below = magnitude_key(data[i]) < key;
      data[i] = below ? 0.0f : data[i];
      count += below;
    }
    zeroed[p] = count;
  });
  uint64_t total = 0;
  for (uint64_t z : zeroed) total += z;
  for (size_t l = 0; l < arrays.size(); ++l) {
    uint64_t ties = cuts[l].ties;
    const uint32_t key = cuts[l].threshold_key;
    float* data = arrays[l].data;
    for (size_t i = 0; i < arrays[l].size && ties > 0; ++i) {
      if (magnitude_key(data[i]) == key) {
        data[i] = 0.0f;
        --ties;
        ++total;
      }
    }
    if (ties > 0)
      throw std::invalid_argument("mask_apply_f32: array \"" + arrays[l].name +
                                  "\" has fewer weights at the threshold than the cut names (it changed since selection)");
  }
  return total;
}

}  // namespace umbra

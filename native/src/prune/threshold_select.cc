#include "threshold_select.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "../cpu/thread_pool.h"
#include "magnitude.h"
#include "magnitude_scan.h"

namespace umbra {
namespace {

constexpr size_t kChunk = size_t(1) << 22;
constexpr uint32_t kTopShift = 15;  // pass 1 bins: key >> 15 (16 bits, the sign is clear)
constexpr size_t kTopBins = size_t(1) << 16;
constexpr size_t kLowBins = size_t(1) << 15;  // pass 2 bins: key & 0x7fff inside one top bin
constexpr uint64_t kNoNan = std::numeric_limits<uint64_t>::max();

struct Chunk {
  size_t layer, begin, end, order;  // order = global position of `begin`, for NaN reporting
};

std::vector<Chunk> make_chunks(const std::vector<WeightArray>& arrays, const std::vector<size_t>& layers) {
  std::vector<Chunk> chunks;
  size_t order = 0;
  for (size_t l : layers) {
    for (size_t b = 0; b < arrays[l].size; b += kChunk)
      chunks.push_back({l, b, std::min(arrays[l].size, b + kChunk), order + b});
    order += arrays[l].size;
  }
  return chunks;
}

// Histogram of the keys whose top bits equal `prefix` (all keys when `top_pass`), binned by
// the top 16 bits (top pass) or the low 15 bits. Four interleaved sub-histograms keep runs of
// equal bins from serialising on one counter. Throws on the first NaN in global order.
std::vector<uint64_t> histogram(const std::vector<WeightArray>& arrays, const std::vector<Chunk>& chunks, bool top_pass,
                                uint32_t prefix, int threads) {
  const size_t bins = top_pass ? kTopBins : kLowBins;
  const size_t groups = std::max<size_t>(1, std::min<size_t>(chunks.size(), static_cast<size_t>(threads)));
  std::vector<std::vector<uint64_t>> sums(groups, std::vector<uint64_t>(bins, 0));
  std::vector<uint64_t> first_nan(groups, kNoNan);
  std::vector<size_t> nan_layer(groups, 0), nan_index(groups, 0);
  parallel_for(groups, threads, [&](size_t g) {
    std::vector<uint32_t> local(bins * 4);
    for (size_t c = g; c < chunks.size(); c += groups) {
      const Chunk& ch = chunks[c];
      const float* data = arrays[ch.layer].data;
      std::fill(local.begin(), local.end(), 0u);
      uint32_t max_key = 0;
      size_t i = ch.begin;
      if (top_pass) {
        for (; i + 4 <= ch.end; i += 4) {
          for (size_t u = 0; u < 4; ++u) {
            const uint32_t key = magnitude_key(data[i + u]);
            max_key = std::max(max_key, key);
            ++local[(key >> kTopShift) * 4 + u];
          }
        }
        for (; i < ch.end; ++i) {
          const uint32_t key = magnitude_key(data[i]);
          max_key = std::max(max_key, key);
          ++local[(key >> kTopShift) * 4];
        }
      } else {
        for (; i < ch.end; ++i) {
          const uint32_t key = magnitude_key(data[i]);
          if ((key >> kTopShift) == prefix) ++local[(key & (kLowBins - 1)) * 4 + (i & 3)];
        }
      }
      if (max_key > kInfinityKey) {
        for (size_t j = ch.begin; j < ch.end; ++j) {
          if (magnitude_key(data[j]) > kInfinityKey) {
            if (ch.order + (j - ch.begin) < first_nan[g]) {
              first_nan[g] = ch.order + (j - ch.begin);
              nan_layer[g] = ch.layer;
              nan_index[g] = j;
            }
            break;
          }
        }
      }
      std::vector<uint64_t>& sum = sums[g];
      for (size_t b = 0; b < bins; ++b) sum[b] += local[b * 4] + local[b * 4 + 1] + local[b * 4 + 2] + local[b * 4 + 3];
    }
  });
  const size_t worst = static_cast<size_t>(std::min_element(first_nan.begin(), first_nan.end()) - first_nan.begin());
  if (first_nan[worst] != kNoNan) throw_nan(arrays[nan_layer[worst]].name, nan_index[worst]);
  for (size_t g = 1; g < groups; ++g)
    for (size_t b = 0; b < bins; ++b) sums[0][b] += sums[g][b];
  return std::move(sums[0]);
}

// Bin holding rank `rank` (0-based) and how many keys lie in earlier bins.
std::pair<size_t, uint64_t> locate(const std::vector<uint64_t>& hist, uint64_t rank) {
  uint64_t below = 0;
  for (size_t b = 0; b < hist.size(); ++b) {
    if (rank < below + hist[b]) return {b, below};
    below += hist[b];
  }
  return {hist.size(), below};
}

// The candidates of one read pass: per chunk, how many keys fall below the window, how many
// equal its lower end (counted, not stored: after an earlier pruning round that end is often
// 0 for a large share of the weights), and the other keys inside it (few: typically under 1% of
// all weights). NaN is reported like in histogram().
struct Window {
  uint32_t lo = 0;
  std::vector<std::vector<uint32_t>> inside;
  std::vector<uint64_t> below, at_lo;
  uint64_t below_total = 0, inside_total = 0;
};

Window window_pass(const std::vector<WeightArray>& arrays, const std::vector<Chunk>& chunks, uint32_t lo, uint32_t hi,
                   int threads) {
  Window w;
  w.lo = lo;
  w.inside.resize(chunks.size());
  w.below.resize(chunks.size());
  w.at_lo.resize(chunks.size());
  std::vector<uint64_t> first_nan(chunks.size(), kNoNan);
  const MagnitudeScanFn scan = magnitude_scan_variant();
  parallel_for(chunks.size(), threads, [&](size_t c) {
    const Chunk& ch = chunks[c];
    const float* data = arrays[ch.layer].data;
    WindowCounts counts;
    if (hi > lo) {
      scan(data + ch.begin, ch.end - ch.begin, lo, hi, counts, w.inside[c]);
    } else {
      for (size_t i = ch.begin; i < ch.end; ++i) {
        const uint32_t key = magnitude_key(data[i]);
        counts.max_key = std::max(counts.max_key, key);
        counts.below += key < lo;
        counts.at_lo += key == lo;
      }
    }
    w.below[c] = counts.below;
    w.at_lo[c] = counts.at_lo;
    if (counts.max_key > kInfinityKey) {
      for (size_t i = ch.begin; i < ch.end; ++i)
        if (magnitude_key(data[i]) > kInfinityKey) {
          first_nan[c] = ch.order + (i - ch.begin);
          break;
        }
    }
  });
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (first_nan[c] != kNoNan) throw_nan(arrays[chunks[c].layer].name, chunks[c].begin + (first_nan[c] - chunks[c].order));
    w.below_total += w.below[c];
    w.inside_total += w.inside[c].size() + w.at_lo[c];
  }
  return w;
}

// Exact key of rank `rank` among the window's candidates: the same two radix passes as over
// the weights, over the (small) candidate set. Fills per-array below/equal counts if asked.
RankCut finish_window(const std::vector<WeightArray>& arrays, const std::vector<Chunk>& chunks, const Window& w,
                      uint64_t rank, std::vector<uint64_t>* below, std::vector<uint64_t>* equal) {
  std::vector<uint64_t> top(kTopBins, 0), low(kLowBins, 0);
  uint64_t at_lo = 0;
  for (uint64_t n : w.at_lo) at_lo += n;
  top[w.lo >> kTopShift] += at_lo;
  for (const auto& mine : w.inside)
    for (uint32_t k : mine) ++top[k >> kTopShift];
  const auto [top_bin, top_below] = locate(top, rank);
  if ((w.lo >> kTopShift) == top_bin) low[w.lo & (kLowBins - 1)] += at_lo;
  for (const auto& mine : w.inside)
    for (uint32_t k : mine)
      if ((k >> kTopShift) == top_bin) ++low[k & (kLowBins - 1)];
  const auto [low_bin, low_below] = locate(low, rank - top_below);
  const uint32_t key = static_cast<uint32_t>((top_bin << kTopShift) | low_bin);
  if (below != nullptr && equal != nullptr) {
    below->assign(arrays.size(), 0);
    equal->assign(arrays.size(), 0);
    for (size_t c = 0; c < chunks.size(); ++c) {
      uint64_t lt = w.below[c] + (w.lo < key ? w.at_lo[c] : 0), eq = w.lo == key ? w.at_lo[c] : 0;
      for (uint32_t k : w.inside[c]) {
        lt += k < key;
        eq += k == key;
      }
      (*below)[chunks[c].layer] += lt;
      (*equal)[chunks[c].layer] += eq;
    }
  }
  return {key, rank - top_below - low_below};
}

// Guesses a narrow key window around rank `count` from a sample of ~1 key per 4 KiB (at a
// hashed offset, so strided structure in the weights cannot bias it). Returns false when the
// weights are too few for sampling to pay off.
bool sample_window(const std::vector<WeightArray>& arrays, const std::vector<Chunk>& chunks, uint64_t count,
                   uint64_t total, uint32_t& lo, uint32_t& hi) {
  constexpr size_t kStride = 1024;
  if (total < (uint64_t(1) << 22)) return false;
  std::vector<uint32_t> sample;
  sample.reserve(total / kStride + chunks.size());
  for (const Chunk& ch : chunks) {
    const float* data = arrays[ch.layer].data;
    for (size_t b = ch.begin; b < ch.end; b += kStride) {
      uint64_t h = (ch.order + b) * 0x9E3779B97F4A7C15ull;
      h ^= h >> 29;
      const size_t i = b + static_cast<size_t>(h % std::min(kStride, ch.end - b));
      const uint32_t key = magnitude_key(data[i]);
      if (key <= kInfinityKey) sample.push_back(key);
    }
  }
  if (sample.size() < 1024) return false;
  const double n = static_cast<double>(sample.size());
  const double p = static_cast<double>(count) / static_cast<double>(total);
  // Six standard deviations of the sample quantile either side, plus a little slack.
  const double margin = 6.0 * std::sqrt(std::max(p * (1.0 - p), 1.0 / n) / n) + 2.0 / n;
  const size_t lo_rank = static_cast<size_t>(std::max(0.0, (p - margin) * n));
  const size_t hi_rank = static_cast<size_t>(std::min(n - 1.0, (p + margin) * n));
  std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(lo_rank), sample.end());
  lo = sample[lo_rank];
  std::nth_element(sample.begin() + static_cast<std::ptrdiff_t>(lo_rank), sample.begin() + static_cast<std::ptrdiff_t>(hi_rank), sample.end());
  hi = sample[hi_rank];
  if (lo_rank == 0) lo = 0;
  if (hi_rank + 1 >= sample.size()) hi = kInfinityKey;
  return true;
}

void check_options(const std::vector<WeightArray>& arrays, const SelectOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("threshold_select_f32: " + what); };
  if (!(o.sparsity >= 0.0 && o.sparsity <= 1.0)) fail("sparsity must be in [0, 1]");
  if (o.threads < 1) fail("threads must be >= 1");
  for (const auto& a : arrays)
    if (a.size != 0 && a.data == nullptr) fail("array \"" + a.name + "\" has no data");
  for (const auto* clamp : {&o.min_sparsity, &o.max_sparsity}) {
    if (!clamp->empty() && clamp->size() != arrays.size()) fail("per-array clamps need one value per array");
    for (double v : *clamp)
      if (!(v >= 0.0 && v <= 1.0)) fail("per-array clamps must be in [0, 1]");
  }
  if (!o.min_sparsity.empty() && !o.max_sparsity.empty())
    for (size_t l = 0; l < arrays.size(); ++l)
      if (o.min_sparsity[l] > o.max_sparsity[l]) fail("min sparsity is above max sparsity for \"" + arrays[l].name + "\"");
}

LayerCut cut_for(const std::vector<WeightArray>& arrays, size_t layer, uint64_t count, int threads) {
  const RankCut rc = select_rank(arrays, {layer}, count, threads);
  return {rc.key, rc.ties, count};
}

// Global threshold with per-array clamps: finds the largest key t whose clamped counts
// sum(clamp(count below t)) stay within the target, then hands the remainder to ties in array
// order. Needs per-array histograms (about 800 KiB per array, freed on return).
std::vector<uint64_t> clamped_counts(const std::vector<WeightArray>& arrays, const std::vector<uint64_t>& lo,
                                     const std::vector<uint64_t>& hi, uint64_t target, int threads) {
  const size_t layers = arrays.size();
  auto clamp = [&](size_t l, uint64_t c) { return std::min(hi[l], std::max(lo[l], c)); };
  std::vector<std::vector<uint64_t>> prefix(layers);
  for (size_t l = 0; l < layers; ++l) {
    const std::vector<uint64_t> h = histogram(arrays, make_chunks(arrays, {l}), true, 0, threads);
    prefix[l].assign(kTopBins + 1, 0);
    for (size_t b = 0; b < kTopBins; ++b) prefix[l][b + 1] = prefix[l][b] + h[b];
  }
  auto total_at = [&](const std::vector<std::vector<uint64_t>>& p, size_t b) {
    uint64_t s = 0;
    for (size_t l = 0; l < layers; ++l) s += clamp(l, p[l][b]);
    return s;
  };
  // Largest bin boundary b with total_at(b) <= target (total_at is non-decreasing in b).
  auto search = [&](const std::vector<std::vector<uint64_t>>& p, size_t bins) {
    size_t lo_b = 0, hi_b = bins;
    while (lo_b < hi_b) {
      const size_t mid = (lo_b + hi_b + 1) / 2;
      if (total_at(p, mid) <= target) lo_b = mid; else hi_b = mid - 1;
    }
    return lo_b;
  };
  const size_t top = search(prefix, kTopBins);
  std::vector<uint64_t> counts(layers);
  if (top == kTopBins) {
    for (size_t l = 0; l < layers; ++l) counts[l] = clamp(l, arrays[l].size);
    return counts;
  }
  std::vector<std::vector<uint64_t>> low(layers);
  for (size_t l = 0; l < layers; ++l) {
    const std::vector<uint64_t> h = histogram(arrays, make_chunks(arrays, {l}), false, static_cast<uint32_t>(top), threads);
    low[l].assign(kLowBins + 1, 0);
    low[l][0] = prefix[l][top];
    for (size_t b = 0; b < kLowBins; ++b) low[l][b + 1] = low[l][b] + h[b];
  }
  const size_t cut = search(low, kLowBins);
  uint64_t assigned = 0;
  for (size_t l = 0; l < layers; ++l) assigned += counts[l] = clamp(l, low[l][cut]);
  uint64_t remaining = target - assigned;
  for (size_t l = 0; l < layers && remaining > 0; ++l) {
    const uint64_t room = clamp(l, low[l][cut + 1]) - counts[l];
    const uint64_t take = std::min(room, remaining);
    counts[l] += take;
    remaining -= take;
  }
  return counts;
}

}  // namespace

RankCut select_rank(const std::vector<WeightArray>& arrays, const std::vector<size_t>& layers, uint64_t count, int threads,
                    std::vector<uint64_t>* below, std::vector<uint64_t>* equal) {
  const std::vector<Chunk> chunks = make_chunks(arrays, layers);
  uint64_t total = 0;
  for (size_t l : layers) total += arrays[l].size;
  if (count < total) {
    // Fast path, one read pass: a sampled window that (almost always) holds the answer.
    uint32_t lo = 0, hi = 0;
    if (sample_window(arrays, chunks, count, total, lo, hi)) {
      const Window w = window_pass(arrays, chunks, lo, hi, threads);  // also rejects NaN
      if (w.below_total <= count && count < w.below_total + w.inside_total)
        return finish_window(arrays, chunks, w, count - w.below_total, below, equal);
    }
  }
  // Radix path, two read passes: histogram of the top 16 bits, then the chosen bin's keys.
  const std::vector<uint64_t> top = histogram(arrays, chunks, true, 0, threads);  // also rejects NaN
  if (count >= total) return {kAboveAllKeys, 0};
  const auto [top_bin, top_below] = locate(top, count);
  const uint32_t lo = static_cast<uint32_t>(top_bin << kTopShift);
  const Window w = window_pass(arrays, chunks, lo, lo | static_cast<uint32_t>(kLowBins - 1), threads);
  return finish_window(arrays, chunks, w, count - w.below_total, below, equal);
}

std::vector<LayerCut> threshold_select_f32(const std::vector<WeightArray>& arrays, const SelectOptions& o) {
  check_options(arrays, o);
  std::vector<LayerCut> cuts(arrays.size());
  if (o.per_layer) {
    for (size_t l = 0; l < arrays.size(); ++l) cuts[l] = cut_for(arrays, l, prune_count(o.sparsity, arrays[l].size), o.threads);
    return cuts;
  }
  uint64_t total = 0;
  for (const auto& a : arrays) total += a.size;
  const uint64_t target = prune_count(o.sparsity, total);
  if (!o.min_sparsity.empty() || !o.max_sparsity.empty()) {
    std::vector<uint64_t> lo(arrays.size(), 0), hi(arrays.size());
    uint64_t lo_sum = 0, hi_sum = 0;
    for (size_t l = 0; l < arrays.size(); ++l) {
      lo[l] = o.min_sparsity.empty() ? 0 : prune_count(o.min_sparsity[l], arrays[l].size);
      hi[l] = o.max_sparsity.empty() ? arrays[l].size : prune_count(o.max_sparsity[l], arrays[l].size);
      lo_sum += lo[l];
      hi_sum += hi[l];
    }
    if (target < lo_sum || target > hi_sum)
      throw std::invalid_argument("threshold_select_f32: the per-array clamps allow between " + std::to_string(lo_sum) +
                                  " and " + std::to_string(hi_sum) + " pruned weights but the target is " +
                                  std::to_string(target));
    const std::vector<uint64_t> counts = clamped_counts(arrays, lo, hi, target, o.threads);
    for (size_t l = 0; l < arrays.size(); ++l) cuts[l] = cut_for(arrays, l, counts[l], o.threads);
    return cuts;
  }
  std::vector<size_t> all(arrays.size());
  for (size_t l = 0; l < all.size(); ++l) all[l] = l;
  std::vector<uint64_t> below, equal;
  const RankCut rc = select_rank(arrays, all, target, o.threads, &below, &equal);
  if (rc.key == kAboveAllKeys) {
    for (size_t l = 0; l < arrays.size(); ++l) cuts[l] = {kAboveAllKeys, 0, arrays[l].size};
    return cuts;
  }
  uint64_t ties = rc.ties;
  for (size_t l = 0; l < arrays.size(); ++l) {
    const uint64_t take = std::min(ties, equal[l]);
    ties -= take;
    cuts[l] = {rc.key, take, below[l] + take};
  }
  return cuts;
}

}  // namespace umbra

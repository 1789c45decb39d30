// Pruning tests: exact counts against a sorted reference, ties by index, clamps, NaN, N:M and
// structured modes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "test_support.h"
#include "umbra_kernels.h"

namespace umbra_test {
namespace {

// --- pruning ------------------------------------------------------------------------------------
uint32_t key_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b & 0x7fffffffu;
}

// Reference: the first `count` of all (key, array, index) triples in sorted order.
std::vector<std::vector<bool>> reference_mask(const std::vector<std::vector<float>>& arrays, uint64_t count) {
  struct Item { uint32_t key; size_t layer, index; };
  std::vector<Item> items;
  for (size_t l = 0; l < arrays.size(); ++l)
    for (size_t i = 0; i < arrays[l].size(); ++i) items.push_back({key_of(arrays[l][i]), l, i});
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.key < b.key; });
  std::vector<std::vector<bool>> mask(arrays.size());
  for (size_t l = 0; l < arrays.size(); ++l) mask[l].assign(arrays[l].size(), false);
  for (uint64_t i = 0; i < count; ++i) mask[items[i].layer][items[i].index] = true;
  return mask;
}

std::vector<std::vector<float>> prune_arrays() {
  std::vector<std::vector<float>> arrays;
  for (size_t size : {1, 17, 1000, 5000, 33}) {
    auto a = random_vector(size, -2.0f, 2.0f);
    // Quantised copies make many exact ties, across arrays too.
    for (size_t i = 0; i < size; i += 3) a[i] = std::round(a[i] * 8.0f) / 8.0f + (a[i] < 0 ? -0.125f : 0.125f);
    arrays.push_back(a);
  }
  return arrays;
}

std::vector<umbra::WeightArray> views(std::vector<std::vector<float>>& arrays) {
  std::vector<umbra::WeightArray> out;
  for (size_t l = 0; l < arrays.size(); ++l) out.push_back({arrays[l].data(), arrays[l].size(), "layer" + std::to_string(l)});
  return out;
}

}  // namespace

void test_prune() {
  for (double sparsity : {0.0, 0.3, 0.5, 0.9, 1.0})
    for (int threads : {1, 2}) {
      auto arrays = prune_arrays();
      uint64_t total = 0;
      for (auto& a : arrays) total += a.size();
      const uint64_t want = uint64_t(std::floor(sparsity * double(total) + 0.5));
      const auto ref = reference_mask(arrays, want);
      auto v = views(arrays);
      umbra::SelectOptions o;
      o.sparsity = sparsity;
      o.threads = threads;
      const auto cuts = umbra::threshold_select_f32(v, o);
      const uint64_t zeroed = umbra::mask_apply_f32(v, cuts, threads);
      expect(zeroed == want, "global prune count exact at " + std::to_string(sparsity));
      bool same = true;
      for (size_t l = 0; l < arrays.size(); ++l)
        for (size_t i = 0; i < arrays[l].size(); ++i) same = same && ((arrays[l][i] == 0.0f) == ref[l][i]);
      expect(same, "global prune matches the sorted reference (ties by index) at " + std::to_string(sparsity));
    }
  {
    auto arrays = prune_arrays();
    auto v = views(arrays);
    umbra::SelectOptions o;
    o.sparsity = 0.7;
    o.per_layer = true;
    const auto cuts = umbra::threshold_select_f32(v, o);
    umbra::mask_apply_f32(v, cuts, 2);
    bool ok = true;
    for (auto& a : arrays) {
      const size_t zeros = size_t(std::count(a.begin(), a.end(), 0.0f));
      ok = ok && zeros == size_t(std::floor(0.7 * double(a.size()) + 0.5));
    }
    expect(ok, "per-layer prune count exact in every layer");
  }
  {
    auto arrays = prune_arrays();
    auto original = arrays;
    auto v = views(arrays);
    umbra::SelectOptions o;
    o.sparsity = 0.6;
    o.min_sparsity.assign(arrays.size(), 0.0);
    o.max_sparsity.assign(arrays.size(), 1.0);
    o.min_sparsity[4] = 0.9;  // forced above the global level
    o.max_sparsity[2] = 0.2;  // forced below it
    const auto cuts = umbra::threshold_select_f32(v, o);
    umbra::mask_apply_f32(v, cuts, 2);
    uint64_t total = 0, zeros = 0;
    bool within = true;
    for (size_t l = 0; l < arrays.size(); ++l) {
      const size_t z = size_t(std::count(arrays[l].begin(), arrays[l].end(), 0.0f));
      total += arrays[l].size();
      zeros += z;
      within = within && z >= size_t(std::floor(o.min_sparsity[l] * arrays[l].size() + 0.5)) &&
               z <= size_t(std::floor(o.max_sparsity[l] * arrays[l].size() + 0.5));
      // Inside a layer the pruned ones are always the smallest.
      uint32_t max_pruned = 0, min_kept = 0xffffffffu;
      for (size_t i = 0; i < arrays[l].size(); ++i) {
        const uint32_t k = key_of(original[l][i]);
        if (arrays[l][i] == 0.0f) max_pruned = std::max(max_pruned, k); else min_kept = std::min(min_kept, k);
      }
      within = within && max_pruned <= min_kept;
    }
    expect(zeros == uint64_t(std::floor(0.6 * double(total) + 0.5)), "clamped global prune count exact");
    expect(within, "clamped global prune honours every clamp");
    o.min_sparsity.assign(arrays.size(), 0.95);
    o.max_sparsity.assign(arrays.size(), 1.0);
    expect_throw([&] { umbra::threshold_select_f32(v, o); }, "clamps allow", "infeasible clamps rejected");
  }
  {
    // Above 4M weights selection samples a key window first and reads the weights once.
    std::vector<std::vector<float>> arrays{random_vector(3000001, -1.0f, 1.0f), random_vector(1500000, -3.0f, 3.0f)};
    for (size_t i = 0; i < arrays[0].size(); i += 2) arrays[0][i] = std::round(arrays[0][i] * 64.0f) / 64.0f + 0.015625f;
    auto original = arrays;
    auto v = views(arrays);
    umbra::SelectOptions o;
    o.sparsity = 0.77;
    o.threads = 2;
    const auto cuts = umbra::threshold_select_f32(v, o);
    const uint64_t zeroed = umbra::mask_apply_f32(v, cuts, 2);
    const uint64_t want = uint64_t(std::floor(0.77 * 4500001.0 + 0.5));
    expect(zeroed == want, "sampled-window selection prunes the exact count");
    // Pruned keys never exceed kept keys; at the threshold the pruned ones come first.
    uint32_t max_pruned = 0, min_kept = 0xffffffffu;
    for (size_t l = 0; l < arrays.size(); ++l)
      for (size_t i = 0; i < arrays[l].size(); ++i) {
        const uint32_t k = key_of(original[l][i]);
        if (arrays[l][i] == 0.0f) max_pruned = std::max(max_pruned, k); else min_kept = std::min(min_kept, k);
      }
    bool kept_seen = false, order_ok = true;
    for (size_t l = 0; l < arrays.size(); ++l)
      for (size_t i = 0; i < arrays[l].size(); ++i)
        if (key_of(original[l][i]) == max_pruned) {
          if (arrays[l][i] != 0.0f) kept_seen = true; else order_ok = order_ok && !kept_seen;
        }
    expect(max_pruned <= min_kept && order_ok, "sampled-window selection is the exact magnitude order with index ties");
    // A second round over already-pruned weights: most keys are 0, the window's lower end.
    for (double again : {0.5, 0.9}) {
      o.sparsity = again;
      umbra::mask_apply_f32(v, umbra::threshold_select_f32(v, o), 2);
      uint64_t zeros = 0;
      for (auto& a : arrays) zeros += uint64_t(std::count(a.begin(), a.end(), 0.0f));
      expect(zeros == std::max(want, uint64_t(std::floor(again * 4500001.0 + 0.5))), "re-pruning keeps the exact count");
    }
    o.sparsity = 0.77;
    original[1][1234567] = std::nanf("");
    auto nan_views = views(original);
    expect_throw([&] { umbra::threshold_select_f32(nan_views, o); }, "\"layer1\" has NaN at index 1234567", "NaN found by the one-pass path");
  }
  {
    auto arrays = prune_arrays();
    arrays[3][4242] = std::nanf("");
    auto v = views(arrays);
    umbra::SelectOptions o;
    o.sparsity = 0.5;
    expect_throw([&] { umbra::threshold_select_f32(v, o); }, "\"layer3\" has NaN at index 4242", "NaN rejected with its place");
  }
  for (bool k_contiguous : {true, false}) {
    const size_t rows = 17, cols = 24;
    auto w = random_vector(rows * cols);
    const auto original = w;
    umbra::nm_prune_f32(w.data(), rows, cols, 2, 4, k_contiguous, "fc");
    bool ok = true;
    const size_t lines = k_contiguous ? rows : cols, length = k_contiguous ? cols : rows;
    for (size_t line = 0; line < lines; ++line)
      for (size_t g = 0; g < length; g += 4) {
        const size_t size = std::min<size_t>(4, length - g);
        size_t kept = 0;
        float min_kept = 1e9f, max_dropped = 0;
        for (size_t i = 0; i < size; ++i) {
          const size_t at = k_contiguous ? line * cols + g + i : (g + i) * cols + line;
          if (w[at] != 0.0f) { ++kept; min_kept = std::min(min_kept, std::fabs(original[at])); }
          else max_dropped = std::max(max_dropped, std::fabs(original[at]));
        }
        ok = ok && kept == std::min<size_t>(2, size) && max_dropped <= min_kept;
      }
    expect(ok, std::string("2:4 holds in every group, k_contiguous ") + (k_contiguous ? "yes" : "no"));
  }
  for (bool k_contiguous : {true, false})
    for (umbra::NormKind norm : {umbra::NormKind::l1, umbra::NormKind::l2}) {
      const size_t rows = 33, cols = 17;
      auto w = random_vector(rows * cols);
      const auto pruned = umbra::rows_prune_f32(w.data(), rows, cols, 0.5, norm, k_contiguous, "fc");
      const size_t outputs = k_contiguous ? rows : cols;
      bool ok = pruned.size() == size_t(std::floor(0.5 * outputs + 0.5));
      for (size_t o = 0; o < outputs; ++o) {
        const bool gone = std::binary_search(pruned.begin(), pruned.end(), int32_t(o));
        const size_t inner = k_contiguous ? cols : rows;
        for (size_t i = 0; i < inner; ++i) {
          const float v = k_contiguous ? w[o * cols + i] : w[i * cols + o];
          ok = ok && ((v == 0.0f) == gone);
        }
      }
      expect(ok, "structured prune zeroes whole outputs");
    }
}

}  // namespace umbra_test

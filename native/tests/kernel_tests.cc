// Standalone kernel tests: every kernel against a plain double-precision reference, on every
// ISA variant this CPU and build support (each forced in turn). Random inputs, odd sizes,
// empty rows, outputs poisoned with NaN before each call. Exit status 0 = all passed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"
#include "umbra_kernels.h"

namespace {

using namespace umbra_test;

double activate_ref(double x, umbra::Activation a) {
  switch (a) {
    case umbra::Activation::relu: return x < 0 ? 0 : x;
    case umbra::Activation::sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case umbra::Activation::tanh: return std::tanh(x);
    case umbra::Activation::gelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    default: return x;
  }
}

// |got - want| within rel * scale + abs; scale is the sum of |terms| feeding the value.
bool close(float got, double want, double scale, double rel = 2e-6, double abs = 2e-6) {
  if (!std::isfinite(got)) return false;
  return std::fabs(got - want) <= rel * scale + abs;
}

const umbra::Activation kActs[] = {umbra::Activation::none, umbra::Activation::relu, umbra::Activation::sigmoid,
                                   umbra::Activation::tanh, umbra::Activation::gelu};

// Reference Y = act(X W + b) for W as [K,N], with per-entry scale = sum |x||w| + |b|.
void dense_ref(const std::vector<float>& x, const std::vector<float>& w_kn, const float* bias, size_t m, size_t k, size_t n,
               umbra::Activation act, std::vector<double>& y, std::vector<double>& scale) {
  y.assign(m * n, 0);
  scale.assign(m * n, 0);
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      double s = bias ? bias[j] : 0, a = bias ? std::fabs(bias[j]) : 0;
      for (size_t kk = 0; kk < k; ++kk) {
        s += double(x[i * k + kk]) * w_kn[kk * n + j];
        a += std::fabs(double(x[i * k + kk]) * w_kn[kk * n + j]);
      }
      y[i * n + j] = activate_ref(s, act);
      scale[i * n + j] = a;
    }
}

void test_gemm() {
  const size_t sizes[][3] = {{1, 1, 1},   {3, 17, 33},  {17, 3, 1},   {1, 300, 127}, {33, 257, 65},
                             {127, 33, 17}, {64, 513, 96}, {13, 1, 31},  {5, 0, 7},     {0, 4, 4}};
  for (const auto& s : sizes) {
    const size_t m = s[0], k = s[1], n = s[2];
    const auto x = random_vector(m * k), w = random_vector(k * n), bias = random_vector(n);
    std::vector<float> w_nk(n * k);
    for (size_t kk = 0; kk < k; ++kk)
      for (size_t j = 0; j < n; ++j) w_nk[j * k + kk] = w[kk * n + j];
    std::vector<float> packed(umbra::gemm_packed_size(k, n), std::nanf(""));
    umbra::gemm_pack_f32(w.data(), k, n, umbra::WeightLayout::k_by_n, packed.data(), 1);
    std::vector<float> packed2(packed.size(), std::nanf(""));
    umbra::gemm_pack_f32(w_nk.data(), k, n, umbra::WeightLayout::n_by_k, packed2.data(), 2);
    expect(std::memcmp(packed.data(), packed2.data(), packed.size() * 4) == 0, "both layouts pack identically");
    for (umbra::Activation act : kActs)
      for (int with_bias = 0; with_bias < 2; ++with_bias)
        for (int layout = 0; layout < 3; ++layout)
          for (int threads : {1, 2}) {
            std::vector<double> ref, scale;
            dense_ref(x, w, with_bias ? bias.data() : nullptr, m, k, n, act, ref, scale);
            std::vector<float> y(m * n, std::nanf(""));
            umbra::GemmArgs g;
            g.x = x.data();
            g.w = layout == 0 ? w.data() : layout == 1 ? w_nk.data() : packed.data();
            g.layout = static_cast<umbra::WeightLayout>(layout);
            g.bias = with_bias ? bias.data() : nullptr;
            g.y = y.data();
            g.m = m; g.k = k; g.n = n;
            g.activation = act;
            g.threads = threads;
            umbra::gemm_f32(g);
            bool ok = true;
            for (size_t i = 0; i < m * n; ++i) ok = ok && close(y[i], ref[i], scale[i]);
            expect(ok, "gemm " + std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) + " act " +
                           std::to_string(int(act)) + " layout " + std::to_string(layout) + " bias " +
                           std::to_string(with_bias) + " threads " + std::to_string(threads));
          }
  }
  expect_throw([] { umbra::GemmArgs g; g.m = 2; g.n = 2; g.k = 2; umbra::gemm_f32(g); }, "is null", "gemm null x");
}

// Random sparse [N,K] with some empty rows and a given density.
std::vector<float> sparse_weights(size_t n, size_t k, double density) {
  auto w = random_vector(n * k);
  std::uniform_real_distribution<double> u(0, 1);
  for (size_t r = 0; r < n; ++r) {
    const bool empty = r % 7 == 3;
    for (size_t c = 0; c < k; ++c)
      if (empty || u(rng) >= density) w[r * k + c] = 0.0f;
  }
  return w;
}

void check_packing(const umbra::CsrOwned& csr, const umbra::SparsePanelsOwned& packed, size_t n, size_t k);
void test_spmm_rejects();
void test_spmm_lanes();

void test_spmm() {
  // k past 512 spans several column panels (the last one partial).
  const size_t shapes[][2] = {{1, 1}, {17, 3}, {33, 127}, {127, 33}, {64, 300}, {9, 1100}, {3, 513}};
  const size_t batches[] = {1, 2, 3, 8, 17, 33, 64, 65, 127};
  for (const auto& s : shapes)
    for (double density : {0.0, 0.1, 0.5, 1.0}) {
      const size_t n = s[0], k = s[1];
      const auto w_nk = sparse_weights(n, k, density);
      const umbra::CsrOwned csr = umbra::csr_from_dense_f32(w_nk.data(), n, k);
      size_t nnz = 0;
      for (float v : w_nk) nnz += v != 0.0f;
      expect(csr.values.size() == nnz && csr.row_ptr.back() == int32_t(nnz), "csr keeps every non-zero");
      std::vector<float> w_kn(k * n);
      for (size_t r = 0; r < n; ++r)
        for (size_t c = 0; c < k; ++c) w_kn[c * n + r] = w_nk[r * k + c];
      const auto bias = random_vector(n);
      umbra::CsrMatrix view{csr.row_ptr.data(), csr.col_idx.data(), csr.values.data(), n, k, csr.values.size()};
      // The packed copy also runs from a CSR whose rows list their columns backwards: order
      // within a row must not matter.
      umbra::CsrOwned reversed = csr;
      for (size_t r = 0; r < n; ++r) {
        std::reverse(reversed.col_idx.begin() + csr.row_ptr[r], reversed.col_idx.begin() + csr.row_ptr[r + 1]);
        std::reverse(reversed.values.begin() + csr.row_ptr[r], reversed.values.begin() + csr.row_ptr[r + 1]);
      }
      const umbra::SparsePanelsOwned packed = umbra::sparse_pack_f32(
          {reversed.row_ptr.data(), reversed.col_idx.data(), reversed.values.data(), n, k, reversed.values.size()});
      check_packing(csr, packed, n, k);
      umbra::SparsePanels panels;
      panels.panel_ptr = packed.panel_ptr.data();
      panels.col_idx = packed.col_idx.data();
      panels.values = packed.values.data();
      panels.rows = n;
      panels.cols = k;
      panels.nnz = packed.values.size();
      for (size_t m : batches)
        for (umbra::Activation act : {umbra::Activation::none, umbra::Activation::relu, umbra::Activation::gelu})
          for (int threads : {1, 2}) {
            const auto x = random_vector(m * k);
            std::vector<double> ref, scale;
            dense_ref(x, w_kn, bias.data(), m, k, n, act, ref, scale);
            std::vector<float> y(m * n, std::nanf(""));
            umbra::SpmmArgs a;
            a.x = x.data();
            a.w = view;
            a.bias = bias.data();
            a.y = y.data();
            a.m = m;
            a.activation = act;
            a.threads = threads;
            umbra::spmm_csr_f32(a);
            const std::string what = " n " + std::to_string(n) + " k " + std::to_string(k) + " m " + std::to_string(m) +
                                     " density " + std::to_string(density) + " threads " + std::to_string(threads);
            bool ok = true;
            for (size_t i = 0; i < m * n; ++i) ok = ok && close(y[i], ref[i], scale[i]);
            expect(ok, "spmm csr" + what);
            std::fill(y.begin(), y.end(), std::nanf(""));
            umbra::SpmmPanelsArgs p;
            p.x = x.data();
            p.w = panels;
            p.bias = bias.data();
            p.y = y.data();
            p.m = m;
            p.activation = act;
            p.threads = threads;
            umbra::spmm_panels_f32(p);
            ok = true;
            for (size_t i = 0; i < m * n; ++i) ok = ok && close(y[i], ref[i], scale[i]);
            expect(ok, "spmm panels" + what);
          }
    }
  test_spmm_rejects();
  test_spmm_lanes();
}

// Every stored value lands in its row and panel with its column, and nothing else is stored.
void check_packing(const umbra::CsrOwned& csr, const umbra::SparsePanelsOwned& packed, size_t n, size_t k) {
  const size_t panels = (k + umbra::kSparsePanel - 1) / umbra::kSparsePanel;
  bool ok = packed.panel_ptr.size() == panels * (n + 1) && packed.values.size() == csr.values.size() &&
            (panels == 0 || packed.panel_ptr.back() == int32_t(csr.values.size()));
  for (size_t r = 0; ok && r < n; ++r) {
    std::vector<std::pair<size_t, float>> want, got;
    for (int32_t j = csr.row_ptr[r]; j < csr.row_ptr[r + 1]; ++j) want.emplace_back(size_t(csr.col_idx[j]), csr.values[j]);
    for (size_t q = 0; q < panels; ++q)
      for (int32_t j = packed.panel_ptr[q * (n + 1) + r]; j < packed.panel_ptr[q * (n + 1) + r + 1]; ++j)
        got.emplace_back(q * umbra::kSparsePanel + packed.col_idx[j], packed.values[j]);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    ok = want == got;
  }
  expect(ok, "sparse_pack_f32 keeps every entry in its row and panel (n " + std::to_string(n) + " k " + std::to_string(k) + ")");
}

void test_spmm_rejects() {
  std::vector<int32_t> row_ptr{0, 1}, bad_col{5};
  std::vector<float> vals{1.0f}, x(4, 1.0f), y(1);
  umbra::SpmmArgs a;
  a.w = {row_ptr.data(), bad_col.data(), vals.data(), 1, 4, 1};
  a.x = x.data();
  a.y = y.data();
  a.m = 1;
  expect_throw([&] { umbra::spmm_csr_f32(a); }, "column index", "spmm rejects an out-of-range column");
  expect_throw([&] { umbra::sparse_pack_f32(a.w); }, "column index", "sparse_pack_f32 rejects an out-of-range column");

  // Panels: pointers are checked per call; a corrupt column index stays inside its panel.
  std::vector<int32_t> ptr{0, 2, 3};  // one panel, two rows
  std::vector<uint16_t> cols{0, 3, 0xFFFF};
  std::vector<float> values{1.0f, 2.0f, 4.0f}, x2(8, 1.0f), y2(4, std::nanf(""));
  umbra::SpmmPanelsArgs p;
  p.w.panel_ptr = ptr.data();
  p.w.col_idx = cols.data();
  p.w.values = values.data();
  p.w.rows = 2;
  p.w.cols = 4;
  p.w.nnz = 3;
  p.x = x2.data();
  p.y = y2.data();
  for (size_t m : {1, 2}) {
    p.m = m;
    umbra::spmm_panels_f32(p);
    expect(y2[0] == 3.0f && std::isfinite(y2[1]), "a corrupt panel column gives a finite value, not a read past x (m " + std::to_string(m) + ")");
  }
  ptr = {0, 3, 2};
  expect_throw([&] { umbra::spmm_panels_f32(p); }, "non-decreasing", "spmm_panels rejects decreasing pointers");
  ptr = {0, 2, 4};
  expect_throw([&] { umbra::spmm_panels_f32(p); }, "number of stored values", "spmm_panels rejects a bad last pointer");
}

// Two sparse layers chained on transposed activations (y_lanes, then x_lanes) give exactly what
// the same layers give row-major: rows of Yt past N and lanes past M are poisoned and must never
// reach a result.
void test_spmm_lanes() {
  const size_t k = 600, n1 = 530, n2 = 70;
  const auto w1 = sparse_weights(n1, k, 0.2), w2 = sparse_weights(n2, n1, 0.3);
  const umbra::CsrOwned c1 = umbra::csr_from_dense_f32(w1.data(), n1, k), c2 = umbra::csr_from_dense_f32(w2.data(), n2, n1);
  const umbra::SparsePanelsOwned p1 = umbra::sparse_pack_f32({c1.row_ptr.data(), c1.col_idx.data(), c1.values.data(), n1, k, c1.values.size()});
  const umbra::SparsePanelsOwned p2 = umbra::sparse_pack_f32({c2.row_ptr.data(), c2.col_idx.data(), c2.values.data(), n2, n1, c2.values.size()});
  auto panels = [](const umbra::SparsePanelsOwned& p, size_t rows, size_t cols) {
    umbra::SparsePanels w;
    w.panel_ptr = p.panel_ptr.data();
    w.col_idx = p.col_idx.data();
    w.values = p.values.data();
    w.rows = rows;
    w.cols = cols;
    w.nnz = p.values.size();
    return w;
  };
  const auto b1 = random_vector(n1), b2 = random_vector(n2);
  for (size_t m : {1, 3, 8, 9, 64, 65})
    for (int threads : {1, 2}) {
      const auto x = random_vector(m * k);
      umbra::SpmmPanelsArgs a;
      a.w = panels(p1, n1, k);
      a.bias = b1.data();
      a.activation = umbra::Activation::relu;
      a.m = m;
      a.threads = threads;
      a.x = x.data();
      std::vector<float> h(m * n1), want(m * n2), got(m * n2, std::nanf(""));
      a.y = h.data();
      umbra::spmm_panels_f32(a);
      umbra::SpmmPanelsArgs b;
      b.w = panels(p2, n2, n1);
      b.bias = b2.data();
      b.m = m;
      b.threads = threads;
      b.x = h.data();
      b.y = want.data();
      umbra::spmm_panels_f32(b);
      const size_t lanes = umbra::spmm_lanes(m), rows = (n1 + umbra::kSparsePanel - 1) / umbra::kSparsePanel * umbra::kSparsePanel;
      std::vector<float> ht(rows * lanes, std::nanf(""));
      a.y = ht.data();
      a.y_lanes = lanes;
      umbra::spmm_panels_f32(a);
      for (size_t r = n1; r < rows; ++r) std::fill(ht.begin() + r * lanes, ht.begin() + (r + 1) * lanes, std::nanf(""));
      for (size_t r = 0; r < n1; ++r) std::fill(ht.begin() + r * lanes + m, ht.begin() + (r + 1) * lanes, std::nanf(""));
      b.x = ht.data();
      b.x_lanes = lanes;
      b.y = got.data();
      umbra::spmm_panels_f32(b);
      expect(got == want, "spmm chained on lanes equals row-major (m " + std::to_string(m) + " threads " + std::to_string(threads) + ")");
      b.x_lanes = lanes + 8;
      expect_throw([&] { umbra::spmm_panels_f32(b); }, "lanes", "spmm_panels rejects lanes that do not fit the batch");
    }
}

void test_elementwise() {
  for (size_t cols : {1, 3, 17, 33, 127, 128}) {
    const size_t rows = 5;
    const auto bias = random_vector(cols);
    for (umbra::Activation act : kActs) {
      auto data = random_vector(rows * cols, -9.0f, 9.0f);
      const auto input = data;
      umbra::bias_activation_f32(data.data(), rows, cols, bias.data(), act);
      bool ok = true;
      for (size_t i = 0; i < rows * cols; ++i) {
        const double v = double(input[i]) + bias[i % cols];
        ok = ok && close(data[i], activate_ref(v, act), std::fabs(activate_ref(v, act)), 2e-6, 3e-7);
      }
      expect(ok, "bias_activation cols " + std::to_string(cols) + " act " + std::to_string(int(act)));
      std::vector<float> nan_in(cols, std::nanf(""));
      umbra::bias_activation_f32(nan_in.data(), 1, cols, nullptr, act);
      expect(std::all_of(nan_in.begin(), nan_in.end(), [](float f) { return std::isnan(f); }), "NaN propagates through activation");
    }
    auto logits = random_vector(rows * cols, -50.0f, 50.0f);
    logits[0] = 1000.0f;  // a naive exp overflows here
    const auto input = logits;
    umbra::softmax_f32(logits.data(), rows, cols);
    bool ok = true;
    for (size_t r = 0; r < rows; ++r) {
      double mx = -1e300, sum = 0;
      for (size_t c = 0; c < cols; ++c) mx = std::max(mx, double(input[r * cols + c]));
      for (size_t c = 0; c < cols; ++c) sum += std::exp(input[r * cols + c] - mx);
      double total = 0;
      for (size_t c = 0; c < cols; ++c) {
        const double want = std::exp(input[r * cols + c] - mx) / sum;
        ok = ok && close(logits[r * cols + c], want, want, 1e-5, 1e-7);
        total += logits[r * cols + c];
      }
      ok = ok && std::fabs(total - 1.0) < 1e-5;
    }
    expect(ok, "softmax cols " + std::to_string(cols));
  }
}

// Monitoring statistics against the plain rules: the lane sum written out, min and max of the
// finite values, and the first column no later value exceeds.
void test_monitor_stats() {
  for (size_t n : {0, 1, 7, 8, 9, 1000, 4099}) {
    for (int holes = 0; holes < 2; ++holes) {
      auto v = random_vector(n, -50.0f, 50.0f);
      if (holes && n > 3) {
        v[1] = NAN;
        v[n / 2] = INFINITY;
        v[n - 1] = -INFINITY;
      }
      double sum[8] = {}, lo = INFINITY, hi = -INFINITY;
      size_t non_finite = 0;
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(v[i])) {
          ++non_finite;
          continue;
        }
        sum[i % 8] += v[i];
        lo = std::min(lo, double(v[i]));
        hi = std::max(hi, double(v[i]));
      }
      double total = 0;
      for (double s : sum) total += s;
      const umbra::TensorStatsF32 got = umbra::tensor_stats_f32(n ? v.data() : nullptr, n);
      const std::string what = "tensor_stats n " + std::to_string(n) + (holes ? " with NaN and infinities" : "");
      expect(got.non_finite == non_finite, what + ": non-finite count");
      expect(got.sum == total, what + ": the lane sum, bit for bit");
      expect(n == non_finite ? (std::isinf(got.min) && std::isinf(got.max)) : (got.min == lo && got.max == hi), what + ": min and max");
    }
  }
  for (size_t cols : {1, 5, 8, 13, 4096}) {
    const size_t rows = 6;
    auto data = random_vector(rows * cols, -5.0f, 5.0f);
    data[0] = NAN;                                 // row 0 starts with NaN: column 0
    if (cols > 2) data[cols + 1] = NAN;            // row 1: a NaN inside is passed over
    if (cols > 3) {
      data[2 * cols + 1] = 9.0f;                   // row 2: a tie keeps the first
      data[2 * cols + cols - 1] = 9.0f;
    }
    for (size_t c = 0; c < cols; ++c) data[3 * cols + c] = c % 2 ? 0.0f : -0.0f;  // row 3: zeros of both signs
    std::vector<double> out(rows, -1.0);
    umbra::argmax_rows_f32(data.data(), rows, cols, out.data());
    bool ok = true;
    for (size_t r = 0; r < rows; ++r) {
      size_t best = 0;
      for (size_t c = 1; c < cols; ++c)
        if (data[r * cols + c] > data[r * cols + best]) best = c;
      ok = ok && out[r] == double(best);
    }
    expect(ok, "argmax_rows cols " + std::to_string(cols));
  }
}

// --- the harness ----------------------------------------------------------------------------------
// With no arguments every ISA the CPU and build support runs in turn, with a readable summary.
// `--isa NAME` runs one ISA; `--json` prints one line per group instead:
//   {"isa":"avx2","group":"gemm","supported":true,"checks":1234,"failures":0,"first_failures":[]}
// (test/cpp-kernels.test.ts turns each line into one assertion). Exit status 0 = all passed.

struct Group {
  const char* name;
  void (*run)();
};

// Every kernel and pruning mode; the selection scan of pruning has ISA variants too.
const Group kGroups[] = {{"gemm", test_gemm}, {"spmm", test_spmm}, {"elementwise", test_elementwise}, {"monitor-stats", test_monitor_stats}, {"prune", test_prune}};
const umbra::Isa kIsas[] = {umbra::Isa::portable, umbra::Isa::avx2, umbra::Isa::avx512};

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Runs one group on the forced ISA from the same seed (every ISA sees the same inputs); an
// exception escaping the group is one more failure of that group, and the next group still runs.
void run_group(const Group& group, umbra::Isa isa, bool json) {
  const int checks_before = checks, failures_before = failures;
  first_failures.clear();
  rng.seed(12345);
  context = std::string(group.name) + " " + umbra::isa_name(isa);
  try {
    group.run();
  } catch (const std::exception& e) {
    expect(false, std::string("uncaught: ") + e.what());
  }
  const int group_checks = checks - checks_before, group_failures = failures - failures_before;
  if (!json) return;
  std::string list;
  for (const auto& f : first_failures) list += (list.empty() ? "" : ",") + json_string(f);
  std::printf("{\"isa\":\"%s\",\"group\":\"%s\",\"supported\":true,\"checks\":%d,\"failures\":%d,\"first_failures\":[%s]}\n",
              umbra::isa_name(isa), group.name, group_checks, group_failures, list.c_str());
}

int run(const std::string& only_isa, bool json) {
  bool matched = false;
  for (umbra::Isa isa : kIsas) {
    if (!only_isa.empty() && only_isa != umbra::isa_name(isa)) continue;
    matched = true;
    if (!umbra::isa_force(isa)) {
      if (json)
        std::printf("{\"isa\":\"%s\",\"supported\":false}\n", umbra::isa_name(isa));
      else
        std::printf("skip %s (not supported by this CPU or build)\n", umbra::isa_name(isa));
      continue;
    }
    for (const Group& group : kGroups) run_group(group, isa, json);
    if (!json) std::printf("ran kernels and pruning on %s\n", umbra::isa_name(isa));
  }
  if (!matched) {
    std::fprintf(stderr, "expected one of portable, avx2, avx512 for --isa but received \"%s\"\n", only_isa.c_str());
    return 2;
  }
  if (!json) std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string only_isa;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      json = true;
    } else if (arg == "--isa" && i + 1 < argc) {
      only_isa = argv[++i];
    } else {
      std::fprintf(stderr, "usage: umbra_kernel_tests [--isa portable|avx2|avx512] [--json] (received \"%s\")\n", arg.c_str());
      return 2;
    }
  }
  return run(only_isa, json);
}

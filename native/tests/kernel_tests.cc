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

void test_spmm() {
  const size_t shapes[][2] = {{1, 1}, {17, 3}, {33, 127}, {127, 33}, {64, 300}};
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
            bool ok = true;
            for (size_t i = 0; i < m * n; ++i) ok = ok && close(y[i], ref[i], scale[i]);
            expect(ok, "spmm n " + std::to_string(n) + " k " + std::to_string(k) + " m " + std::to_string(m) +
                           " density " + std::to_string(density) + " threads " + std::to_string(threads));
          }
    }
  std::vector<int32_t> row_ptr{0, 1}, bad_col{5};
  std::vector<float> vals{1.0f}, x(4, 1.0f), y(1);
  umbra::SpmmArgs a;
  a.w = {row_ptr.data(), bad_col.data(), vals.data(), 1, 4, 1};
  a.x = x.data();
  a.y = y.data();
  a.m = 1;
  expect_throw([&] { umbra::spmm_csr_f32(a); }, "column index", "spmm rejects an out-of-range column");
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

}  // namespace

int run_all() {
  for (umbra::Isa isa : {umbra::Isa::portable, umbra::Isa::avx2, umbra::Isa::avx512}) {
    if (!umbra::isa_force(isa)) {
      std::printf("skip %s (not supported here)\n", umbra::isa_name(isa));
      continue;
    }
    context = umbra::isa_name(isa);
    test_gemm();
    test_spmm();
    test_elementwise();
    std::printf("ran kernels on %s\n", umbra::isa_name(isa));
  }
  context = "prune";
  test_prune();
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}

int main() {
  try {
    return run_all();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL [%s] uncaught: %s\n", context.c_str(), e.what());
    return 1;
  }
}

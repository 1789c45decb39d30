// Standalone GPU kernel tests (no Node.js): every CUDA kernel against a plain C++ reference on
// seeded random inputs of awkward sizes, outputs poisoned with NaN first, NaN never passes.
// Without a usable device it prints the reason and exits 0 (a skip), so CI can always run it.
//   cmake -S . -B build-tests -DUMBRA_BUILD_CUDA_TESTS=ON && cmake --build build-tests && ./build-tests/umbra_cuda_tests
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cublaslt.cuh"
#include "device.cuh"
#include "elementwise.cuh"
#include "gemm.cuh"
#include "mask_apply.cuh"
#include "softmax.cuh"
#include "spmm.cuh"
#include "threshold_select.cuh"

using namespace umbra::cuda;

namespace {

int g_failures = 0, g_checks = 0;
#define CHECK(cond, ...)                                         \
  do {                                                           \
    ++g_checks;                                                  \
    if (!(cond)) {                                               \
      ++g_failures;                                              \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
      std::printf(__VA_ARGS__);                                  \
      std::printf("\n");                                         \
    }                                                            \
  } while (0)

std::mt19937 g_rng(20240611);
std::vector<float> random_floats(size_t n, float scale = 1.f) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = d(g_rng) * scale;
    if (x == 0.f) x = 0.5f * scale;  // never exact zeros
  }
  return v;
}

double act_ref(double x, int a) {
  switch (a) {
    case 1: return x < 0 ? 0 : x;
    case 2: return 1 / (1 + std::exp(-x));
    case 3: return std::tanh(x);
    case 4: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    default: return x;
  }
}

// Device copies of host vectors for the test's lifetime.
template <typename T>
DeviceBuffer to_device(const std::vector<T>& v, Stream& s) {
  DeviceBuffer b(s.device(), std::max<size_t>(1, v.size()) * sizeof(T));
  s.stage_upload(b.data(), v.data(), v.size() * sizeof(T));
  s.finish();
  return b;
}
template <typename T>
std::vector<T> to_host(const DeviceBuffer& b, size_t n, Stream& s) {
  std::vector<T> v(n);
  s.stage_download(v.data(), b.data(), n * sizeof(T));
  s.finish();
  return v;
}
DeviceBuffer poisoned(size_t n, Stream& s) {
  return to_device(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()), s);
}

// |got - ref| within tol * (sum of |terms| + |ref|) + 1e-6; NaN fails.
bool close(float got, double ref, double magnitude, double tol) {
  return std::isfinite(got) && std::fabs(got - ref) <= tol * (magnitude + std::fabs(ref)) + 1e-6;
}

void test_gemm(Stream& s) {
  struct Shape { size_t m, k, n; };
  const Shape shapes[] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 130, 67}, {129, 257, 100}, {64, 1536, 96}, {200, 24, 300}};
  // Umbra's own kernels, then cuBLASLt where it was found (cublaslt.cuh; fp32 and tf32 only).
  const int impls = cublaslt_info().found ? 2 : 1;
  for (int vendor = 0; vendor < impls; ++vendor)
  for (const Shape& sh : shapes)
    for (int layout = 0; layout < 2; ++layout)
      for (int precision = 0; precision < 3; ++precision)
        for (int act = 0; act < 5; ++act) {
          if (precision > 0 && act % 2 == 1) continue;  // fewer combinations for the tensor-core paths
          if (vendor == 1 && precision == 2) continue;  // bf16 always runs Umbra's kernel
          const bool with_bias = !(act == 1 && layout == 0);  // ReLU without bias: cuBLASLt's RELU epilogue
          const auto x = random_floats(sh.m * sh.k), w = random_floats(sh.k * sh.n), bias = random_floats(sh.n);
          DeviceBuffer dx = to_device(x, s), dw = to_device(w, s), db = to_device(bias, s), dy = poisoned(sh.m * sh.n, s);
          GemmCudaArgs a;
          a.x = dx.as<float>(), a.w = dw.as<float>(), a.bias = with_bias ? db.as<float>() : nullptr, a.y = dy.as<float>();
          a.m = sh.m, a.k = sh.k, a.n = sh.n, a.w_n_by_k = layout == 1, a.activation = act;
          a.precision = static_cast<GemmPrecision>(precision);
          a.vendor = vendor == 1;
          gemm_f32_cuda(a, s);
          const auto y = to_host<float>(dy, sh.m * sh.n, s);
          const double tol = precision == 0 ? 1e-5 : precision == 1 ? 3e-3 : 1.6e-2;
          int bad = 0;
          for (size_t i = 0; i < sh.m && bad < 3; ++i)
            for (size_t j = 0; j < sh.n && bad < 3; ++j) {
              double sum = with_bias ? bias[j] : 0.0, mag = with_bias ? std::fabs(bias[j]) : 0.0;
              for (size_t p = 0; p < sh.k; ++p) {
                const double wv = layout == 1 ? w[j * sh.k + p] : w[p * sh.n + j];
                sum += x[i * sh.k + p] * wv;
                mag += std::fabs(x[i * sh.k + p] * wv);
              }
              const float got = y[i * sh.n + j];
              if (!close(got, act_ref(sum, act), mag, tol)) {
                ++bad;
                CHECK(false, "gemm %s m=%zu k=%zu n=%zu layout=%d precision=%d act=%d bias=%d at (%zu,%zu): got %g want %g",
                      vendor ? "cublaslt" : "own", sh.m, sh.k, sh.n, layout, precision, act, with_bias, i, j, got, act_ref(sum, act));
              }
            }
          CHECK(bad == 0, "gemm case above");
        }
}

void test_spmm(Stream& s) {
  struct Shape { size_t m, k, n; double density; };
  const Shape shapes[] = {{1, 1, 1, 1.0}, {5, 33, 17, 0.3}, {9, 1000, 300, 0.1}, {64, 2500, 257, 0.1}, {70, 4100, 33, 0.05}, {3, 8, 600, 0.0}};
  for (const Shape& sh : shapes)
    for (int act = 0; act < 5; ++act) {
      std::vector<int32_t> row_ptr{0}, col_idx;
      std::vector<float> values;
      std::uniform_real_distribution<double> u(0, 1);
      for (size_t r = 0; r < sh.n; ++r) {
        std::vector<int32_t> cols;
        for (size_t c = 0; c < sh.k; ++c)
          if (u(g_rng) < sh.density) cols.push_back(static_cast<int32_t>(c));
        std::shuffle(cols.begin(), cols.end(), g_rng);  // unsorted on purpose: the upload sorts
        for (int32_t c : cols) col_idx.push_back(c), values.push_back(random_floats(1)[0]);
        row_ptr.push_back(static_cast<int32_t>(col_idx.size()));
      }
      const auto x = random_floats(sh.m * sh.k), bias = random_floats(sh.n);
      std::vector<int32_t> sorted_cols = col_idx;
      std::vector<float> sorted_vals = values;
      csr_prepare_host(sh.n, sh.k, row_ptr.data(), sorted_cols.data(), sorted_vals.data());
      DeviceBuffer drp = to_device(row_ptr, s), dci = to_device(sorted_cols, s), dv = to_device(sorted_vals, s);
      DeviceBuffer dx = to_device(x, s), db = to_device(bias, s), dy = poisoned(sh.m * sh.n, s);
      SpmmCudaArgs a;
      a.x = dx.as<float>(), a.bias = db.as<float>(), a.y = dy.as<float>(), a.m = sh.m, a.activation = act;
      a.w = {drp.as<int32_t>(), dci.as<int32_t>(), dv.as<float>(), sh.n, sh.k, col_idx.size()};
      spmm_csr_f32_cuda(a, s);
      const auto y = to_host<float>(dy, sh.m * sh.n, s);
      int bad = 0;
      for (size_t i = 0; i < sh.m; ++i)
        for (size_t r = 0; r < sh.n; ++r) {
          double sum = bias[r], mag = std::fabs(bias[r]);
          for (int32_t j = row_ptr[r]; j < row_ptr[r + 1]; ++j) {
            sum += values[j] * x[i * sh.k + col_idx[j]];
            mag += std::fabs(values[j] * x[i * sh.k + col_idx[j]]);
          }
          if (!close(y[i * sh.n + r], act_ref(sum, act), mag, 1e-5) && bad++ < 3)
            CHECK(false, "spmm m=%zu k=%zu n=%zu act=%d at (%zu,%zu): got %g want %g", sh.m, sh.k, sh.n, act, i, r,
                  y[i * sh.n + r], act_ref(sum, act));
        }
      CHECK(bad == 0, "spmm m=%zu k=%zu n=%zu act=%d: %d bad", sh.m, sh.k, sh.n, act, bad);
    }
  std::vector<int32_t> rp{0, 1}, ci{5};
  std::vector<float> v{1.f};
  bool threw = false;
  try {
    csr_prepare_host(1, 5, rp.data(), ci.data(), v.data());
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw, "an out-of-range column must be rejected before upload");
}

void test_elementwise(Stream& s) {
  const size_t shapes[][2] = {{1, 1}, {7, 3}, {33, 1000}, {5, 4099}};
  for (const auto& sh : shapes) {
    const size_t rows = sh[0], cols = sh[1];
    const auto data = random_floats(rows * cols, 8.f);
    DeviceBuffer d = to_device(data, s);
    softmax_f32_cuda(d.as<float>(), rows, cols, s);
    const auto y = to_host<float>(d, rows * cols, s);
    for (size_t r = 0; r < rows; ++r) {
      double mx = -INFINITY, sum = 0;
      for (size_t c = 0; c < cols; ++c) mx = std::max<double>(mx, data[r * cols + c]);
      for (size_t c = 0; c < cols; ++c) sum += std::exp(data[r * cols + c] - mx);
      for (size_t c = 0; c < cols; ++c) {
        const double want = std::exp(data[r * cols + c] - mx) / sum;
        CHECK(close(y[r * cols + c], want, 0, 1e-5), "softmax %zux%zu at (%zu,%zu): got %g want %g", rows, cols, r, c,
              y[r * cols + c], want);
      }
    }
    for (int act = 0; act < 5; ++act) {
      const auto bias = random_floats(cols);
      DeviceBuffer dd = to_device(data, s), db = to_device(bias, s);
      bias_activation_f32_cuda(dd.as<float>(), rows, cols, db.as<float>(), act, s);
      const auto z = to_host<float>(dd, rows * cols, s);
      int bad = 0;
      for (size_t i = 0; i < rows * cols; ++i)
        if (!close(z[i], act_ref(double(data[i]) + bias[i % cols], act), 0, 1e-5)) ++bad;
      CHECK(bad == 0, "bias_activation %zux%zu act=%d: %d bad", rows, cols, act, bad);
    }
  }
  for (size_t n : {size_t(1), size_t(3), size_t(1027), size_t(1) << 20}) {
    const auto src = random_floats(n + 1);
    DeviceBuffer d = to_device(src, s), out = poisoned(n + 1, s);
    copy_f32_cuda(out.as<float>(), d.as<float>() + 1, n, s);  // unaligned source on purpose
    const auto got = to_host<float>(out, n, s);
    CHECK(std::memcmp(got.data(), src.data() + 1, n * 4) == 0, "copy of %zu floats", n);
  }
}

uint32_t key_of(float w) {
  uint32_t b;
  std::memcpy(&b, &w, 4);
  return b & 0x7fffffffu;
}

void test_prune(Stream& s) {
  // Sizes straddle the 65536-element chunks; values are quantised so ties are common.
  const std::vector<size_t> sizes = {1, 70000, 131073, 513};
  for (bool per_layer : {false, true})
    for (double sparsity : {0.0, 0.3, 0.5, 0.9, 1.0}) {
      std::vector<std::vector<float>> host;
      std::vector<DeviceBuffer> dev;
      std::vector<umbra::WeightArray> arrays;
      for (size_t i = 0; i < sizes.size(); ++i) {
        auto v = random_floats(sizes[i]);
        for (auto& x : v) x = std::round(x * 512.f) / 512.f + (x < 0 ? -1.f / 1024 : 1.f / 1024);
        host.push_back(v);
        dev.push_back(to_device(v, s));
        arrays.push_back({dev.back().as<float>(), sizes[i], "layer" + std::to_string(i)});
      }
      umbra::SelectOptions o;
      o.sparsity = sparsity;
      o.per_layer = per_layer;
      const auto cuts = threshold_select_f32_cuda(arrays, o, s);
      const uint64_t zeroed = mask_apply_f32_cuda(arrays, cuts, s);
      // Reference: rank (key, global index) and prune the first `count` of each group.
      std::vector<std::vector<size_t>> groups;
      if (per_layer) for (size_t l = 0; l < sizes.size(); ++l) groups.push_back({l});
      else groups.push_back({0, 1, 2, 3});
      uint64_t want_zeroed = 0;
      std::vector<std::vector<float>> want = host;
      for (const auto& g : groups) {
        std::vector<std::pair<uint32_t, std::pair<size_t, size_t>>> keys;
        for (size_t l : g)
          for (size_t i = 0; i < sizes[l]; ++i) keys.push_back({key_of(host[l][i]), {l, i}});
        std::sort(keys.begin(), keys.end());
        size_t total = keys.size();
        const uint64_t count = static_cast<uint64_t>(std::floor(sparsity * total + 0.5));
        for (uint64_t c = 0; c < count; ++c) want[keys[c].second.first][keys[c].second.second] = 0.f;
        want_zeroed += count;
        if (count < total && !per_layer) {
          const uint32_t key = keys[count].first;
          CHECK(cuts[0].threshold_key == key, "global cut key %u want %u (sparsity %g)", cuts[0].threshold_key, key, sparsity);
        }
      }
      CHECK(zeroed == want_zeroed, "zeroed %llu want %llu (sparsity %g per_layer %d)", (unsigned long long)zeroed,
            (unsigned long long)want_zeroed, sparsity, per_layer);
      uint64_t pruned = 0;
      for (const auto& c : cuts) pruned += c.pruned;
      CHECK(pruned == want_zeroed, "cuts report %llu pruned, want %llu", (unsigned long long)pruned, (unsigned long long)want_zeroed);
      for (size_t l = 0; l < sizes.size(); ++l) {
        const auto got = to_host<float>(dev[l], sizes[l], s);
        CHECK(std::memcmp(got.data(), want[l].data(), sizes[l] * 4) == 0, "masked layer%zu differs (sparsity %g per_layer %d)",
              l, sparsity, per_layer);
      }
    }
  // NaN is reported with its array and index, as on the CPU.
  auto v = random_floats(100000);
  v[77777] = std::numeric_limits<float>::quiet_NaN();
  DeviceBuffer d = to_device(v, s);
  std::string message;
  try {
    umbra::SelectOptions o;
    o.sparsity = 0.5;
    threshold_select_f32_cuda({{d.as<float>(), v.size(), "fc1"}}, o, s);
  } catch (const std::domain_error& e) {
    message = e.what();
  }
  CHECK(message.find("\"fc1\"") != std::string::npos && message.find("77777") != std::string::npos, "NaN message: %s",
        message.c_str());
}

void test_errors(Stream& s) {
  std::string message;
  try {
    DeviceBuffer huge(s.device(), size_t(1) << 60);
  } catch (const CudaError& e) {
    message = e.what();
  }
  CHECK(message.find("cudaMalloc") != std::string::npos && message.find("device.cu:") != std::string::npos,
        "a failed allocation names the call and line: %s", message.c_str());
  // The runtime is still usable afterwards.
  DeviceBuffer ok(s.device(), 1024);
  CHECK(ok.data() != nullptr, "allocation after a failure");
}

}  // namespace

int main() {
  const Availability a = cuda_availability();
  if (!a.available) {
    std::printf("SKIP: no CUDA device: %s (runtime %d, driver %d)\n", a.reason.c_str(), a.runtime_version, a.driver_version);
    return 0;
  }
  const auto devices = cuda_devices();
  std::printf("device 0: %s (sm_%d%d, %d SMs)\n", devices[0].name.c_str(), devices[0].major, devices[0].minor,
              devices[0].multiprocessors);
  const BlasLtInfo& lt = cublaslt_info();
  std::printf("cuBLASLt: %s\n", lt.found ? (lt.path + " (" + std::to_string(lt.version) + "): its GEMMs are checked too").c_str()
                                          : ("none (" + lt.reason + "): Umbra's kernels only").c_str());
  try {
    Stream s(0);
    test_gemm(s);
    test_spmm(s);
    test_elementwise(s);
    test_prune(s);
    test_errors(s);
  } catch (const std::exception& e) {
    std::printf("FAIL: uncaught %s\n", e.what());
    return 1;
  }
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

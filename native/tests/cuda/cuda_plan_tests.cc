// Standalone tests of device-resident layer chains and CUDA graphs (no Node.js): a Plan's output
// against a plain C++ reference of the same chain, for batch sizes that run directly, capture a
// graph, replay it, outgrow the buffers and recapture; outputs poisoned with NaN first, NaN never
// passes. Without a usable device it prints the reason and exits 0 (a skip).
//   cmake -S . -B build-tests -DUMBRA_BUILD_CUDA_TESTS=ON && cmake --build build-tests && ./build-tests/umbra_cuda_plan_tests
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_graph.cuh"
#include "device.cuh"
#include "plan.cuh"
#include "spmm.cuh"

using namespace umbra::cuda;

namespace {

int g_failures = 0, g_checks = 0;
#define CHECK(cond, ...)                                \
  do {                                                  \
    ++g_checks;                                         \
    if (!(cond)) {                                      \
      ++g_failures;                                     \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);  \
      std::printf(__VA_ARGS__);                         \
      std::printf("\n");                                \
    }                                                   \
  } while (0)

std::mt19937 g_rng(20240612);
std::vector<float> random_floats(size_t n, float scale = 1.f) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = d(g_rng) * scale;
    if (x == 0.f) x = 0.5f * scale;
  }
  return v;
}

template <typename T>
DeviceBuffer to_device(const std::vector<T>& v, Stream& s) {
  DeviceBuffer b(s.device(), std::max<size_t>(1, v.size()) * sizeof(T));
  s.stage_upload(b.data(), v.data(), v.size() * sizeof(T));
  s.finish();
  return b;
}

// A 3-layer chain: dense [k0 -> h] + bias + relu, sparse [h -> h2] + bias + tanh, dense [h2 -> n]
// (kxn layout) then softmax; the reference runs it in double.
struct Chain {
  size_t k0 = 37, h = 130, h2 = 67, n = 11;
  std::vector<float> w1, b1, w2dense, b2, w3;
  std::vector<int32_t> row_ptr, col_idx;
  std::vector<float> values;
  DeviceBuffer dw1, db1, drow, dcol, dval, db2, dw3;

  explicit Chain(Stream& s) {
    w1 = random_floats(h * k0), b1 = random_floats(h), b2 = random_floats(h2), w3 = random_floats(h2 * n);
    w2dense = random_floats(h2 * h);
    std::uniform_real_distribution<double> u(0, 1);
    row_ptr.push_back(0);
    for (size_t r = 0; r < h2; ++r) {
      for (size_t c = 0; c < h; ++c) {
        if (u(g_rng) < 0.8) {
          w2dense[r * h + c] = 0.f;
        } else {
          col_idx.push_back(static_cast<int32_t>(c));
          values.push_back(w2dense[r * h + c]);
        }
      }
      row_ptr.push_back(static_cast<int32_t>(col_idx.size()));
    }
    dw1 = to_device(w1, s), db1 = to_device(b1, s), drow = to_device(row_ptr, s), dcol = to_device(col_idx, s);
    dval = to_device(values, s), db2 = to_device(b2, s), dw3 = to_device(w3, s);
  }

  std::vector<PlanOp> ops() const {
    PlanOp a;
    a.kind = PlanOp::Kind::dense, a.weights = dw1.as<float>(), a.w_n_by_k = true, a.bias = db1.as<float>(), a.k = k0, a.n = h;
    a.activation = 1;
    PlanOp b;
    b.kind = PlanOp::Kind::sparse, b.csr.row_ptr = drow.as<int32_t>(), b.csr.col_idx = dcol.as<int32_t>();
    b.csr.values = dval.as<float>(), b.csr.rows = h2, b.csr.cols = h, b.csr.nnz = values.size();
    b.bias = db2.as<float>(), b.k = h, b.n = h2, b.activation = 3;
    PlanOp c;
    c.kind = PlanOp::Kind::dense, c.weights = dw3.as<float>(), c.w_n_by_k = false, c.k = h2, c.n = n;
    PlanOp d;
    d.kind = PlanOp::Kind::softmax;
    return {a, b, c, d};
  }

  std::vector<double> reference(const std::vector<float>& x, size_t m) const {
    std::vector<double> out(m * n);
    for (size_t i = 0; i < m; ++i) {
      std::vector<double> a(h), b(h2), c(n);
      for (size_t j = 0; j < h; ++j) {
        double sum = b1[j];
        for (size_t p = 0; p < k0; ++p) sum += double(x[i * k0 + p]) * w1[j * k0 + p];
        a[j] = sum < 0 ? 0 : sum;
      }
      for (size_t j = 0; j < h2; ++j) {
        double sum = b2[j];
        for (size_t p = 0; p < h; ++p) sum += a[p] * w2dense[j * h + p];
        b[j] = std::tanh(sum);
      }
      double mx = -INFINITY, total = 0;
      for (size_t j = 0; j < n; ++j) {
        double sum = 0;
        for (size_t p = 0; p < h2; ++p) sum += b[p] * w3[p * n + j];
        c[j] = sum;
        mx = std::max(mx, sum);
      }
      for (size_t j = 0; j < n; ++j) total += std::exp(c[j] - mx);
      for (size_t j = 0; j < n; ++j) out[i * n + j] = std::exp(c[j] - mx) / total;
    }
    return out;
  }
};

void check_run(Plan& plan, const Chain& chain, size_t m, const char* what) {
  const auto x = random_floats(m * chain.k0);
  std::vector<float> y(m * chain.n, std::numeric_limits<float>::quiet_NaN());
  plan.run(x.data(), y.data(), m);
  const auto want = chain.reference(x, m);
  int bad = 0;
  for (size_t i = 0; i < y.size(); ++i)
    if (!(std::isfinite(y[i]) && std::fabs(y[i] - want[i]) <= 1e-5 + 1e-4 * std::fabs(want[i]))) ++bad;
  CHECK(bad == 0, "%s: batch %zu: %d of %zu outputs off", what, m, bad, y.size());
}

void test_plan(const std::shared_ptr<Stream>& s) {
  Chain chain(*s);
  Plan plan(s, chain.ops(), chain.k0, PlanOptions{});
  CHECK(plan.input_width() == chain.k0 && plan.output_width() == chain.n, "plan widths");
  check_run(plan, chain, 3, "first run (direct, then captured)");
  CHECK(plan.stats().graphs == 1 && plan.stats().replays == 0, "batch 3 captured once, not yet replayed");
  check_run(plan, chain, 3, "replay");
  check_run(plan, chain, 3, "replay again");
  CHECK(plan.stats().replays == 2, "two replays, got %llu", static_cast<unsigned long long>(plan.stats().replays));
  {
    const auto st = plan.stats();
    CHECK(st.device_us > 0 && st.stage_in_us > 0 && st.launch_us > 0 && st.stage_out_us > 0 && st.lock_us >= 0,
          "every stage of the runs is timed (device %.1f us, stage in %.1f, launch %.1f, stage out %.1f)", st.device_us, st.stage_in_us,
          st.launch_us, st.stage_out_us);
    CHECK(st.capture_us > 0, "the capture of batch 3 is timed");
  }
  check_run(plan, chain, 1, "batch 1");
  check_run(plan, chain, 1, "batch 1 replay");
  check_run(plan, chain, 200, "above graph_max_rows: direct, buffers grow");
  CHECK(plan.stats().graphs == 0, "growing the buffers drops the graphs");
  check_run(plan, chain, 3, "batch 3 after growth");
  check_run(plan, chain, 3, "batch 3 recaptured and replayed");
  CHECK(plan.stats().replays == 4, "replays after recapture, got %llu", static_cast<unsigned long long>(plan.stats().replays));
  CHECK(plan.stats().device_bytes >= 2 * 200 * chain.h * sizeof(float), "activations accounted");

  // Another plan on the same stream grows the kernels' shared workspace (split-K of a deep GEMM
  // at a small batch): the first plan's graphs hold the old address and must be recaptured.
  const uint64_t before = s->scratch_generation();
  const size_t deep_k = 16384, deep_n = 64;
  const auto wd = random_floats(deep_k * deep_n);
  DeviceBuffer dwd = to_device(wd, *s);
  PlanOp deep;
  deep.kind = PlanOp::Kind::dense, deep.weights = dwd.as<float>(), deep.w_n_by_k = true, deep.k = deep_k, deep.n = deep_n;
  Plan other(s, {deep}, deep_k, PlanOptions{});
  const auto xd = random_floats(2 * deep_k);
  std::vector<float> yd(2 * deep_n, std::numeric_limits<float>::quiet_NaN());
  other.run(xd.data(), yd.data(), 2);
  bool finite = true;
  for (float v : yd) finite = finite && std::isfinite(v);
  CHECK(finite, "the deep plan's output is finite");
  if (s->scratch_generation() == before) std::printf("note: the deep GEMM did not grow the workspace on this device\n");
  check_run(plan, chain, 3, "batch 3 after another plan grew the workspace");
  check_run(plan, chain, 3, "batch 3 replayed at the new workspace");

  PlanOptions no_graphs;
  no_graphs.graph_max_rows = 0;
  Plan direct(s, chain.ops(), chain.k0, no_graphs);
  check_run(direct, chain, 3, "graphs off");
  check_run(direct, chain, 3, "graphs off again");
  CHECK(direct.stats().graphs == 0 && direct.stats().replays == 0, "graphs off captures nothing");
}

void test_plan_errors(const std::shared_ptr<Stream>& s) {
  Chain chain(*s);
  auto ops = chain.ops();
  std::string message;
  try {
    Plan bad(s, ops, chain.k0 + 1, PlanOptions{});
  } catch (const std::invalid_argument& e) {
    message = e.what();
  }
  CHECK(message.find("op 0 reads rows of 37 values") != std::string::npos, "a width mismatch is named: %s", message.c_str());
  // A capture of work that synchronizes fails cleanly and leaves the stream usable.
  CapturedGraph graph;
  const bool captured = graph.capture(*s, [&] { s->synchronize(); });
  CHECK(!captured && graph.empty(), "capturing a synchronize is refused");
  Plan plan(s, ops, chain.k0, PlanOptions{});
  check_run(plan, chain, 5, "the stream works after a refused capture");
}

}  // namespace

int main() {
  const Availability a = cuda_availability();
  if (!a.available) {
    std::printf("SKIP: no CUDA device: %s (runtime %d, driver %d)\n", a.reason.c_str(), a.runtime_version, a.driver_version);
    return 0;
  }
  try {
    auto s = std::make_shared<Stream>(0);
    test_plan(s);
    test_plan_errors(s);
  } catch (const std::exception& e) {
    std::printf("FAIL: uncaught %s\n", e.what());
    return 1;
  }
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

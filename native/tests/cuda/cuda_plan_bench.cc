// GPU benchmark of the native backend's device chains (no Node.js): an MLP of `layers` dense
// layers (bias + relu fused, softmax last) run through one Plan per configuration, host wall time
// per batch including the upload and download, CUDA graph replay against direct launches of the
// same plan in the same run. One JSON object per line on stdout.
//   ./umbra_cuda_plan_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "device.cuh"
#include "plan.cuh"

using namespace umbra::cuda;

namespace {

DeviceBuffer random_device(size_t n, Stream& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-0.05f, 0.05f);
  std::vector<float> host(n);
  for (auto& v : host) v = d(rng);
  DeviceBuffer b(s.device(), n * sizeof(float));
  s.stage_upload(b.data(), host.data(), n * sizeof(float));
  s.finish();
  return b;
}

// Median microseconds per Plan::run over 5 trials of `reps` runs, after a warm-up that also
// captures the graph where the plan takes one.
double run_us(Plan& plan, const std::vector<float>& x, std::vector<float>& y, size_t m, int reps) {
  for (int i = 0; i < 3; ++i) plan.run(x.data(), y.data(), m);
  std::vector<double> trials;
  for (int t = 0; t < 5; ++t) {
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) plan.run(x.data(), y.data(), m);
    const std::chrono::duration<double, std::micro> spent = std::chrono::steady_clock::now() - start;
    trials.push_back(spent.count() / reps);
  }
  std::sort(trials.begin(), trials.end());
  return trials[2];
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const Availability a = cuda_availability();
  if (!a.available) {
    std::printf("{\"skip\": \"no CUDA device: %s\"}\n", a.reason.c_str());
    return 0;
  }
  try {
    auto s = std::make_shared<Stream>(0);
    const auto devices = cuda_devices();
    std::printf("{\"device\": \"%s\", \"sm\": \"%d.%d\"}\n", devices[0].name.c_str(), devices[0].major, devices[0].minor);
    const int reps = quick ? 50 : 500;
    for (const size_t width : {size_t(256), size_t(1024), size_t(4096)}) {
      const size_t layers = 4;
      std::vector<DeviceBuffer> weights, biases;
      std::vector<PlanOp> ops;
      for (size_t l = 0; l < layers; ++l) {
        weights.push_back(random_device(width * width, *s, 10 + static_cast<unsigned>(l)));
        biases.push_back(random_device(width, *s, 20 + static_cast<unsigned>(l)));
        PlanOp op;
        op.kind = PlanOp::Kind::dense, op.weights = weights.back().as<float>(), op.w_n_by_k = true;
        op.bias = biases.back().as<float>(), op.k = width, op.n = width, op.activation = l + 1 < layers ? 1 : 0;
        ops.push_back(op);
      }
      PlanOp softmax;
      softmax.kind = PlanOp::Kind::softmax;
      ops.push_back(softmax);
      PlanOptions with_graphs, without;
      with_graphs.graph_max_rows = 1 << 20;
      without.graph_max_rows = 0;
      Plan graphed(s, ops, width, with_graphs), direct(s, ops, width, without);
      for (const size_t batch : {size_t(1), size_t(8), size_t(64), size_t(512)}) {
        std::vector<float> x(batch * width, 0.25f), y(batch * width);
        const double g = run_us(graphed, x, y, batch, reps), d = run_us(direct, x, y, batch, reps);
        std::printf("{\"op\": \"plan\", \"layers\": %zu, \"width\": %zu, \"batch\": %zu, \"graph_us\": %.2f, \"direct_us\": %.2f, "
                    "\"direct_over_graph\": %.3f}\n",
                    layers, width, batch, g, d, d / g);
      }
    }
  } catch (const std::exception& e) {
    std::printf("{\"error\": \"%s\"}\n", e.what());
    return 1;
  }
  return 0;
}

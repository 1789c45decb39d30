#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda_check.cuh"
#include "elementwise.cuh"
#include "plan.cuh"
#include "softmax.cuh"

namespace umbra::cuda {

Plan::Plan(std::shared_ptr<Stream> stream, std::vector<PlanOp> ops, size_t input_width, PlanOptions options)
    : stream_(std::move(stream)), ops_(std::move(ops)), input_width_(input_width), options_(options) {
  if (!stream_) throw std::invalid_argument("Plan: a stream is required");
  size_t width = input_width;
  max_width_ = width;
  for (size_t i = 0; i < ops_.size(); ++i) {
    const PlanOp& op = ops_[i];
    const std::string where = "Plan: op " + std::to_string(i);
    if (op.activation < 0 || op.activation > 4) throw std::invalid_argument(where + ": activation must be 0..4");
    if (op.kind == PlanOp::Kind::dense || op.kind == PlanOp::Kind::sparse) {
      if (op.k != width)
        throw std::invalid_argument(where + " reads rows of " + std::to_string(op.k) + " values but the op before it leaves " +
                                    std::to_string(width));
      if (op.kind == PlanOp::Kind::dense && op.weights == nullptr && op.k * op.n > 0)
        throw std::invalid_argument(where + ": dense weights are missing");
      if (op.kind == PlanOp::Kind::sparse && (op.csr.rows != op.n || op.csr.cols != op.k))
        throw std::invalid_argument(where + ": the CSR shape is not [n, k]");
      width = op.n;
    } else if (op.kind != PlanOp::Kind::softmax && op.kind != PlanOp::Kind::activation) {
      throw std::invalid_argument(where + ": unknown kind");
    }
    max_width_ = std::max(max_width_, width);
  }
  output_width_ = width;
}

Plan::~Plan() {
  // Graphs and buffers go with the members; make sure none is still in use by queued work.
  if (stream_) cudaStreamSynchronize(static_cast<cudaStream_t>(stream_->native()));
}

PlanStats Plan::stats() const {
  auto lock = stream_->lock();  // a run on another thread may be changing the graphs
  PlanStats s;
  for (const auto& [rows, graph] : graphs_) s.graphs += graph.empty() ? 0 : 1;
  s.replays = replays_;
  s.runs = runs_;
  s.device_bytes = ping_.bytes() + pong_.bytes();
  s.lock_us = lock_us_, s.stage_in_us = stage_in_us_, s.launch_us = launch_us_;
  s.device_us = device_us_, s.stage_out_us = stage_out_us_, s.capture_us = capture_us_;
  return s;
}

void Plan::reserve(size_t m) {
  if (m <= capacity_rows_) return;
  // Grow by half again at least, so rising batch sizes do not reallocate (and recapture) each time.
  const size_t rows = std::max(m, capacity_rows_ + capacity_rows_ / 2);
  const size_t width = std::max<size_t>(1, max_width_);
  if (rows * width > 2147483647u) throw std::invalid_argument("Plan: a batch of " + std::to_string(m) + " rows of up to " +
                                                              std::to_string(width) + " values exceeds 2^31 elements");
  graphs_.clear();  // they hold the old addresses
  ping_ = DeviceBuffer();
  pong_ = DeviceBuffer();
  ping_ = DeviceBuffer(stream_->device(), rows * width * sizeof(float));
  pong_ = DeviceBuffer(stream_->device(), rows * width * sizeof(float));
  host_in_ = PinnedBuffer(std::max<size_t>(1, rows * input_width_) * sizeof(float));
  host_out_ = PinnedBuffer(std::max<size_t>(1, rows * output_width_) * sizeof(float));
  capacity_rows_ = rows;
}

void Plan::enqueue(size_t m) {
  const auto s = static_cast<cudaStream_t>(stream_->native());
  float* cur = ping_.as<float>();
  float* next = pong_.as<float>();
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(cur, host_in_.as<float>(), m * input_width_ * sizeof(float), cudaMemcpyHostToDevice, s));
  size_t width = input_width_;
  for (const PlanOp& op : ops_) {
    switch (op.kind) {
      case PlanOp::Kind::dense: {
        GemmCudaArgs g;
        g.x = cur, g.w = op.weights, g.bias = op.bias, g.y = next;
        g.m = m, g.k = op.k, g.n = op.n, g.w_n_by_k = op.w_n_by_k, g.activation = op.activation, g.precision = op.precision;
        gemm_f32_cuda(g, *stream_);
        std::swap(cur, next);
        width = op.n;
        break;
      }
      case PlanOp::Kind::sparse: {
        SpmmCudaArgs a;
        a.x = cur, a.w = op.csr, a.bias = op.bias, a.y = next, a.m = m, a.activation = op.activation;
        spmm_csr_f32_cuda(a, *stream_);
        std::swap(cur, next);
        width = op.n;
        break;
      }
      case PlanOp::Kind::softmax:
        softmax_f32_cuda(cur, m, width, *stream_);
        break;
      case PlanOp::Kind::activation:
        bias_activation_f32_cuda(cur, m, width, nullptr, op.activation, *stream_);
        break;
    }
  }
  UMBRA_CUDA_CHECK(cudaMemcpyAsync(host_out_.as<float>(), cur, m * width * sizeof(float), cudaMemcpyDeviceToHost, s));
}

namespace {

using Clock = std::chrono::steady_clock;

// Microseconds from `since` to now, and moves `since` to now.
double lap(Clock::time_point& since) {
  const auto now = Clock::now();
  const double us = std::chrono::duration<double, std::micro>(now - since).count();
  since = now;
  return us;
}

}  // namespace

void Plan::run(const float* x, float* y, size_t m) {
  if (m == 0) return;
  if (x == nullptr && input_width_ > 0) throw std::invalid_argument("Plan::run: x is missing");
  if (y == nullptr && output_width_ > 0) throw std::invalid_argument("Plan::run: y is missing");
  auto t = Clock::now();
  auto lock = stream_->lock();
  lock_us_ += lap(t);
  stream_->activate();
  reserve(m);
  ++runs_;
  std::memcpy(host_in_.as<float>(), x, m * input_width_ * sizeof(float));
  stage_in_us_ += lap(t);
  const bool graphable = m <= options_.graph_max_rows;
  if (graphable && graphs_generation_ != stream_->scratch_generation()) {
    // Another plan on this stream grew the kernels' shared workspace: captured addresses are stale.
    graphs_.clear();
    graphs_generation_ = stream_->scratch_generation();
  }
  const auto found = graphable ? graphs_.find(m) : graphs_.end();
  if (found != graphs_.end() && !found->second.empty()) {
    found->second.launch(*stream_);
    ++replays_;
  } else {
    // Direct launches; the first run of a batch size also sizes the shared workspace, so that
    // the capture below allocates nothing.
    enqueue(m);
  }
  launch_us_ += lap(t);
  stream_->synchronize();
  device_us_ += lap(t);
  std::memcpy(y, host_out_.as<float>(), m * output_width_ * sizeof(float));
  stage_out_us_ += lap(t);
  if (graphable && found == graphs_.end() && graphs_.size() < options_.graph_max_sizes &&
      graphs_generation_ == stream_->scratch_generation()) {
    CapturedGraph graph;
    graph.capture(*stream_, [&] { enqueue(m); });
    // The capture only records; a size that could not be captured keeps running directly.
    graphs_.emplace(m, std::move(graph));
    capture_us_ += lap(t);
  } else if (graphable && graphs_generation_ != stream_->scratch_generation()) {
    graphs_.clear();
    graphs_generation_ = stream_->scratch_generation();
  }
}

}  // namespace umbra::cuda

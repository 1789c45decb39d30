// A chain of layers that runs on the device from one upload of its input to one download of its
// output: dense GEMM and CSR SpMM (bias and activation fused), softmax over rows, activation in
// place, each op reading the previous one's output. The native backend on a GPU
// (src/graph/cuda-executor.ts) builds one Plan per chain of its compiled graph. Batches of up to
// graph_max_rows rows replay a CUDA graph captured once per batch size, so a small batch pays one
// launch instead of one per kernel. Plain C++ so the binding may include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "cuda_graph.cuh"
#include "device.cuh"
#include "gemm.cuh"
#include "spmm.cuh"

namespace umbra::cuda {

struct PlanOp {
  enum class Kind { dense, sparse, softmax, activation } kind = Kind::dense;
  const float* weights = nullptr;  // dense: [N,K] (w_n_by_k) or [K,N], device
  bool w_n_by_k = true;
  CsrDevice csr;  // sparse: rows = N, cols = K
  const float* bias = nullptr;  // dense / sparse: [N] device or null
  size_t k = 0, n = 0;  // dense / sparse
  int activation = 0;  // dense / sparse epilogue, or the activation op's function
  GemmPrecision precision = GemmPrecision::fp32;
};

struct PlanOptions {
  size_t graph_max_rows = 64;  // 0: never capture
  size_t graph_max_sizes = 64;  // distinct batch sizes kept captured
};

struct PlanStats {
  size_t graphs = 0;  // batch sizes with a captured graph
  uint64_t replays = 0;  // runs that replayed one
  uint64_t runs = 0;
  size_t device_bytes = 0;  // activations (the weights belong to the caller)
  // Where the runs' host time went, in microseconds summed over runs (steady clock, no device
  // events, so graph replays are timed as they run): waiting for the stream's lock, copying the
  // batch into the pinned staging buffer, launching (a graph replay or direct launches), waiting for
  // the device (copies up and down and every kernel), copying the answer out, capturing graphs.
  double lock_us = 0, stage_in_us = 0, launch_us = 0, device_us = 0, stage_out_us = 0, capture_us = 0;
};

class Plan {
 public:
  // Checks the chain: each dense/sparse op's k equals the width before it (input_width for the
  // first). Allocates nothing until the first run. Throws std::invalid_argument.
  Plan(std::shared_ptr<Stream> stream, std::vector<PlanOp> ops, size_t input_width, PlanOptions options);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  size_t input_width() const { return input_width_; }
  size_t output_width() const { return output_width_; }
  // y[m, output_width] = chain(x[m, input_width]), host arrays. Blocks until y is written (holds
  // the stream's lock meanwhile). Throws std::invalid_argument or CudaError.
  void run(const float* x, float* y, size_t m);
  PlanStats stats() const;  // waits for a run in progress on another thread

 private:
  void reserve(size_t m);
  void enqueue(size_t m);

  std::shared_ptr<Stream> stream_;
  std::vector<PlanOp> ops_;
  size_t input_width_ = 0, output_width_ = 0, max_width_ = 0;
  PlanOptions options_;
  size_t capacity_rows_ = 0;
  DeviceBuffer ping_, pong_;
  PinnedBuffer host_in_, host_out_;
  // Per batch size; an empty graph marks a size that could not be captured (not tried again).
  std::map<size_t, CapturedGraph> graphs_;
  uint64_t graphs_generation_ = 0;  // the stream's scratch generation the graphs were captured at
  uint64_t runs_ = 0, replays_ = 0;
  double lock_us_ = 0, stage_in_us_ = 0, launch_us_ = 0, device_us_ = 0, stage_out_us_ = 0, capture_us_ = 0;
};

}  // namespace umbra::cuda

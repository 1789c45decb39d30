// CUDA graphs: the launches one function enqueues on a stream, recorded once and replayed with a
// single cudaGraphLaunch. Worth it where launch overhead dominates (small batches through many
// layers). Plain C++ so the binding may include it; every CUDA call is checked (CudaError).
#pragma once

#include <functional>

#include "device.cuh"

namespace umbra::cuda {

class CapturedGraph {
 public:
  CapturedGraph() = default;
  ~CapturedGraph();
  CapturedGraph(CapturedGraph&& other) noexcept;
  CapturedGraph& operator=(CapturedGraph&& other) noexcept;
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Records what `enqueue` puts on `stream` (nothing runs). Returns false, leaving this empty and
  // the stream usable, when the work cannot be captured (it synchronizes or allocates: the CUDA
  // error says so); rethrows anything `enqueue` throws that is not a CudaError. Blocks briefly.
  bool capture(Stream& stream, const std::function<void()>& enqueue);
  // Enqueues the recorded work on `stream` and returns. Throws CudaError.
  void launch(Stream& stream) const;
  bool empty() const { return exec_ == nullptr; }
  void reset();  // never throws

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
};

}  // namespace umbra::cuda

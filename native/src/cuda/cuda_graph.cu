#include <cuda_runtime.h>

#include <utility>

#include "cuda_check.cuh"
#include "cuda_graph.cuh"

namespace umbra::cuda {

CapturedGraph::~CapturedGraph() { reset(); }

CapturedGraph::CapturedGraph(CapturedGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

CapturedGraph& CapturedGraph::operator=(CapturedGraph&& other) noexcept {
  if (this != &other) {
    reset();
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void CapturedGraph::reset() {
  if (exec_ != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  exec_ = nullptr;
}

bool CapturedGraph::capture(Stream& stream, const std::function<void()>& enqueue) {
  reset();
  stream.activate();
  const auto s = static_cast<cudaStream_t>(stream.native());
  // Thread-local mode: other workers' threads keep allocating and synchronizing freely, while a
  // forbidden call on this thread fails (and is reported) instead of corrupting the capture.
  UMBRA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  bool recorded = true;
  try {
    enqueue();
  } catch (const CudaError&) {
    recorded = false;
  } catch (...) {
    cudaGraph_t partial = nullptr;
    if (cudaStreamEndCapture(s, &partial) == cudaSuccess && partial != nullptr) cudaGraphDestroy(partial);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(s, &graph);
  if (!recorded || ended != cudaSuccess || graph == nullptr) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();  // capture errors are not sticky; clear them so later calls see their own
    return false;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check_cuda(made, "cudaGraphInstantiate(&exec, graph, 0)", __FILE__, __LINE__);
  exec_ = exec;
  return true;
}

void CapturedGraph::launch(Stream& stream) const {
  if (exec_ == nullptr) throw CudaError("CapturedGraph::launch: nothing was captured");
  stream.activate();
  UMBRA_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream.native())));
}

}  // namespace umbra::cuda

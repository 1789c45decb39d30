// cuBLASLt at run time (see cublaslt.cuh). The few entry points and constants used are declared
// here from the library's documented C API (cublasLt.h); the values are the ABI and must not change.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <glob.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "cublaslt.cuh"
#include "elementwise.cuh"

namespace umbra::cuda {
namespace {

// cublasLt.h / library_types.h values this file uses.
constexpr int kStatusSuccess = 0;
constexpr int kR32F = 0;  // CUDA_R_32F
constexpr int kCompute32F = 68;  // CUBLAS_COMPUTE_32F
constexpr int kCompute32FFastTf32 = 77;  // CUBLAS_COMPUTE_32F_FAST_TF32
constexpr int kOpN = 0, kOpT = 1;  // cublasOperation_t
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;  // cublasLtMatmulDescAttributes_t
constexpr int kPrefMaxWorkspaceBytes = 1;  // cublasLtMatmulPreferenceAttributes_t
constexpr uint32_t kEpilogueDefault = 1, kEpilogueRelu = 2, kEpilogueBias = 4, kEpilogueReluBias = 6;  // cublasLtEpilogue_t

struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspace_size;
  int state;
  float waves_count;
  int reserved[4];
};

using Create = int (*)(void**);
using GetVersion = size_t (*)();
using DescCreate = int (*)(void**, int, int);
using DescSet = int (*)(void*, int, const void*, size_t);
using Destroy = int (*)(void*);
using LayoutCreate = int (*)(void**, int, uint64_t, uint64_t, int64_t);
using PrefCreate = int (*)(void**);
using PrefSet = int (*)(void*, int, const void*, size_t);
using Heuristic = int (*)(void*, void*, void*, void*, void*, void*, void*, int, HeuristicResult*, int*);
using Matmul = int (*)(void*, void*, const void*, const void*, void*, const void*, void*, const void*, const void*, void*, void*,
                       void*, const Algo*, void*, size_t, cudaStream_t);

struct Api {
  Create create = nullptr;
  GetVersion get_version = nullptr;
  DescCreate desc_create = nullptr;
  DescSet desc_set = nullptr;
  Destroy desc_destroy = nullptr;
  LayoutCreate layout_create = nullptr;
  Destroy layout_destroy = nullptr;
  PrefCreate pref_create = nullptr;
  PrefSet pref_set = nullptr;
  Destroy pref_destroy = nullptr;
  Heuristic heuristic = nullptr;
  Matmul matmul = nullptr;
};

Api g_api;
BlasLtInfo g_info;
std::once_flag g_once;

template <typename F>
bool resolve(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

// Opens one candidate; on success fills g_api and g_info. A library without every entry point is closed again.
bool try_open(const std::string& candidate) {
  g_info.tried.push_back(candidate);
  void* lib = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return false;
  Api api;
  const bool all = resolve(lib, "cublasLtCreate", api.create) && resolve(lib, "cublasLtGetVersion", api.get_version) &&
                   resolve(lib, "cublasLtMatmulDescCreate", api.desc_create) &&
                   resolve(lib, "cublasLtMatmulDescSetAttribute", api.desc_set) &&
                   resolve(lib, "cublasLtMatmulDescDestroy", api.desc_destroy) &&
                   resolve(lib, "cublasLtMatrixLayoutCreate", api.layout_create) &&
                   resolve(lib, "cublasLtMatrixLayoutDestroy", api.layout_destroy) &&
                   resolve(lib, "cublasLtMatmulPreferenceCreate", api.pref_create) &&
                   resolve(lib, "cublasLtMatmulPreferenceSetAttribute", api.pref_set) &&
                   resolve(lib, "cublasLtMatmulPreferenceDestroy", api.pref_destroy) &&
                   resolve(lib, "cublasLtMatmulAlgoGetHeuristic", api.heuristic) && resolve(lib, "cublasLtMatmul", api.matmul);
  if (!all) {
    g_info.tried.back() += " (lacks cuBLASLt entry points)";
    dlclose(lib);
    return false;
  }
  g_api = api;
  g_info.found = true;
  char resolved[4096] = {0};
  // The file the loader chose (for a bare name, whatever LD_LIBRARY_PATH or ldconfig gave).
  Dl_info where{};
  if (dladdr(reinterpret_cast<void*>(api.matmul), &where) != 0 && where.dli_fname != nullptr) {
    g_info.path = where.dli_fname;
  } else {
    g_info.path = realpath(candidate.c_str(), resolved) ? resolved : candidate;
  }
  g_info.version = api.get_version();
  return true;
}

std::vector<std::string> globbed(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_BRACE | GLOB_NOSORT, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  // Newest major first: libcublasLt.so.13 before .so.12; a bare .so (a symlink) last.
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) { return a > b; });
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

void load() {
  const std::string off = env("UMBRA_CUBLASLT");
  if (off == "off" || off == "0" || off == "false") {
    g_info.reason = "turned off (UMBRA_CUBLASLT=" + off + ")";
    return;
  }
  const std::string explicit_path = env("UMBRA_CUBLASLT_PATH");
  if (!explicit_path.empty()) {
    if (!try_open(explicit_path)) g_info.reason = "UMBRA_CUBLASLT_PATH=" + explicit_path + " could not be loaded: " + (dlerror() ?: "no cuBLASLt entry points");
    return;  // an explicit choice is not second-guessed
  }
  for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) {
    if (try_open(name)) return;
  }
  std::vector<std::string> dirs;
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    const std::string root = env(var);
    if (!root.empty()) dirs.push_back(root + "/{lib64,lib,targets/*/lib}");
  }
  dirs.push_back("/usr/local/cuda/{lib64,targets/*/lib}");
  dirs.push_back("/usr/local/cuda-*/{lib64,targets/*/lib}");
  const std::string wheel = "nvidia/*/lib";  // nvidia-cublas-cu12 (nvidia/cublas/lib), CUDA 13 wheels (nvidia/cu13/lib)
  for (const char* var : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    const std::string root = env(var);
    if (!root.empty()) dirs.push_back(root + "/lib/python3*/site-packages/" + wheel);
  }
  // A virtual environment whose bin folder is on PATH (its python3 is the one users run), active or not.
  const std::string path = env("PATH");
  for (size_t start = 0; start <= path.size();) {
    const size_t end = std::min(path.find(':', start), path.size());
    const std::string dir = path.substr(start, end - start);
    if (dir.size() > 4 && dir.compare(dir.size() - 4, 4, "/bin") == 0) {
      const std::string root = dir.substr(0, dir.size() - 4);
      if (!globbed(root + "/lib/python3*/site-packages").empty()) dirs.push_back(root + "/lib/python3*/site-packages/" + wheel);
    }
    start = end + 1;
  }
  const std::string conda = env("CONDA_PREFIX");
  if (!conda.empty()) dirs.push_back(conda + "/lib");
  dirs.push_back("/usr/local/lib/python3*/{dist,site}-packages/" + wheel);
  dirs.push_back("/usr/lib/python3*/{dist,site}-packages/" + wheel);
  dirs.push_back("/usr/lib/python3/dist-packages/" + wheel);
  const std::string home = env("HOME");
  if (!home.empty()) dirs.push_back(home + "/.local/lib/python3*/site-packages/" + wheel);
  for (const std::string& dir : dirs) {
    const std::vector<std::string> files = globbed(dir + "/libcublasLt.so*");
    if (files.empty()) g_info.tried.push_back(dir + "/libcublasLt.so* (none)");
    for (const std::string& file : files) {
      if (try_open(file)) return;
    }
  }
  g_info.reason = "no cuBLASLt library found (set UMBRA_CUBLASLT_PATH, CUDA_HOME or LD_LIBRARY_PATH, or pip install nvidia-cublas)";
}

// One handle per device (cuBLASLt handles may be shared by threads).
void* handle_for(int device) {
  static std::mutex mutex;
  static std::map<int, void*> handles;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = handles.find(device);
  if (found != handles.end()) return found->second;
  void* handle = nullptr;
  if (g_api.create(&handle) != kStatusSuccess) handle = nullptr;
  handles.emplace(device, handle);
  return handle;
}

// Descriptors and the chosen algorithm per stream and shape. A stream is used by one thread at
// a time (its lock), so its entries' bias pointer may be set per call.
struct Setup {
  void* desc = nullptr;
  void* a = nullptr;
  void* b = nullptr;
  void* c = nullptr;
  Algo algo{};
  size_t workspace = 0;
  bool usable = false;
};
using SetupKey = std::tuple<const Stream*, int, size_t, size_t, size_t, bool, uint32_t, int>;

Setup make_setup(void* handle, const GemmCudaArgs& g, uint32_t epilogue, int compute) {
  Setup s;
  // Row-major Y[M,N] = X[M,K].W seen column-major: Y^T[N,M] = op(A)[N,K] . X^T[K,M].
  const int trans_a = g.w_n_by_k ? kOpT : kOpN;
  const int trans_b = kOpN;
  bool ok = g_api.desc_create(&s.desc, compute, kR32F) == kStatusSuccess;
  ok = ok && g_api.desc_set(s.desc, kDescTransA, &trans_a, sizeof(trans_a)) == kStatusSuccess;
  ok = ok && g_api.desc_set(s.desc, kDescTransB, &trans_b, sizeof(trans_b)) == kStatusSuccess;
  ok = ok && g_api.desc_set(s.desc, kDescEpilogue, &epilogue, sizeof(epilogue)) == kStatusSuccess;
  if (ok && g.bias != nullptr) ok = g_api.desc_set(s.desc, kDescBiasPointer, &g.bias, sizeof(g.bias)) == kStatusSuccess;
  // W [N,K] row-major is column-major [K,N] (ld K), used transposed; W [K,N] row-major is column-major [N,K] (ld N).
  ok = ok && (g.w_n_by_k ? g_api.layout_create(&s.a, kR32F, g.k, g.n, static_cast<int64_t>(g.k))
                         : g_api.layout_create(&s.a, kR32F, g.n, g.k, static_cast<int64_t>(g.n))) == kStatusSuccess;
  ok = ok && g_api.layout_create(&s.b, kR32F, g.k, g.m, static_cast<int64_t>(g.k)) == kStatusSuccess;
  ok = ok && g_api.layout_create(&s.c, kR32F, g.n, g.m, static_cast<int64_t>(g.n)) == kStatusSuccess;
  void* pref = nullptr;
  ok = ok && g_api.pref_create(&pref) == kStatusSuccess;
  const uint64_t max_workspace = kBlasWorkspaceBytes;
  ok = ok && g_api.pref_set(pref, kPrefMaxWorkspaceBytes, &max_workspace, sizeof(max_workspace)) == kStatusSuccess;
  HeuristicResult result{};
  int returned = 0;
  ok = ok && g_api.heuristic(handle, s.desc, s.a, s.b, s.c, s.c, pref, 1, &result, &returned) == kStatusSuccess && returned > 0;
  if (pref != nullptr) g_api.pref_destroy(pref);
  if (ok) {
    s.algo = result.algo;
    s.workspace = result.workspace_size;
    s.usable = true;
  }
  return s;
}

}  // namespace

const BlasLtInfo& cublaslt_info() {
  std::call_once(g_once, [] {
    dlerror();
    load();
  });
  return g_info;
}

bool cublaslt_gemm(const GemmCudaArgs& g, Stream& stream) {
  if (g.precision == GemmPrecision::bf16 || !cublaslt_info().found) return false;
  const int act = g.activation;
  const bool relu = act == 1;  // umbra::Activation::relu; the others run after, as the own kernels compute them
  const uint32_t epilogue = relu ? (g.bias ? kEpilogueReluBias : kEpilogueRelu) : (g.bias ? kEpilogueBias : kEpilogueDefault);
  const int compute = g.precision == GemmPrecision::tf32 ? kCompute32FFastTf32 : kCompute32F;
  stream.activate();
  void* handle = handle_for(stream.device());
  if (handle == nullptr) return false;
  static std::mutex mutex;
  static std::map<SetupKey, Setup> setups;
  Setup setup;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const SetupKey key{&stream, stream.device(), g.m, g.k, g.n, g.w_n_by_k, epilogue, compute};
    auto found = setups.find(key);
    if (found == setups.end()) found = setups.emplace(key, make_setup(handle, g, epilogue, compute)).first;
    setup = found->second;
  }
  if (!setup.usable) return false;
  if (g.bias != nullptr && g_api.desc_set(setup.desc, kDescBiasPointer, &g.bias, sizeof(g.bias)) != kStatusSuccess) return false;
  void* workspace = setup.workspace > 0 ? stream.scratch(kBlasWorkspaceSlot, setup.workspace) : nullptr;
  const float alpha = 1.0f, beta = 0.0f;
  const auto s = static_cast<cudaStream_t>(stream.native());
  const int status = g_api.matmul(handle, setup.desc, &alpha, g.w, setup.a, g.x, setup.b, &beta, g.y, setup.c, g.y, setup.c, &setup.algo,
                                  workspace, setup.workspace, s);
  if (status != kStatusSuccess) throw CudaError("cublasLtMatmul failed with status " + std::to_string(status));
  if (act != 0 && !relu) bias_activation_f32_cuda(g.y, g.m, g.n, nullptr, act, stream);
  return true;
}

}  // namespace umbra::cuda

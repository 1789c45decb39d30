// N-API entry points for the CUDA kernels. Weights live on the device in Resident handles
// (uploaded once, freed by cudaRelease or by the garbage collector, bytes accounted); each worker
// owns a Stream handle (a CUDA stream with pinned staging). Sync calls block the JS thread;
// *Async calls run on the libuv pool. Every CUDA failure is thrown as an Error naming the call,
// file and line (CudaError); bad arguments throw TypeError/RangeError; nothing aborts.
#include "cuda_binding.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "cuda_handles.h"

#ifdef UMBRA_WITH_CUDA
#include "cublaslt.cuh"
#include "device.cuh"
#include "elementwise.cuh"
#include "gemm.cuh"
#include "mask_apply.cuh"
#include "softmax.cuh"
#include "spmm.cuh"
#include "threshold_select.cuh"
#endif

namespace umbra_binding {
namespace {

#ifdef UMBRA_WITH_CUDA
using namespace cuda_handles;

int activation_at(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const size_t a = to_size(info, i, fn, "activation");
  if (a > 4) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": activation must be 0..4");
  return static_cast<int>(a);
}

template <typename T>
DeviceBuffer upload(int device, const T* data, size_t count) {
  DeviceBuffer buffer(device, count * sizeof(T));
  if (count > 0) {
    Stream s(device);
    s.stage_upload(buffer.data(), data, count * sizeof(T));
    s.finish();
  }
  return buffer;
}

Napi::Value Status(const Napi::CallbackInfo& info) {
  const auto a = umbra::cuda::cuda_availability();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("compiled", true);
  out.Set("available", a.available);
  out.Set("reason", a.available ? std::string() : "no CUDA device: " + a.reason);
  out.Set("deviceCount", a.device_count);
  out.Set("runtimeVersion", a.runtime_version);
  out.Set("driverVersion", a.driver_version);
  const auto& lt = umbra::cuda::cublaslt_info();
  Napi::Object blas = Napi::Object::New(info.Env());
  blas.Set("library", "cuBLASLt");
  blas.Set("found", lt.found);
  blas.Set("path", lt.path);
  blas.Set("version", Napi::Number::New(info.Env(), static_cast<double>(lt.version)));
  blas.Set("reason", lt.reason);
  Napi::Array tried = Napi::Array::New(info.Env(), lt.tried.size());
  for (size_t i = 0; i < lt.tried.size(); ++i) tried.Set(static_cast<uint32_t>(i), lt.tried[i]);
  blas.Set("tried", tried);
  out.Set("blas", blas);
  return out;
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const auto devices = umbra::cuda::cuda_devices();
    Napi::Array out = Napi::Array::New(info.Env(), devices.size());
    for (size_t i = 0; i < devices.size(); ++i) {
      const auto& d = devices[i];
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      o.Set("multiprocessors", d.multiprocessors);
      o.Set("totalMemory", static_cast<double>(d.total_memory));
      o.Set("freeMemory", static_cast<double>(d.free_memory));
      o.Set("l2Bytes", static_cast<double>(d.l2_bytes));
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  });
}

Napi::Value MemoryInUse(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(umbra::cuda::cuda_bytes_in_use()));
}

// (device) -> stream handle. Blocking.
Napi::Value CreateStream(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto box = std::make_unique<StreamBox>();
    box->value = std::make_shared<Stream>(device_at(info, 0, "cudaCreateStream"));
    return wrap(info.Env(), box.release(), kStreamTag);
  });
}

// (data: Float32Array, device) -> handle. Blocking.
Napi::Value UploadF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "cudaUploadF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 2, "expected 2 arguments");
    const Napi::Value v = info[0];
    const float* data = f32(env, v, 0, kName, "data");
    auto r = std::make_shared<Resident>();
    r->device = device_at(info, 1, kName);
    r->rows = v.As<Napi::Float32Array>().ElementLength();
    r->a = upload(r->device, data, r->rows);
    return wrap(env, new ResidentBox{r}, kResidentTag);
  });
}

// (w, k, n, layout 0 = [K,N] | 1 = [N,K], device) -> handle. Blocking.
Napi::Value UploadDense(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "cudaUploadDense";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 5, "expected 5 arguments");
    auto r = std::make_shared<Resident>();
    r->kind = Resident::dense;
    r->rows = to_size(info, 1, kName, "k");
    r->cols = to_size(info, 2, kName, "n");
    const size_t layout = to_size(info, 3, kName, "layout");
    UMBRA_THROW_IF(env, layout > 1, "layout must be 0 (KxN) or 1 (NxK)");
    r->n_by_k = layout == 1;
    r->device = device_at(info, 4, kName);
    const float* w = f32(env, info[0], r->rows * r->cols, kName, "w");
    r->a = upload(r->device, w, r->rows * r->cols);
    return wrap(env, new ResidentBox{r}, kResidentTag);
  });
}

// (rowPtr, colIdx, values, rows, cols, device) -> handle. Validates (and sorts a copy of) the
// CSR arrays on the host first. Blocking.
Napi::Value UploadCsr(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "cudaUploadCsr";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 6, "expected 6 arguments");
    auto r = std::make_shared<Resident>();
    r->kind = Resident::csr;
    r->rows = to_size(info, 3, kName, "rows");
    r->cols = to_size(info, 4, kName, "cols");
    r->device = device_at(info, 5, kName);
    const int32_t* row_ptr = i32(env, info[0], r->rows + 1, kName, "rowPtr");
    const int32_t last = row_ptr[r->rows];
    UMBRA_THROW_IF(env, last < 0, "rowPtr[rows] must be >= 0");
    r->nnz = static_cast<size_t>(last);
    const int32_t* col_idx = r->nnz > 0 ? i32(env, info[1], r->nnz, kName, "colIdx") : nullptr;
    const float* values = r->nnz > 0 ? f32(env, info[2], r->nnz, kName, "values") : nullptr;
    std::vector<int32_t> cols(col_idx, col_idx + r->nnz);
    std::vector<float> vals(values, values + r->nnz);
    umbra::cuda::csr_prepare_host(r->rows, r->cols, row_ptr, cols.data(), vals.data());
    r->a = upload(r->device, row_ptr, r->rows + 1);
    r->b = upload(r->device, cols.data(), r->nnz);
    r->c = upload(r->device, vals.data(), r->nnz);
    return wrap(env, new ResidentBox{r}, kResidentTag);
  });
}

// (handle) -> bytes it held. Frees now unless an async call still uses it (then when it ends).
Napi::Value Release(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto* box = unwrap<ResidentBox>(info, 0, kResidentTag, "cudaRelease", "handle");
    const double bytes = box->value ? static_cast<double>(box->value->bytes()) : 0.0;
    box->value.reset();
    return Napi::Number::New(info.Env(), bytes);
  });
}

Napi::Value HandleBytes(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto* box = unwrap<ResidentBox>(info, 0, kResidentTag, "cudaHandleBytes", "handle");
    return Napi::Number::New(info.Env(), box->value ? static_cast<double>(box->value->bytes()) : 0.0);
  });
}

struct GemmCall {
  std::shared_ptr<Stream> stream;
  std::shared_ptr<Resident> w, bias;
  const float* x;
  float* y;
  size_t m;
  int activation, precision;
  bool vendor = true;
  void run() const {
    auto lock = stream->lock();
    stream->activate();
    const size_t k = w->rows, n = w->cols;
    auto* dx = static_cast<float*>(stream->scratch(0, std::max<size_t>(1, m * k) * sizeof(float)));
    auto* dy = static_cast<float*>(stream->scratch(1, std::max<size_t>(1, m * n) * sizeof(float)));
    stream->stage_upload(dx, x, m * k * sizeof(float));
    umbra::cuda::GemmCudaArgs g;
    g.x = dx, g.w = w->a.as<float>(), g.bias = bias ? bias->a.as<float>() : nullptr, g.y = dy;
    g.m = m, g.k = k, g.n = n, g.w_n_by_k = w->n_by_k, g.activation = activation;
    g.precision = static_cast<umbra::cuda::GemmPrecision>(precision);
    g.vendor = vendor;
    umbra::cuda::gemm_f32_cuda(g, *stream);
    stream->stage_download(y, dy, m * n * sizeof(float));
    stream->finish();
  }
};

// (stream, x, weights, bias|null, y, m, activation, precision 0 fp32 | 1 tf32 | 2 bf16[, vendor])
// vendor (default true): cuBLASLt where loaded; false: Umbra's own kernels.
GemmCall gemm_call(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 8 && info.Length() != 9, "expected 8 or 9 arguments");
  GemmCall c;
  c.stream = stream_at(info, 0, kName);
  c.w = resident_at(info, 2, kName, "weights", Resident::dense);
  c.bias = resident_at(info, 3, kName, "bias", Resident::vector, true);
  UMBRA_THROW_IF(env, c.bias && c.bias->rows < c.w->cols, "bias has fewer than n elements");
  UMBRA_THROW_IF(env, c.w->device != c.stream->device() || (c.bias && c.bias->device != c.stream->device()),
                 "weights, bias and stream must be on the same device");
  c.m = to_size(info, 5, kName, "m");
  c.x = f32(env, info[1], c.m * c.w->rows, kName, "x");
  c.y = f32(env, info[4], c.m * c.w->cols, kName, "y");
  c.activation = activation_at(info, 6, kName);
  const size_t p = to_size(info, 7, kName, "precision");
  UMBRA_THROW_IF(env, p > 2, "precision must be 0 (fp32), 1 (tf32) or 2 (bf16)");
  c.precision = static_cast<int>(p);
  if (info.Length() == 9) {
    UMBRA_THROW_IF(env, !info[8].IsBoolean(), "vendor must be a boolean");
    c.vendor = info[8].As<Napi::Boolean>().Value();
  }
  return c;
}

Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    gemm_call(info, "cudaGemmF32").run();
    return info.Env().Undefined();
  });
}

Napi::Value GemmF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const GemmCall c = gemm_call(info, "cudaGemmF32Async");
    return queue(info.Env(), [c] { c.run(); }, [](Napi::Env env) { return env.Undefined(); }, {info[1], info[4]});
  });
}

struct SpmmCall {
  std::shared_ptr<Stream> stream;
  std::shared_ptr<Resident> w, bias;
  const float* x;
  float* y;
  size_t m;
  int activation;
  void run() const {
    auto lock = stream->lock();
    stream->activate();
    const size_t n = w->rows, k = w->cols;
    auto* dx = static_cast<float*>(stream->scratch(0, std::max<size_t>(1, m * k) * sizeof(float)));
    auto* dy = static_cast<float*>(stream->scratch(1, std::max<size_t>(1, m * n) * sizeof(float)));
    stream->stage_upload(dx, x, m * k * sizeof(float));
    umbra::cuda::SpmmCudaArgs a;
    a.x = dx, a.y = dy, a.m = m, a.activation = activation, a.bias = bias ? bias->a.as<float>() : nullptr;
    a.w.row_ptr = w->a.as<int32_t>(), a.w.col_idx = w->b.as<int32_t>(), a.w.values = w->c.as<float>();
    a.w.rows = n, a.w.cols = k, a.w.nnz = w->nnz;
    umbra::cuda::spmm_csr_f32_cuda(a, *stream);
    stream->stage_download(y, dy, m * n * sizeof(float));
    stream->finish();
  }
};

// (stream, x, csr, bias|null, y, m, activation)
SpmmCall spmm_call(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 7, "expected 7 arguments");
  SpmmCall c;
  c.stream = stream_at(info, 0, kName);
  c.w = resident_at(info, 2, kName, "weights", Resident::csr);
  c.bias = resident_at(info, 3, kName, "bias", Resident::vector, true);
  UMBRA_THROW_IF(env, c.bias && c.bias->rows < c.w->rows, "bias has fewer than n elements");
  UMBRA_THROW_IF(env, c.w->device != c.stream->device() || (c.bias && c.bias->device != c.stream->device()),
                 "weights, bias and stream must be on the same device");
  c.m = to_size(info, 5, kName, "m");
  c.x = f32(env, info[1], c.m * c.w->cols, kName, "x");
  c.y = f32(env, info[4], c.m * c.w->rows, kName, "y");
  c.activation = activation_at(info, 6, kName);
  return c;
}

Napi::Value SpmmCsrF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    spmm_call(info, "cudaSpmmCsrF32").run();
    return info.Env().Undefined();
  });
}

Napi::Value SpmmCsrF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const SpmmCall c = spmm_call(info, "cudaSpmmCsrF32Async");
    return queue(info.Env(), [c] { c.run(); }, [](Napi::Env env) { return env.Undefined(); }, {info[1], info[4]});
  });
}

// (stream, data, rows, cols, op: 0 softmax | 1 bias+activation, bias: Float32Array|null, activation)
// in place. Blocking; the data goes to the device and back.
Napi::Value Elementwise(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "cudaElementwiseF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 7, "expected 7 arguments");
    auto stream = stream_at(info, 0, kName);
    const size_t rows = to_size(info, 2, kName, "rows"), cols = to_size(info, 3, kName, "cols");
    const size_t op = to_size(info, 4, kName, "op");
    UMBRA_THROW_IF(env, op > 1, "op must be 0 (softmax) or 1 (bias + activation)");
    float* data = f32(env, info[1], rows * cols, kName, "data");
    const float* bias = f32(env, info[5], cols, kName, "bias", true);
    const int act = activation_at(info, 6, kName);
    auto lock = stream->lock();
    stream->activate();
    auto* dd = static_cast<float*>(stream->scratch(0, std::max<size_t>(1, rows * cols) * sizeof(float)));
    auto* db = static_cast<float*>(stream->scratch(1, std::max<size_t>(1, cols) * sizeof(float)));
    stream->stage_upload(dd, data, rows * cols * sizeof(float));
    if (op == 0) {
      umbra::cuda::softmax_f32_cuda(dd, rows, cols, *stream);
    } else {
      if (bias != nullptr) stream->stage_upload(db, bias, cols * sizeof(float));
      umbra::cuda::bias_activation_f32_cuda(dd, rows, cols, bias != nullptr ? db : nullptr, act, *stream);
    }
    stream->stage_download(data, dd, rows * cols * sizeof(float));
    stream->finish();
    return env.Undefined();
  });
}

// (stream, arrays: Float32Array[], names: string[], sparsity, perLayer, apply) ->
// { cuts: [{thresholdKey, threshold, ties, pruned}], zeroed }. Uploads the arrays, selects on
// the device and, with `apply`, masks there and writes the masked arrays back. Blocking.
Napi::Value MagnitudePrune(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "cudaMagnitudePruneF32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 6, "expected 6 arguments");
    auto stream = stream_at(info, 0, kName);
    UMBRA_THROW_IF(env, !info[1].IsArray() || !info[2].IsArray(), "arrays and names must be arrays");
    const Napi::Array arrays = info[1].As<Napi::Array>(), names = info[2].As<Napi::Array>();
    UMBRA_THROW_IF(env, arrays.Length() != names.Length(), "arrays and names differ in length");
    umbra::SelectOptions options;
    options.sparsity = to_double(info, 3, kName, "sparsity");
    options.per_layer = to_bool(info, 4, kName, "perLayer");
    const bool apply = to_bool(info, 5, kName, "apply");
    std::vector<umbra::WeightArray> host(arrays.Length()), device(arrays.Length());
    size_t total = 0;
    for (uint32_t i = 0; i < arrays.Length(); ++i) {
      const Napi::Value name = names.Get(i);
      UMBRA_THROW_IF(env, !name.IsString(), "names[" + std::to_string(i) + "] must be a string");
      const Napi::Value a = arrays.Get(i);
      host[i].data = f32(env, a, 0, kName, ("arrays[" + std::to_string(i) + "]").c_str());
      host[i].size = a.As<Napi::Float32Array>().ElementLength();
      host[i].name = name.As<Napi::String>().Utf8Value();
      total += (host[i].size + 3) & ~size_t(3);  // keep every array 16-byte aligned on the device
    }
    auto lock = stream->lock();
    stream->activate();
    auto* base = static_cast<float*>(stream->scratch(0, std::max<size_t>(1, total) * sizeof(float)));
    size_t offset = 0;
    for (size_t i = 0; i < host.size(); ++i) {
      device[i] = {base + offset, host[i].size, host[i].name};
      stream->stage_upload(device[i].data, host[i].data, host[i].size * sizeof(float));
      offset += (host[i].size + 3) & ~size_t(3);
    }
    stream->finish();
    const auto cuts = umbra::cuda::threshold_select_f32_cuda(device, options, *stream);
    uint64_t zeroed = 0;
    if (apply) {
      zeroed = umbra::cuda::mask_apply_f32_cuda(device, cuts, *stream);
      for (size_t i = 0; i < host.size(); ++i) stream->stage_download(host[i].data, device[i].data, host[i].size * sizeof(float));
      stream->finish();
    }
    Napi::Array out_cuts = Napi::Array::New(env, cuts.size());
    for (size_t i = 0; i < cuts.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      const uint32_t key = cuts[i].threshold_key;
      float threshold;
      std::memcpy(&threshold, &key, sizeof(threshold));
      o.Set("thresholdKey", Napi::Number::New(env, key));
      o.Set("threshold", Napi::Number::New(env, key >= 0x7f800000u ? static_cast<double>(INFINITY) : threshold));
      o.Set("ties", Napi::Number::New(env, static_cast<double>(cuts[i].ties)));
      o.Set("pruned", Napi::Number::New(env, static_cast<double>(cuts[i].pruned)));
      out_cuts.Set(static_cast<uint32_t>(i), o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("cuts", out_cuts);
    out.Set("zeroed", Napi::Number::New(env, static_cast<double>(zeroed)));
    return out;
  });
}

#else  // built without CUDA

Napi::Value Status(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("compiled", false);
  out.Set("available", false);
  out.Set("reason", "built without CUDA (nvcc was not found when the addon was compiled)");
  out.Set("deviceCount", 0);
  out.Set("runtimeVersion", 0);
  out.Set("driverVersion", 0);
  Napi::Object blas = Napi::Object::New(info.Env());
  blas.Set("library", "cuBLASLt");
  blas.Set("found", false);
  blas.Set("path", "");
  blas.Set("version", 0);
  blas.Set("reason", "built without CUDA");
  blas.Set("tried", Napi::Array::New(info.Env(), 0));
  out.Set("blas", blas);
  return out;
}

Napi::Value NotBuilt(const Napi::CallbackInfo& info) {
  throw Napi::Error::New(info.Env(), "this addon was built without CUDA (nvcc was not found when it was compiled)");
}

#endif

}  // namespace

void RegisterCuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaStatus", umbra_binding::function(env, Status, "cudaStatus"));
  RegisterCudaPlan(env, exports);
#ifdef UMBRA_WITH_CUDA
  const std::pair<const char*, Napi::Function::Callback> entries[] = {
      {"cudaDevices", Devices}, {"cudaMemoryInUse", MemoryInUse}, {"cudaCreateStream", CreateStream},
      {"cudaUploadF32", UploadF32}, {"cudaUploadDense", UploadDense}, {"cudaUploadCsr", UploadCsr},
      {"cudaRelease", Release}, {"cudaHandleBytes", HandleBytes}, {"cudaGemmF32", GemmF32},
      {"cudaGemmF32Async", GemmF32Async}, {"cudaSpmmCsrF32", SpmmCsrF32}, {"cudaSpmmCsrF32Async", SpmmCsrF32Async},
      {"cudaElementwiseF32", Elementwise}, {"cudaMagnitudePruneF32", MagnitudePrune}};
  for (const auto& [name, fn] : entries) exports.Set(name, umbra_binding::function(env, fn, name));
#else
  for (const char* name : {"cudaDevices", "cudaMemoryInUse", "cudaCreateStream", "cudaUploadF32", "cudaUploadDense",
                           "cudaUploadCsr", "cudaRelease", "cudaHandleBytes", "cudaGemmF32", "cudaGemmF32Async",
                           "cudaSpmmCsrF32", "cudaSpmmCsrF32Async", "cudaElementwiseF32", "cudaMagnitudePruneF32"})
    exports.Set(name, umbra_binding::function(env, NotBuilt, name));
#endif
}

}  // namespace umbra_binding

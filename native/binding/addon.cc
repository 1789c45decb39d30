// N-API layer: argument checks and conversion only. Per-environment state lives in
// instance data so the addon loads in any number of worker threads.
#include <napi.h>

#include <exception>

#include "common.h"
#include "cuda_binding.h"
#include "umbra.h"

namespace {

Napi::Value Version(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), umbra::kVersion);
}

// Non-blocking: reports the CPU features the kernels were dispatched on.
Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  const auto& f = umbra::cpu_features();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("avx2", f.avx2);
  out.Set("fma", f.fma);
  out.Set("avx512f", f.avx512f);
  return out;
}

Napi::Value ListBackends(const Napi::CallbackInfo& info) {
  const auto names = umbra::backends_compiled();
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::Function::New(env, Version, "version"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeatures, "cpuFeatures"));
  exports.Set("listBackends", Napi::Function::New(env, ListBackends, "listBackends"));
  umbra_binding::register_kernels(env, exports);
  umbra_binding::register_prune(env, exports);
  umbra_binding::register_json(env, exports);
  umbra_binding::RegisterCuda(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(umbra, Init)

// N-API layer: argument checks and conversion only. Per-environment state lives in
// instance data so the addon loads in any number of worker threads.
#include <napi.h>

#include <exception>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

// (mmapThreshold, trimThreshold) -> whether the allocator took them. glibc by default maps every
// allocation over its (dynamic) mmap threshold afresh and returns freed memory at the heap's top
// to the system past 128 KiB: a server that allocates a 1 MiB tensor buffer per request then
// pays page faults on every one (a fresh 1 MiB buffer plus its copy: ~1.1 ms, against 0.1 ms
// once the allocator keeps freed memory for reuse). Process-wide; false where the C library is
// not glibc (nothing changed).
Napi::Value TuneMalloc(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "tuneMalloc(mmapThreshold, trimThreshold): two byte counts");
  }
  const double mmap = info[0].As<Napi::Number>().DoubleValue(), trim = info[1].As<Napi::Number>().DoubleValue();
  if (!(mmap >= 0 && mmap <= 32.0 * 1024 * 1024 && trim >= 0 && trim <= 1024.0 * 1024 * 1024)) {
    throw Napi::RangeError::New(env, "tuneMalloc: mmapThreshold must be 0..32 MiB (glibc's maximum), trimThreshold 0..1 GiB");
  }
#if defined(__GLIBC__)
  const bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap)) == 1 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim)) == 1;
  return Napi::Boolean::New(env, ok);
#else
  return Napi::Boolean::New(env, false);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("tuneMalloc", Napi::Function::New(env, TuneMalloc, "tuneMalloc"));
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

// N-API layer: argument checks and conversion only. Per-environment state lives in
// instance data so the addon loads in any number of worker threads.
#include <napi.h>

#include <exception>

#include <time.h>

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

// CPU time of the calling thread in nanoseconds (CLOCK_THREAD_CPUTIME_ID, current to the call,
// unlike /proc's schedstat, which a running thread sees as of its last tick), or -1 where the
// platform has no such clock.
Napi::Value ThreadCpuNanos(const Napi::CallbackInfo& info) {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
    return Napi::Number::New(info.Env(), static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec));
  }
#endif
  return Napi::Number::New(info.Env(), -1);
}

// Hands memory the C allocator holds free back to the OS: glibc keeps what a thread frees (a model
// worker's released sessions) in that thread's arena, for that thread alone to reuse. Returns
// whether any was handed back; false where the C library has no such call.
Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("version", umbra_binding::function(env, Version, "version"));
  exports.Set("cpuFeatures", umbra_binding::function(env, CpuFeatures, "cpuFeatures"));
  exports.Set("listBackends", umbra_binding::function(env, ListBackends, "listBackends"));
  exports.Set("threadCpuNanos", umbra_binding::function(env, ThreadCpuNanos, "threadCpuNanos"));
  exports.Set("trimMemory", umbra_binding::function(env, TrimMemory, "trimMemory"));
  umbra_binding::register_kernels(env, exports);
  umbra_binding::register_prune(env, exports);
  umbra_binding::register_json(env, exports);
  umbra_binding::register_transport_guard(env, exports);
  umbra_binding::RegisterCuda(env, exports);
}

// A worker thread terminated while it loads the addon makes these calls fail; the error goes
// through throw_or_drop (see common.h) rather than out of the module's init, where it would
// abort the process.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  try {
    Register(env, exports);
  } catch (const Napi::Error& e) {
    umbra_binding::throw_or_drop(e);
  }
  return exports;
}

}  // namespace

NODE_API_MODULE(umbra, Init)

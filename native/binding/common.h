// Shared N-API helpers: argument checks that throw JS errors, typed-array views, and one
// AsyncWorker that runs a C++ closure off the JS thread and settles a Promise.
#pragma once

#include <napi.h>

#include <cstdint>
#include <algorithm>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace umbra_binding {

// Throws a JS TypeError "fn: message" when cond holds (caught by N-API, never aborts).
#define UMBRA_THROW_IF(env, cond, message)                                             \
  do {                                                                                 \
    if (cond) throw Napi::TypeError::New((env), std::string(kName) + ": " + (message)); \
  } while (0)

// Entry-point wrapper: any std::exception from a kernel becomes a JS Error with its message.
template <typename Fn>
Napi::Value guarded(const Napi::CallbackInfo& info, Fn&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

// Throws `e` into JS. Where it cannot be thrown, because this thread's environment is being torn
// down (a worker terminated while inside the call) or a JS exception is already pending,
// node-addon-api would throw a second Napi::Error out of its callback wrapper, where nothing can
// catch it: std::terminate and the whole process aborts. That error is dropped instead; the JS
// side either goes away with the environment or sees the exception already pending.
inline void throw_or_drop(const Napi::Error& e) noexcept {
  try {
    e.ThrowAsJavaScriptException();
  } catch (...) {
  }
}

// `fn` as a JS function named `name`, whose errors reach JS through throw_or_drop: every entry
// point of the addon is registered this way.
template <typename Fn>
Napi::Function function(Napi::Env env, Fn fn, const char* name) {
  return Napi::Function::New(
      env,
      [fn](const Napi::CallbackInfo& info) -> Napi::Value {
        try {
          return fn(info);
        } catch (const Napi::Error& e) {
          throw_or_drop(e);
          return Napi::Value();
        }
      },
      name);
}

inline size_t to_size(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d < 2147483648.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": " + what + " must be an integer in [0, 2^31)");
  return static_cast<size_t>(d);
}

inline double to_double(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + what + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline bool to_bool(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what) {
  const Napi::Value v = info[i];
  if (!v.IsBoolean()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + what + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

template <typename T, napi_typedarray_type Kind>
T* typed(Napi::Env env, const Napi::Value& v, size_t min_length, const char* fn, const char* what, bool nullable = false) {
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  const char* kind_name = Kind == napi_float32_array ? "Float32Array"
                          : Kind == napi_int32_array ? "Int32Array"
                          : Kind == napi_uint16_array ? "Uint16Array"
                          : Kind == napi_uint32_array ? "Uint32Array"
                                                      : "Float64Array";
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind)
    throw Napi::TypeError::New(env, std::string(fn) + ": " + what + " must be a " + kind_name);
  auto array = v.As<Napi::TypedArrayOf<T>>();
  if (array.ElementLength() < min_length)
    throw Napi::RangeError::New(env, std::string(fn) + ": " + what + " has " + std::to_string(array.ElementLength()) +
                                         " elements but needs " + std::to_string(min_length));
  return array.ElementLength() == 0 ? nullptr : array.Data();
}

inline float* f32(Napi::Env env, const Napi::Value& v, size_t n, const char* fn, const char* what, bool nullable = false) {
  return typed<float, napi_float32_array>(env, v, n, fn, what, nullable);
}
inline int32_t* i32(Napi::Env env, const Napi::Value& v, size_t n, const char* fn, const char* what) {
  return typed<int32_t, napi_int32_array>(env, v, n, fn, what);
}
inline uint16_t* u16(Napi::Env env, const Napi::Value& v, size_t n, const char* fn, const char* what) {
  return typed<uint16_t, napi_uint16_array>(env, v, n, fn, what);
}

// Runs `work` on the libuv pool and resolves with `done(env)` (JS touched only there) or
// rejects with the std::exception message. `keep` pins the typed arrays the work reads and
// writes so the garbage collector cannot free them meanwhile.
class TaskWorker : public Napi::AsyncWorker {
 public:
  TaskWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
             const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, "umbra.kernel"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {
    for (const auto& v : keep)
      if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  // Settling runs on the JS thread after the work; there an error has no caller to go to but the
  // promise, and if even that fails the environment is going away (see throw_or_drop).
  void OnOK() override {
    try {
      deferred_.Resolve(done_(Env()));
    } catch (const Napi::Error& e) {
      settle_failed(e);
    }
  }
  void OnError(const Napi::Error& e) override { settle_failed(e); }

 private:
  void settle_failed(const Napi::Error& e) noexcept {
    try {
      deferred_.Reject(e.Value());
    } catch (const Napi::Error& failed) {
      throw_or_drop(failed);
    }
  }

  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::ObjectReference> refs_;
};

inline Napi::Value queue(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                         const std::vector<Napi::Value>& keep) {
  auto* worker = new TaskWorker(env, std::move(work), std::move(done), keep);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

void register_kernels(Napi::Env env, Napi::Object exports);
void register_prune(Napi::Env env, Napi::Object exports);
void register_json(Napi::Env env, Napi::Object exports);
void register_transport_guard(Napi::Env env, Napi::Object exports);

}  // namespace umbra_binding

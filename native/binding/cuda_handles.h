// Opaque handles the CUDA entry points hand to JavaScript (device memory, streams, plans), shared
// by cuda_binding.cc and cuda_plan_binding.cc. Each is a type-tagged napi External owning a box
// whose shared_ptr keeps the C++ object alive while an async call still uses it; the garbage
// collector deletes the box at the latest. Only with UMBRA_WITH_CUDA.
#pragma once

#ifdef UMBRA_WITH_CUDA

#include <napi.h>

#include <memory>
#include <string>

#include "common.h"
#include "device.cuh"

namespace umbra_binding::cuda_handles {

using umbra::cuda::DeviceBuffer;
using umbra::cuda::Stream;

// Device memory behind one handle. The memory goes when the last owner does (cudaRelease drops
// the handle's share; an in-flight call or a plan may hold another).
struct Resident {
  enum Kind { vector, dense, csr } kind = vector;
  int device = 0;
  DeviceBuffer a, b, c;  // vector/dense: a; csr: row_ptr, col_idx, values
  size_t rows = 0, cols = 0, nnz = 0;  // dense: rows = k, cols = n
  bool n_by_k = false;
  size_t bytes() const { return a.bytes() + b.bytes() + c.bytes(); }
};
struct ResidentBox {
  std::shared_ptr<Resident> value;
};
struct StreamBox {
  std::shared_ptr<Stream> value;
};

inline constexpr napi_type_tag kResidentTag = {0x7b1d3c5e9a2f4e01ULL, 0x8c6d1e2f3a4b5c01ULL};
inline constexpr napi_type_tag kStreamTag = {0x7b1d3c5e9a2f4e02ULL, 0x8c6d1e2f3a4b5c02ULL};
inline constexpr napi_type_tag kPlanTag = {0x7b1d3c5e9a2f4e03ULL, 0x8c6d1e2f3a4b5c03ULL};

template <typename Box>
Napi::Value wrap(Napi::Env env, Box* box, const napi_type_tag& tag) {
  auto ext = Napi::External<Box>::New(env, box, [](Napi::Env, Box* b) { delete b; });
  napi_type_tag_object(env, ext, &tag);
  return ext;
}

inline const char* handle_source(const napi_type_tag& tag) {
  if (&tag == &kStreamTag) return "cudaCreateStream";
  if (&tag == &kPlanTag) return "cudaPlanCreate";
  return "a cudaUpload* call";
}

template <typename Box>
Box* unwrap(const Napi::CallbackInfo& info, const Napi::Value& v, const napi_type_tag& tag, const char* fn,
            const std::string& what) {
  bool ok = false;
  if (v.Type() == napi_external) napi_check_object_type_tag(info.Env(), v, &tag, &ok);
  if (!ok) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + what + " must be a handle from " + handle_source(tag));
  return v.As<Napi::External<Box>>().Data();
}

template <typename Box>
Box* unwrap(const Napi::CallbackInfo& info, size_t i, const napi_type_tag& tag, const char* fn, const char* what) {
  return unwrap<Box>(info, info[i], tag, fn, what);
}

inline std::shared_ptr<Resident> resident_of(const Napi::CallbackInfo& info, const Napi::Value& v, const char* fn,
                                             const std::string& what, Resident::Kind kind, bool nullable = false) {
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  auto* box = unwrap<ResidentBox>(info, v, kResidentTag, fn, what);
  if (!box->value) throw Napi::Error::New(info.Env(), std::string(fn) + ": " + what + " was released");
  if (box->value->kind != kind) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + what + " has the wrong kind");
  return box->value;
}

inline std::shared_ptr<Resident> resident_at(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what,
                                             Resident::Kind kind, bool nullable = false) {
  return resident_of(info, info[i], fn, what, kind, nullable);
}

inline std::shared_ptr<Stream> stream_at(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  return unwrap<StreamBox>(info, i, kStreamTag, fn, "stream")->value;
}

inline int device_at(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  return static_cast<int>(to_size(info, i, fn, "device"));
}

}  // namespace umbra_binding::cuda_handles

#endif  // UMBRA_WITH_CUDA

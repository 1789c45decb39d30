// N-API entry of the request-body scanner (native/src/json): argument checks and conversion only.
#include <string>

#include "common.h"
#include "json/format_numbers.h"
#include "json/infer_json.h"

namespace umbra_binding {
namespace {

// scanInferJson(bytes: Uint8Array, end: number, numbers: Float64Array, start: number, meta: Int32Array)
//   -> string (the skeleton) | undefined (not scanned: parse the text itself)
Napi::Value ScanInferJson(const Napi::CallbackInfo& info) {
  static constexpr const char* kName = "scanInferJson";
  Napi::Env env = info.Env();
  const Napi::Value bytes = info[0];
  UMBRA_THROW_IF(env, !bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array,
                 "bytes must be a Uint8Array");
  auto view = bytes.As<Napi::Uint8Array>();
  const size_t end = to_size(info, 1, kName, "end");
  UMBRA_THROW_IF(env, end > view.ElementLength(), "end is past the bytes");
  const Napi::Value numbers = info[2];
  UMBRA_THROW_IF(env, !numbers.IsTypedArray() || numbers.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array,
                 "numbers must be a Float64Array");
  auto numbers_view = numbers.As<Napi::Float64Array>();
  const size_t start = to_size(info, 3, kName, "start");
  UMBRA_THROW_IF(env, start > numbers_view.ElementLength(), "start is past the numbers");
  auto meta_view = info[4];
  UMBRA_THROW_IF(env, !meta_view.IsTypedArray() || meta_view.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array,
                 "meta must be an Int32Array");
  auto meta = meta_view.As<Napi::Int32Array>();
  const umbra::json::ScanBuffers buffers{numbers_view.Data(), numbers_view.ElementLength(), start, meta.Data(), meta.ElementLength()};
  // One skeleton buffer per thread (the addon loads in every worker), reused across calls.
  thread_local std::string skeleton;
  const char* text = reinterpret_cast<const char*>(view.Data());
  if (!umbra::json::scan_infer_request(text, end, buffers, skeleton)) return env.Undefined();
  return Napi::String::New(env, skeleton.data(), skeleton.size());
}

// formatNumbersJson(values: Float32Array | Float64Array) -> "[...]" (see format_numbers.h)
Napi::Value FormatNumbersJson(const Napi::CallbackInfo& info) {
  static constexpr const char* kName = "formatNumbersJson";
  Napi::Env env = info.Env();
  const Napi::Value values = info[0];
  UMBRA_THROW_IF(env, !values.IsTypedArray(), "values must be a Float32Array or Float64Array");
  const napi_typedarray_type type = values.As<Napi::TypedArray>().TypedArrayType();
  UMBRA_THROW_IF(env, type != napi_float32_array && type != napi_float64_array, "values must be a Float32Array or Float64Array");
  thread_local std::string text;
  text.clear();
  if (type == napi_float32_array) {
    auto view = values.As<Napi::Float32Array>();
    umbra::json::append_json_numbers(view.Data(), view.ElementLength(), text);
  } else {
    auto view = values.As<Napi::Float64Array>();
    umbra::json::append_json_numbers(view.Data(), view.ElementLength(), text);
  }
  return Napi::String::New(env, text.data(), text.size());
}

}  // namespace

void register_json(Napi::Env env, Napi::Object exports) {
  exports.Set("scanInferJson", Napi::Function::New(env, ScanInferJson, "scanInferJson"));
  exports.Set("formatNumbersJson", Napi::Function::New(env, FormatNumbersJson, "formatNumbersJson"));
}

}  // namespace umbra_binding

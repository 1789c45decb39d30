// N-API entry of the request-body scanner (native/src/json): argument checks and conversion only.
#include <string>

#include "common.h"
#include "json/format_numbers.h"
#include "json/infer_json.h"

namespace umbra_binding {
namespace {

bool is_ascii(const std::string& text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// ASCII text as a JS string: Latin-1 is a copy, where UTF-8 would be decoded byte by byte (for
// a batch's worth of numbers that decoding cost more than formatting them).
Napi::String ascii_string(Napi::Env env, const std::string& text) {
  napi_value value;
  const napi_status status = napi_create_string_latin1(env, text.data(), text.size(), &value);
  NAPI_THROW_IF_FAILED(env, status, Napi::String());
  return Napi::String(env, value);
}

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

// A Float32Array's or Float64Array's values (one of the two pointers set); throws for anything else.
struct FloatValues {
  const float* floats = nullptr;
  const double* doubles = nullptr;
  size_t length = 0;

  // Appends "[...]" of values[from, from + count) to text.
  void append_json(size_t from, size_t count, std::string& text) const {
    if (floats != nullptr) {
      umbra::json::append_json_numbers(floats + from, count, text);
    } else {
      umbra::json::append_json_numbers(doubles + from, count, text);
    }
  }
};

FloatValues float_values(Napi::Env env, const Napi::Value& values, const char* kName) {
  UMBRA_THROW_IF(env, !values.IsTypedArray(), "values must be a Float32Array or Float64Array");
  const napi_typedarray_type type = values.As<Napi::TypedArray>().TypedArrayType();
  UMBRA_THROW_IF(env, type != napi_float32_array && type != napi_float64_array, "values must be a Float32Array or Float64Array");
  FloatValues out;
  out.length = values.As<Napi::TypedArray>().ElementLength();
  if (type == napi_float32_array) {
    out.floats = values.As<Napi::Float32Array>().Data();
  } else {
    out.doubles = values.As<Napi::Float64Array>().Data();
  }
  return out;
}

// formatNumbersJson(values: Float32Array | Float64Array) -> "[...]" (see format_numbers.h)
Napi::Value FormatNumbersJson(const Napi::CallbackInfo& info) {
  static constexpr const char* kName = "formatNumbersJson";
  Napi::Env env = info.Env();
  const FloatValues values = float_values(env, info[0], kName);
  thread_local std::string text;
  text.clear();
  values.append_json(0, values.length, text);
  return ascii_string(env, text);
}

// formatRowsJson(values: Float32Array | Float64Array, perRow: number, prefix: string, suffix: string)
//   -> string[]: row r is prefix + "[...]" (values[r * perRow, (r + 1) * perRow)) + suffix, each
// value as formatNumbersJson writes it. One flat string per row, made here: a batch job stores
// each row's text as it is, and cutting one long string into rows and joining the pieces in
// JavaScript cost more than formatting them. Blocks while it formats (microseconds per row).
Napi::Value FormatRowsJson(const Napi::CallbackInfo& info) {
  static constexpr const char* kName = "formatRowsJson";
  Napi::Env env = info.Env();
  const FloatValues values = float_values(env, info[0], kName);
  const size_t per_row = to_size(info, 1, kName, "perRow");
  UMBRA_THROW_IF(env, !info[2].IsString() || !info[3].IsString(), "prefix and suffix must be strings");
  const std::string prefix = info[2].As<Napi::String>().Utf8Value();
  const std::string suffix = info[3].As<Napi::String>().Utf8Value();
  UMBRA_THROW_IF(env, per_row == 0 ? values.length != 0 : values.length % per_row != 0, "values must hold whole rows of perRow values");
  const size_t rows = per_row == 0 ? 0 : values.length / per_row;
  // The numbers are ASCII; names in the prefix may not be, and then each row is read as UTF-8.
  const bool ascii = is_ascii(prefix) && is_ascii(suffix);
  Napi::Array out = Napi::Array::New(env, rows);
  thread_local std::string text;
  for (size_t r = 0; r < rows; ++r) {
    text.assign(prefix);
    values.append_json(r * per_row, per_row, text);
    text.append(suffix);
    out.Set(static_cast<uint32_t>(r), ascii ? ascii_string(env, text) : Napi::String::New(env, text.data(), text.size()));
  }
  return out;
}

}  // namespace

void register_json(Napi::Env env, Napi::Object exports) {
  exports.Set("scanInferJson", umbra_binding::function(env, ScanInferJson, "scanInferJson"));
  exports.Set("formatNumbersJson", umbra_binding::function(env, FormatNumbersJson, "formatNumbersJson"));
  exports.Set("formatRowsJson", umbra_binding::function(env, FormatRowsJson, "formatRowsJson"));
}

}  // namespace umbra_binding

// N-API entry points for magnitude pruning. thresholdSelectF32/maskApplyF32 block the calling
// thread; their *Async twins run on the libuv pool and return Promises (the typed arrays stay
// pinned until they settle; do not transfer or resize them meanwhile). A NaN weight rejects with
// an Error naming the array and index; bad arguments throw TypeError/RangeError.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "common.h"
#include "umbra_kernels.h"

namespace umbra_binding {
namespace {

std::vector<umbra::WeightArray> weight_arrays(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, !info[0].IsArray(), "arrays must be an array of Float32Array");
  UMBRA_THROW_IF(env, !info[1].IsArray(), "names must be an array of strings");
  const Napi::Array arrays = info[0].As<Napi::Array>(), names = info[1].As<Napi::Array>();
  UMBRA_THROW_IF(env, arrays.Length() != names.Length(), "arrays and names differ in length");
  std::vector<umbra::WeightArray> out(arrays.Length());
  for (uint32_t i = 0; i < arrays.Length(); ++i) {
    const Napi::Value name = names.Get(i);
    UMBRA_THROW_IF(env, !name.IsString(), "names[" + std::to_string(i) + "] must be a string");
    out[i].name = name.As<Napi::String>().Utf8Value();
    const Napi::Value a = arrays.Get(i);
    out[i].data = f32(env, a, 0, kName, ("arrays[" + std::to_string(i) + "]").c_str());
    out[i].size = a.As<Napi::Float32Array>().ElementLength();
  }
  return out;
}

std::vector<double> clamps(const Napi::CallbackInfo& info, size_t i, size_t count, const char* kName, const char* what) {
  const double* p = typed<double, napi_float64_array>(info.Env(), info[i], count, kName, what, true);
  if (p == nullptr) return {};
  return std::vector<double>(p, p + count);
}

struct SelectCall {
  std::vector<umbra::WeightArray> arrays;
  umbra::SelectOptions options;
};

// (arrays, names, sparsity, perLayer, minSparsity|null, maxSparsity|null, threads)
SelectCall select_call(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 7, "expected 7 arguments");
  SelectCall c;
  c.arrays = weight_arrays(info, kName);
  c.options.sparsity = to_double(info, 2, kName, "sparsity");
  c.options.per_layer = to_bool(info, 3, kName, "perLayer");
  c.options.min_sparsity = clamps(info, 4, c.arrays.size(), kName, "minSparsity");
  c.options.max_sparsity = clamps(info, 5, c.arrays.size(), kName, "maxSparsity");
  c.options.threads = static_cast<int>(to_size(info, 6, kName, "threads"));
  UMBRA_THROW_IF(env, c.options.threads < 1, "threads must be >= 1");
  return c;
}

Napi::Value cuts_to_js(Napi::Env env, const std::vector<umbra::LayerCut>& cuts) {
  Napi::Array out = Napi::Array::New(env, cuts.size());
  for (size_t i = 0; i < cuts.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    const uint32_t key = cuts[i].threshold_key;
    float threshold;
    std::memcpy(&threshold, &key, sizeof(threshold));
    o.Set("thresholdKey", Napi::Number::New(env, key));
    // 0x80000000 means "above every magnitude": report it as +Infinity.
    o.Set("threshold", Napi::Number::New(env, key >= 0x7f800000u ? std::numeric_limits<double>::infinity() : threshold));
    o.Set("ties", Napi::Number::New(env, static_cast<double>(cuts[i].ties)));
    o.Set("pruned", Napi::Number::New(env, static_cast<double>(cuts[i].pruned)));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value ThresholdSelectF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const SelectCall c = select_call(info, "thresholdSelectF32");
    return cuts_to_js(info.Env(), umbra::threshold_select_f32(c.arrays, c.options));
  });
}

Napi::Value ThresholdSelectF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto c = std::make_shared<SelectCall>(select_call(info, "thresholdSelectF32Async"));
    auto result = std::make_shared<std::vector<umbra::LayerCut>>();
    return queue(info.Env(), [c, result] { *result = umbra::threshold_select_f32(c->arrays, c->options); },
                 [result](Napi::Env env) { return cuts_to_js(env, *result); }, {info[0]});
  });
}

struct MaskCall {
  std::vector<umbra::WeightArray> arrays;
  std::vector<umbra::LayerCut> cuts;
  int threads = 1;
};

// (arrays, names, cuts: {thresholdKey, ties}[], threads)
MaskCall mask_call(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 4, "expected 4 arguments");
  MaskCall c;
  c.arrays = weight_arrays(info, kName);
  UMBRA_THROW_IF(env, !info[2].IsArray(), "cuts must be an array");
  const Napi::Array cuts = info[2].As<Napi::Array>();
  UMBRA_THROW_IF(env, cuts.Length() != c.arrays.size(), "expected one cut per array");
  for (uint32_t i = 0; i < cuts.Length(); ++i) {
    const Napi::Value v = cuts.Get(i);
    UMBRA_THROW_IF(env, !v.IsObject(), "cuts[" + std::to_string(i) + "] must be an object");
    const Napi::Value key = v.As<Napi::Object>().Get("thresholdKey"), ties = v.As<Napi::Object>().Get("ties");
    UMBRA_THROW_IF(env, !key.IsNumber() || !ties.IsNumber(), "cuts[" + std::to_string(i) + "] needs numeric thresholdKey and ties");
    const double k = key.As<Napi::Number>().DoubleValue(), t = ties.As<Napi::Number>().DoubleValue();
    UMBRA_THROW_IF(env, !(k >= 0 && k <= 2147483648.0 && k == static_cast<double>(static_cast<int64_t>(k))),
                   "cuts[" + std::to_string(i) + "].thresholdKey must be an integer in [0, 2^31]");
    UMBRA_THROW_IF(env, !(t >= 0 && t <= 9007199254740991.0 && t == static_cast<double>(static_cast<int64_t>(t))),
                   "cuts[" + std::to_string(i) + "].ties must be a non-negative integer");
    c.cuts.push_back({static_cast<uint32_t>(k), static_cast<uint64_t>(t), 0});
  }
  c.threads = static_cast<int>(to_size(info, 3, kName, "threads"));
  UMBRA_THROW_IF(env, c.threads < 1, "threads must be >= 1");
  return c;
}

Napi::Value MaskApplyF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const MaskCall c = mask_call(info, "maskApplyF32");
    return Napi::Number::New(info.Env(), static_cast<double>(umbra::mask_apply_f32(c.arrays, c.cuts, c.threads)));
  });
}

Napi::Value MaskApplyF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto c = std::make_shared<MaskCall>(mask_call(info, "maskApplyF32Async"));
    auto zeroed = std::make_shared<uint64_t>(0);
    return queue(info.Env(), [c, zeroed] { *zeroed = umbra::mask_apply_f32(c->arrays, c->cuts, c->threads); },
                 [zeroed](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*zeroed)); }, {info[0]});
  });
}

// (w, rows, cols, n, m, kContiguous, name) -> number zeroed. Blocking.
Napi::Value NmPruneF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "nmPruneF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 7, "expected 7 arguments");
    UMBRA_THROW_IF(env, !info[6].IsString(), "name must be a string");
    const size_t rows = to_size(info, 1, kName, "rows"), cols = to_size(info, 2, kName, "cols");
    float* w = f32(env, info[0], rows * cols, kName, "w");
    const uint64_t zeroed = umbra::nm_prune_f32(w, rows, cols, to_size(info, 3, kName, "n"), to_size(info, 4, kName, "m"),
                                                to_bool(info, 5, kName, "kContiguous"), info[6].As<Napi::String>().Utf8Value());
    return Napi::Number::New(env, static_cast<double>(zeroed));
  });
}

// (w, rows, cols, sparsity, norm 1|2, kContiguous, name) -> Int32Array of pruned outputs. Blocking.
Napi::Value RowsPruneF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "rowsPruneF32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 7, "expected 7 arguments");
    UMBRA_THROW_IF(env, !info[6].IsString(), "name must be a string");
    const size_t rows = to_size(info, 1, kName, "rows"), cols = to_size(info, 2, kName, "cols");
    float* w = f32(env, info[0], rows * cols, kName, "w");
    const size_t norm = to_size(info, 4, kName, "norm");
    UMBRA_THROW_IF(env, norm != 1 && norm != 2, "norm must be 1 (L1) or 2 (L2)");
    const std::vector<int32_t> pruned =
        umbra::rows_prune_f32(w, rows, cols, to_double(info, 3, kName, "sparsity"), static_cast<umbra::NormKind>(norm),
                              to_bool(info, 5, kName, "kContiguous"), info[6].As<Napi::String>().Utf8Value());
    Napi::Int32Array out = Napi::Int32Array::New(env, pruned.size());
    std::copy(pruned.begin(), pruned.end(), out.Data());
    return out;
  });
}

}  // namespace

void register_prune(Napi::Env env, Napi::Object exports) {
  exports.Set("thresholdSelectF32", umbra_binding::function(env, ThresholdSelectF32, "thresholdSelectF32"));
  exports.Set("thresholdSelectF32Async", umbra_binding::function(env, ThresholdSelectF32Async, "thresholdSelectF32Async"));
  exports.Set("maskApplyF32", umbra_binding::function(env, MaskApplyF32, "maskApplyF32"));
  exports.Set("maskApplyF32Async", umbra_binding::function(env, MaskApplyF32Async, "maskApplyF32Async"));
  exports.Set("nmPruneF32", umbra_binding::function(env, NmPruneF32, "nmPruneF32"));
  exports.Set("rowsPruneF32", umbra_binding::function(env, RowsPruneF32, "rowsPruneF32"));
}

}  // namespace umbra_binding

// N-API entry points for device-resident layer chains (native/src/cuda/plan.cuh): the native
// backend's GPU executor builds one plan per chain of its graph and runs a batch through it with
// one upload and one download; small batches replay a captured CUDA graph. cudaPlanRun blocks the
// calling thread (meant for worker threads); cudaPlanRunAsync runs on the libuv pool. CUDA
// failures throw an Error naming the call, file and line; bad arguments throw TypeError/RangeError.
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "cuda_binding.h"
#include "cuda_handles.h"

#ifdef UMBRA_WITH_CUDA
#include "plan.cuh"
#endif

namespace umbra_binding {
namespace {

#ifdef UMBRA_WITH_CUDA
using namespace cuda_handles;
using umbra::cuda::Plan;
using umbra::cuda::PlanOp;

// The plan and the uploads it reads. `keep` is declared first so it outlives `plan`.
struct PlanHolder {
  std::vector<std::shared_ptr<Resident>> keep;
  std::unique_ptr<Plan> plan;
};
struct PlanBox {
  std::shared_ptr<PlanHolder> value;
};

std::shared_ptr<PlanHolder> plan_at(const Napi::CallbackInfo& info, const char* fn) {
  auto* box = unwrap<PlanBox>(info, 0, kPlanTag, fn, "plan");
  if (!box->value) throw Napi::Error::New(info.Env(), std::string(fn) + ": the plan was released");
  return box->value;
}

size_t small_int(const Napi::CallbackInfo& info, const Napi::Object& o, const char* key, const char* fn,
                 const std::string& where, size_t max, size_t fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<size_t>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": " + where + "." + key + " must be an integer in 0.." +
                                                std::to_string(max));
  return static_cast<size_t>(d);
}

// (stream, ops: {kind, weights?, bias?, activation?, precision?}[], inputWidth, graphMaxRows) -> plan.
// Allocates nothing on the device yet. Blocking (host work only).
Napi::Value PlanCreate(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "cudaPlanCreate";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 4, "expected 4 arguments");
    auto stream = stream_at(info, 0, kName);
    UMBRA_THROW_IF(env, !info[1].IsArray(), "ops must be an array");
    const Napi::Array list = info[1].As<Napi::Array>();
    const size_t input_width = to_size(info, 2, kName, "inputWidth");
    umbra::cuda::PlanOptions options;
    options.graph_max_rows = to_size(info, 3, kName, "graphMaxRows");
    auto holder = std::make_shared<PlanHolder>();
    std::vector<PlanOp> ops;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const std::string where = "ops[" + std::to_string(i) + "]";
      const Napi::Value item = list.Get(i);
      UMBRA_THROW_IF(env, !item.IsObject(), where + " must be an object");
      const Napi::Object o = item.As<Napi::Object>();
      const Napi::Value kind_value = o.Get("kind");
      const std::string kind = kind_value.IsString() ? kind_value.As<Napi::String>().Utf8Value() : "";
      PlanOp op;
      op.activation = static_cast<int>(small_int(info, o, "activation", kName, where, 4, 0));
      if (kind == "dense" || kind == "sparse") {
        auto bias = resident_of(info, o.Get("bias"), kName, where + ".bias", Resident::vector, true);
        if (kind == "dense") {
          auto w = resident_of(info, o.Get("weights"), kName, where + ".weights", Resident::dense);
          op.kind = PlanOp::Kind::dense;
          op.weights = w->a.as<float>();
          op.w_n_by_k = w->n_by_k;
          op.k = w->rows, op.n = w->cols;
          op.precision = static_cast<umbra::cuda::GemmPrecision>(small_int(info, o, "precision", kName, where, 2, 0));
          holder->keep.push_back(w);
          UMBRA_THROW_IF(env, w->device != stream->device(), where + ".weights are on another device than the stream");
        } else {
          auto w = resident_of(info, o.Get("weights"), kName, where + ".weights", Resident::csr);
          op.kind = PlanOp::Kind::sparse;
          op.csr.row_ptr = w->a.as<int32_t>(), op.csr.col_idx = w->b.as<int32_t>(), op.csr.values = w->c.as<float>();
          op.csr.rows = w->rows, op.csr.cols = w->cols, op.csr.nnz = w->nnz;
          op.k = w->cols, op.n = w->rows;
          holder->keep.push_back(w);
          UMBRA_THROW_IF(env, w->device != stream->device(), where + ".weights are on another device than the stream");
        }
        if (bias) {
          UMBRA_THROW_IF(env, bias->rows < op.n, where + ".bias has fewer than n elements");
          UMBRA_THROW_IF(env, bias->device != stream->device(), where + ".bias is on another device than the stream");
          op.bias = bias->a.as<float>();
          holder->keep.push_back(bias);
        }
      } else if (kind == "softmax") {
        op.kind = PlanOp::Kind::softmax;
      } else if (kind == "activation") {
        op.kind = PlanOp::Kind::activation;
      } else {
        UMBRA_THROW_IF(env, true, where + ".kind must be dense, sparse, softmax or activation");
      }
      ops.push_back(op);
    }
    holder->plan = std::make_unique<Plan>(stream, std::move(ops), input_width, options);
    return wrap(env, new PlanBox{holder}, kPlanTag);
  });
}

struct PlanRun {
  std::shared_ptr<PlanHolder> holder;
  const float* x;
  float* y;
  size_t m;
  void run() const { holder->plan->run(x, y, m); }
};

// (plan, x, y, m)
PlanRun plan_run(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 4, "expected 4 arguments");
  PlanRun r;
  r.holder = plan_at(info, kName);
  r.m = to_size(info, 3, kName, "m");
  r.x = f32(env, info[1], r.m * r.holder->plan->input_width(), kName, "x");
  r.y = f32(env, info[2], r.m * r.holder->plan->output_width(), kName, "y");
  return r;
}

Napi::Value PlanRunSync(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    plan_run(info, "cudaPlanRun").run();
    return info.Env().Undefined();
  });
}

Napi::Value PlanRunAsync(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const PlanRun r = plan_run(info, "cudaPlanRunAsync");
    return queue(info.Env(), [r] { r.run(); }, [](Napi::Env env) { return env.Undefined(); }, {info[1], info[2]});
  });
}

// (plan) -> { graphs, replays, runs, deviceBytes, stages, inputWidth, outputWidth }
Napi::Value PlanStats(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    auto holder = plan_at(info, "cudaPlanStats");
    const auto s = holder->plan->stats();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("graphs", static_cast<double>(s.graphs));
    out.Set("replays", static_cast<double>(s.replays));
    out.Set("runs", static_cast<double>(s.runs));
    out.Set("deviceBytes", static_cast<double>(s.device_bytes));
    Napi::Object stages = Napi::Object::New(info.Env());
    stages.Set("lockUs", s.lock_us);
    stages.Set("stageInUs", s.stage_in_us);
    stages.Set("launchUs", s.launch_us);
    stages.Set("deviceUs", s.device_us);
    stages.Set("stageOutUs", s.stage_out_us);
    stages.Set("captureUs", s.capture_us);
    out.Set("stages", stages);
    out.Set("inputWidth", static_cast<double>(holder->plan->input_width()));
    out.Set("outputWidth", static_cast<double>(holder->plan->output_width()));
    return out;
  });
}

// (plan) -> device bytes of activations it held. Frees them and the graphs now (or, while an
// async run still uses the plan, when that run ends) and drops the plan's hold on its uploads.
Napi::Value PlanRelease(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    auto* box = unwrap<PlanBox>(info, 0, kPlanTag, "cudaPlanRelease", "plan");
    const double bytes = box->value ? static_cast<double>(box->value->plan->stats().device_bytes) : 0.0;
    box->value.reset();
    return Napi::Number::New(info.Env(), bytes);
  });
}

#else

Napi::Value NotBuilt(const Napi::CallbackInfo& info) {
  throw Napi::Error::New(info.Env(), "this addon was built without CUDA (nvcc was not found when it was compiled)");
}

#endif

}  // namespace

void RegisterCudaPlan(Napi::Env env, Napi::Object exports) {
#ifdef UMBRA_WITH_CUDA
  const std::pair<const char*, Napi::Function::Callback> entries[] = {
      {"cudaPlanCreate", PlanCreate}, {"cudaPlanRun", PlanRunSync}, {"cudaPlanRunAsync", PlanRunAsync},
      {"cudaPlanStats", PlanStats}, {"cudaPlanRelease", PlanRelease}};
  for (const auto& [name, fn] : entries) exports.Set(name, umbra_binding::function(env, fn, name));
#else
  for (const char* name : {"cudaPlanCreate", "cudaPlanRun", "cudaPlanRunAsync", "cudaPlanStats", "cudaPlanRelease"})
    exports.Set(name, umbra_binding::function(env, NotBuilt, name));
#endif
}

}  // namespace umbra_binding

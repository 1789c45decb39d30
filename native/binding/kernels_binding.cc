// N-API entry points for the dense/sparse/elementwise kernels. Sync variants block the calling
// JS thread (meant for worker threads and small shapes); *Async variants run on the libuv pool
// and return a Promise. All throw TypeError/RangeError for bad arguments and Error for kernel
// failures; none aborts the process.
#include "common.h"
#include "umbra_kernels.h"

namespace umbra_binding {
namespace {

umbra::Activation activation_at(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const size_t a = to_size(info, i, fn, "activation");
  if (a > 4) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": activation must be 0..4");
  return static_cast<umbra::Activation>(a);
}

int threads_at(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const size_t t = to_size(info, i, fn, "threads");
  if (t < 1 || t > 256) throw Napi::RangeError::New(info.Env(), std::string(fn) + ": threads must be in [1, 256]");
  return static_cast<int>(t);
}

// (x, w, bias|null, y, m, k, n, layout, activation, threads)
umbra::GemmArgs gemm_args(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 10, "expected 10 arguments");
  umbra::GemmArgs g;
  g.m = to_size(info, 4, kName, "m");
  g.k = to_size(info, 5, kName, "k");
  g.n = to_size(info, 6, kName, "n");
  const size_t layout = to_size(info, 7, kName, "layout");
  UMBRA_THROW_IF(env, layout > 2, "layout must be 0 (KxN), 1 (NxK) or 2 (packed)");
  g.layout = static_cast<umbra::WeightLayout>(layout);
  g.activation = activation_at(info, 8, kName);
  g.threads = threads_at(info, 9, kName);
  const size_t w_size = g.layout == umbra::WeightLayout::packed ? umbra::gemm_packed_size(g.k, g.n) : g.k * g.n;
  g.x = f32(env, info[0], g.m * g.k, kName, "x");
  g.w = f32(env, info[1], w_size, kName, g.layout == umbra::WeightLayout::packed ? "packed w" : "w");
  g.bias = f32(env, info[2], g.n, kName, "bias", true);
  g.y = f32(env, info[3], g.m * g.n, kName, "y");
  return g;
}

// Blocking. Throws on bad arguments.
Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    umbra::gemm_f32(gemm_args(info, "gemmF32"));
    return info.Env().Undefined();
  });
}

// Non-blocking: Promise<void>; rejects with the kernel's message.
Napi::Value GemmF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const umbra::GemmArgs g = gemm_args(info, "gemmF32Async");
    return queue(info.Env(), [g] { umbra::gemm_f32(g); }, [](Napi::Env env) { return env.Undefined(); },
                 {info[0], info[1], info[2], info[3]});
  });
}

// (w, k, n, layout, threads) -> Float32Array. Blocking.
Napi::Value GemmPackF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "gemmPackF32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 5, "expected 5 arguments");
    const size_t k = to_size(info, 1, kName, "k"), n = to_size(info, 2, kName, "n");
    const size_t layout = to_size(info, 3, kName, "layout");
    UMBRA_THROW_IF(env, layout > 1, "layout must be 0 (KxN) or 1 (NxK)");
    const int threads = threads_at(info, 4, kName);
    const float* w = f32(env, info[0], k * n, kName, "w");
    Napi::Float32Array out = Napi::Float32Array::New(env, umbra::gemm_packed_size(k, n));
    umbra::gemm_pack_f32(w, k, n, static_cast<umbra::WeightLayout>(layout), out.Data(), threads);
    return out;
  });
}

// (x, rowPtr, colIdx, values, bias|null, y, m, n, k, activation, threads)
umbra::SpmmArgs spmm_args(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 11, "expected 11 arguments");
  umbra::SpmmArgs a;
  a.m = to_size(info, 6, kName, "m");
  a.w.rows = to_size(info, 7, kName, "n");
  a.w.cols = to_size(info, 8, kName, "k");
  a.activation = activation_at(info, 9, kName);
  a.threads = threads_at(info, 10, kName);
  a.w.row_ptr = i32(env, info[1], a.w.rows + 1, kName, "rowPtr");
  const size_t nnz = static_cast<size_t>(a.w.row_ptr[a.w.rows] < 0 ? 0 : a.w.row_ptr[a.w.rows]);
  a.w.nnz = nnz;
  a.w.col_idx = i32(env, info[2], nnz, kName, "colIdx");
  a.w.values = f32(env, info[3], nnz, kName, "values");
  a.x = f32(env, info[0], a.m * a.w.cols, kName, "x");
  a.bias = f32(env, info[4], a.w.rows, kName, "bias", true);
  a.y = f32(env, info[5], a.m * a.w.rows, kName, "y");
  return a;
}

// Blocking. Throws on bad arguments or an inconsistent CSR matrix.
Napi::Value SpmmCsrF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    umbra::spmm_csr_f32(spmm_args(info, "spmmCsrF32"));
    return info.Env().Undefined();
  });
}

// Non-blocking: Promise<void>. The CSR matrix is validated on the libuv thread.
Napi::Value SpmmCsrF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const umbra::SpmmArgs a = spmm_args(info, "spmmCsrF32Async");
    return queue(info.Env(), [a] { umbra::spmm_csr_f32(a); }, [](Napi::Env env) { return env.Undefined(); },
                 {info[0], info[1], info[2], info[3], info[4], info[5]});
  });
}

// (rowPtr, colIdx, values, rows, cols) -> { panelPtr: Int32Array, colIdx: Uint16Array,
// values: Float32Array }. Blocking; throws on an inconsistent CSR matrix.
Napi::Value SparsePackF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "sparsePackF32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 5, "expected 5 arguments");
    umbra::CsrMatrix w;
    w.rows = to_size(info, 3, kName, "rows");
    w.cols = to_size(info, 4, kName, "cols");
    w.row_ptr = i32(env, info[0], w.rows + 1, kName, "rowPtr");
    w.nnz = static_cast<size_t>(w.row_ptr[w.rows] < 0 ? 0 : w.row_ptr[w.rows]);
    w.col_idx = i32(env, info[1], w.nnz, kName, "colIdx");
    w.values = f32(env, info[2], w.nnz, kName, "values");
    const umbra::SparsePanelsOwned packed = umbra::sparse_pack_f32(w);
    Napi::Int32Array panel_ptr = Napi::Int32Array::New(env, packed.panel_ptr.size());
    Napi::Uint16Array col_idx = Napi::Uint16Array::New(env, packed.col_idx.size());
    Napi::Float32Array values = Napi::Float32Array::New(env, packed.values.size());
    std::copy(packed.panel_ptr.begin(), packed.panel_ptr.end(), panel_ptr.Data());
    std::copy(packed.col_idx.begin(), packed.col_idx.end(), col_idx.Data());
    std::copy(packed.values.begin(), packed.values.end(), values.Data());
    Napi::Object out = Napi::Object::New(env);
    out.Set("panelPtr", panel_ptr);
    out.Set("colIdx", col_idx);
    out.Set("values", values);
    return out;
  });
}

// (x, panelPtr, colIdx, values, bias|null, y, m, n, k, activation, threads, xLanes, yLanes):
// xLanes/yLanes 0 for row-major X/Y, else spmm_lanes(m) for transposed ones (see umbra_kernels.h).
umbra::SpmmPanelsArgs spmm_panels_args(const Napi::CallbackInfo& info, const char* kName) {
  const Napi::Env env = info.Env();
  UMBRA_THROW_IF(env, info.Length() != 13, "expected 13 arguments");
  umbra::SpmmPanelsArgs a;
  a.m = to_size(info, 6, kName, "m");
  a.w.rows = to_size(info, 7, kName, "n");
  a.w.cols = to_size(info, 8, kName, "k");
  a.activation = activation_at(info, 9, kName);
  a.threads = threads_at(info, 10, kName);
  const size_t pointers = a.w.panels() * (a.w.rows + 1);
  if (pointers > 0) {
    a.w.panel_ptr = i32(env, info[1], pointers, kName, "panelPtr");
    a.w.nnz = static_cast<size_t>(a.w.panel_ptr[pointers - 1] < 0 ? 0 : a.w.panel_ptr[pointers - 1]);
  }
  a.w.col_idx = u16(env, info[2], a.w.nnz, kName, "colIdx");
  a.w.values = f32(env, info[3], a.w.nnz, kName, "values");
  a.x_lanes = to_size(info, 11, kName, "xLanes");
  a.y_lanes = to_size(info, 12, kName, "yLanes");
  const size_t lanes = umbra::spmm_lanes(a.m);
  UMBRA_THROW_IF(env, (a.x_lanes != 0 && a.x_lanes != lanes) || (a.y_lanes != 0 && a.y_lanes != lanes),
                 "xLanes and yLanes must be 0 or " + std::to_string(lanes) + " for " + std::to_string(a.m) + " rows");
  a.x = f32(env, info[0], a.x_lanes != 0 ? a.w.panels() * umbra::kSparsePanel * lanes : a.m * a.w.cols, kName, "x");
  a.bias = f32(env, info[4], a.w.rows, kName, "bias", true);
  a.y = f32(env, info[5], a.y_lanes != 0 ? a.w.rows * lanes : a.m * a.w.rows, kName, "y");
  return a;
}

// Blocking. Throws on bad arguments or inconsistent panel pointers.
Napi::Value SpmmPanelsF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    umbra::spmm_panels_f32(spmm_panels_args(info, "spmmPanelsF32"));
    return info.Env().Undefined();
  });
}

// Non-blocking: Promise<void>. Pointers are validated on the libuv thread.
Napi::Value SpmmPanelsF32Async(const Napi::CallbackInfo& info) {
  return guarded(info, [&] {
    const umbra::SpmmPanelsArgs a = spmm_panels_args(info, "spmmPanelsF32Async");
    return queue(info.Env(), [a] { umbra::spmm_panels_f32(a); }, [](Napi::Env env) { return env.Undefined(); },
                 {info[0], info[1], info[2], info[3], info[4], info[5]});
  });
}

// (w, rows, cols) -> { rowPtr: Int32Array, colIdx: Int32Array, values: Float32Array }. Blocking.
Napi::Value CsrFromDenseF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "csrFromDenseF32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 3, "expected 3 arguments");
    const size_t rows = to_size(info, 1, kName, "rows"), cols = to_size(info, 2, kName, "cols");
    const float* w = f32(env, info[0], rows * cols, kName, "w");
    const umbra::CsrOwned csr = umbra::csr_from_dense_f32(w, rows, cols);
    Napi::Int32Array row_ptr = Napi::Int32Array::New(env, csr.row_ptr.size());
    Napi::Int32Array col_idx = Napi::Int32Array::New(env, csr.col_idx.size());
    Napi::Float32Array values = Napi::Float32Array::New(env, csr.values.size());
    std::copy(csr.row_ptr.begin(), csr.row_ptr.end(), row_ptr.Data());
    std::copy(csr.col_idx.begin(), csr.col_idx.end(), col_idx.Data());
    std::copy(csr.values.begin(), csr.values.end(), values.Data());
    Napi::Object out = Napi::Object::New(env);
    out.Set("rowPtr", row_ptr);
    out.Set("colIdx", col_idx);
    out.Set("values", values);
    return out;
  });
}

// (data, rows, cols, bias|null, activation) in place. Blocking.
Napi::Value BiasActivationF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "biasActivationF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 5, "expected 5 arguments");
    const size_t rows = to_size(info, 1, kName, "rows"), cols = to_size(info, 2, kName, "cols");
    float* data = f32(env, info[0], rows * cols, kName, "data");
    const float* bias = f32(env, info[3], cols, kName, "bias", true);
    umbra::bias_activation_f32(data, rows, cols, bias, activation_at(info, 4, kName));
    return env.Undefined();
  });
}

// (data, rows, cols) in place. Blocking.
Napi::Value SoftmaxF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "softmaxF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 3, "expected 3 arguments");
    const size_t rows = to_size(info, 1, kName, "rows"), cols = to_size(info, 2, kName, "cols");
    umbra::softmax_f32(f32(env, info[0], rows * cols, kName, "data"), rows, cols);
    return env.Undefined();
  });
}

// (values: Float32Array, out: Float64Array(4)) -> out = [min, max, sum, nonFinite] of the finite
// values (tensor_stats_f32). Blocking: monitoring calls it on the serving thread, tens of µs per MiB.
Napi::Value TensorStatsF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "tensorStatsF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 2, "expected 2 arguments");
    UMBRA_THROW_IF(env, !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array,
                   "values must be a Float32Array");
    const auto values = info[0].As<Napi::Float32Array>();
    double* out = typed<double, napi_float64_array>(env, info[1], 4, kName, "out");
    const umbra::TensorStatsF32 s = umbra::tensor_stats_f32(values.ElementLength() == 0 ? nullptr : values.Data(), values.ElementLength());
    out[0] = s.min;
    out[1] = s.max;
    out[2] = s.sum;
    out[3] = static_cast<double>(s.non_finite);
    return env.Undefined();
  });
}

// (values: Float32Array) -> whether every value is finite (all_finite_f32): the NaN gate on
// wide FP32 inputs, on the serving thread. Blocking.
Napi::Value AllFiniteF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "allFiniteF32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 1, "expected 1 argument");
    const float* values = f32(env, info[0], 0, kName, "values");
    const size_t n = info[0].As<Napi::TypedArray>().ElementLength();
    return Napi::Boolean::New(env, n == 0 || umbra::all_finite_f32(values, n));
  });
}

// (data: Float32Array, rows, cols, out: Float64Array(rows)) -> out[r] = argmax of row r
// (argmax_rows_f32). Blocking.
Napi::Value ArgmaxRowsF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "argmaxRowsF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 4, "expected 4 arguments");
    const size_t rows = to_size(info, 1, kName, "rows"), cols = to_size(info, 2, kName, "cols");
    const float* data = f32(env, info[0], rows * cols, kName, "data");
    double* out = typed<double, napi_float64_array>(env, info[3], rows, kName, "out");
    if (rows > 0) umbra::argmax_rows_f32(data, rows, cols, out);
    return env.Undefined();
  });
}

// (data: Float32Array, n, width, firstColumn, columns, first, step, table: Float64Array,
// cells: Int32Array, points: Float64Array, segment: Uint32Array) -> counts rows first, first +
// step, ... of data into segment (drift_count_f32; the table's layout is in umbra_kernels.h).
// Every index the table holds is checked before a value is counted. Blocking.
Napi::Value DriftCountF32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "driftCountF32";
  return guarded(info, [&] {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 11, "expected 11 arguments");
    const size_t n = to_size(info, 1, kName, "n"), width = to_size(info, 2, kName, "width");
    const size_t first_column = to_size(info, 3, kName, "firstColumn"), columns = to_size(info, 4, kName, "columns");
    const size_t first = to_size(info, 5, kName, "first"), step = to_size(info, 6, kName, "step");
    UMBRA_THROW_IF(env, columns > width, "columns must not exceed width");
    UMBRA_THROW_IF(env, step == 0, "step must be at least 1");
    const float* data = f32(env, info[0], n * width, kName, "data");
    const auto length = [&](size_t i) { return info[i].As<Napi::TypedArray>().ElementLength(); };
    umbra::DriftColumns t{};
    t.table = typed<double, napi_float64_array>(env, info[7], 0, kName, "table");
    t.columns = length(7) / umbra::kDriftColumnStride;
    t.cells = i32(env, info[8], 0, kName, "cells");
    t.cells_length = length(8);
    t.points = typed<double, napi_float64_array>(env, info[9], 0, kName, "points");
    t.points_length = length(9);
    uint32_t* segment = typed<uint32_t, napi_uint32_array>(env, info[10], 0, kName, "segment");
    t.segment_length = length(10);
    const char* wrong = umbra::drift_columns_check(t, first_column, columns);
    if (wrong != nullptr) throw Napi::RangeError::New(env, std::string(kName) + ": " + wrong);
    if (n > first && columns > 0) umbra::drift_count_f32(data, n, width, first_column, columns, first, step, t, segment);
    return env.Undefined();
  });
}

// (n) -> a zeroed Float32Array of n elements whose data starts on a 64-byte boundary (a view
// into a slightly larger ArrayBuffer). For activations the kernels stream as vectors: a row of
// Xt that straddles cache lines measured 2x slower. Non-blocking.
Napi::Value AlignedFloat32(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "alignedFloat32";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 1, "expected 1 argument");
    const size_t n = to_size(info, 0, kName, "n");
    constexpr size_t kAlign = 64;
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, n * sizeof(float) + kAlign);
    const size_t offset = (kAlign - reinterpret_cast<uintptr_t>(buffer.Data()) % kAlign) % kAlign;
    return Napi::Float32Array::New(env, n, buffer, offset);
  });
}

// (view) -> the address of the view's first byte modulo 64. A library that peels a vectorised
// loop to an aligned address sums in an order set by where the data lies: onnxruntime's ReduceSum
// gives one of two answers for the same input at offsets 4 or 8 from a 16-byte boundary. Callers
// copy inputs that are not on a 64-byte boundary before handing them to such a library, so a
// request's answer does not depend on where its bytes landed. Non-blocking.
Napi::Value AddressMod64(const Napi::CallbackInfo& info) {
  constexpr const char* kName = "addressMod64";
  return guarded(info, [&]() -> Napi::Value {
    const Napi::Env env = info.Env();
    UMBRA_THROW_IF(env, info.Length() != 1 || !info[0].IsTypedArray(), "expected a typed array");
    const Napi::TypedArray view = info[0].As<Napi::TypedArray>();
    const auto* base = static_cast<const uint8_t*>(view.ArrayBuffer().Data());
    const uintptr_t address = reinterpret_cast<uintptr_t>(base) + view.ByteOffset();
    return Napi::Number::New(env, static_cast<double>(address % 64));
  });
}

// Non-blocking: the ISA the kernels dispatch to ("avx512" | "avx2" | "portable").
Napi::Value KernelIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), umbra::isa_name(umbra::isa_active()));
}

}  // namespace

void register_kernels(Napi::Env env, Napi::Object exports) {
  exports.Set("gemmF32", umbra_binding::function(env, GemmF32, "gemmF32"));
  exports.Set("gemmF32Async", umbra_binding::function(env, GemmF32Async, "gemmF32Async"));
  exports.Set("gemmPackF32", umbra_binding::function(env, GemmPackF32, "gemmPackF32"));
  exports.Set("spmmCsrF32", umbra_binding::function(env, SpmmCsrF32, "spmmCsrF32"));
  exports.Set("spmmCsrF32Async", umbra_binding::function(env, SpmmCsrF32Async, "spmmCsrF32Async"));
  exports.Set("csrFromDenseF32", umbra_binding::function(env, CsrFromDenseF32, "csrFromDenseF32"));
  exports.Set("sparsePackF32", umbra_binding::function(env, SparsePackF32, "sparsePackF32"));
  exports.Set("spmmPanelsF32", umbra_binding::function(env, SpmmPanelsF32, "spmmPanelsF32"));
  exports.Set("spmmPanelsF32Async", umbra_binding::function(env, SpmmPanelsF32Async, "spmmPanelsF32Async"));
  exports.Set("biasActivationF32", umbra_binding::function(env, BiasActivationF32, "biasActivationF32"));
  exports.Set("softmaxF32", umbra_binding::function(env, SoftmaxF32, "softmaxF32"));
  exports.Set("tensorStatsF32", umbra_binding::function(env, TensorStatsF32, "tensorStatsF32"));
  exports.Set("argmaxRowsF32", umbra_binding::function(env, ArgmaxRowsF32, "argmaxRowsF32"));
  exports.Set("allFiniteF32", umbra_binding::function(env, AllFiniteF32, "allFiniteF32"));
  exports.Set("driftCountF32", umbra_binding::function(env, DriftCountF32, "driftCountF32"));
  exports.Set("kernelIsa", umbra_binding::function(env, KernelIsa, "kernelIsa"));
  exports.Set("alignedFloat32", umbra_binding::function(env, AlignedFloat32, "alignedFloat32"));
  exports.Set("addressMod64", umbra_binding::function(env, AddressMod64, "addressMod64"));
}

}  // namespace umbra_binding

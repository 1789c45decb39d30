// N-API surface of the CUDA backend (cuda* functions on the addon's exports). Always compiled:
// without UMBRA_WITH_CUDA every function except cudaStatus throws "built without CUDA".
#pragma once

#include <napi.h>

namespace umbra_binding {

void RegisterCuda(Napi::Env env, Napi::Object exports);
// The cudaPlan* functions (cuda_plan_binding.cc); called by RegisterCuda.
void RegisterCudaPlan(Napi::Env env, Napi::Object exports);

}  // namespace umbra_binding

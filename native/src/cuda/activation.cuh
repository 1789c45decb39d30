// Device-side bias + activation shared by the GEMM, SpMM and elementwise epilogues. The codes
// are umbra::Activation's (0 none, 1 relu, 2 sigmoid, 3 tanh, 4 gelu); the formulas are the CPU
// kernels' (relu lets NaN through, gelu is the exact erf form). Include from .cu files only.
#pragma once

namespace umbra::cuda {

__device__ __forceinline__ float activate(float x, int act) {
  switch (act) {
    case 1: return x < 0.0f ? 0.0f : x;
    case 2: return 1.0f / (1.0f + expf(-x));
    case 3: return tanhf(x);
    // erfc keeps the relative accuracy for negative x, where 1 + erf(x) cancels.
    case 4: return 0.5f * x * erfcf(-x * 0.70710678118654752f);
    default: return x;
  }
}

}  // namespace umbra::cuda

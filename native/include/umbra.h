// The one C++ surface the binding calls: version, CPU features and backend queries.
// Kernels add their entry points in their own headers under native/src/<backend>/.
#pragma once

#include <string>
#include <vector>

namespace umbra {

constexpr const char* kVersion = "0.1.0";

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
};

// Detected once, on first call; never blocks, never throws.
const CpuFeatures& cpu_features();

// Backends compiled into this build ("cpu" always; "cuda" when built with CUDA).
std::vector<std::string> backends_compiled();

}  // namespace umbra

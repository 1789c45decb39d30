#include "umbra.h"

namespace umbra {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
#endif
    return f;
  }();
  return features;
}

std::vector<std::string> backends_compiled() {
  std::vector<std::string> out{"cpu"};
#ifdef UMBRA_WITH_CUDA
  out.emplace_back("cuda");
#endif
  return out;
}

}  // namespace umbra

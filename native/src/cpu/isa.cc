#include "isa.h"

#include <atomic>
#include <stdexcept>

#include "umbra.h"

namespace umbra {
namespace {

Isa best_supported() {
  const auto& f = cpu_features();
#if defined(UMBRA_HAVE_AVX512)
  if (f.avx512f && f.fma && f.avx2) return Isa::avx512;
#endif
#if defined(UMBRA_HAVE_AVX2)
  if (f.avx2 && f.fma) return Isa::avx2;
#endif
  (void)f;
  return Isa::portable;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(best_supported())};
  return slot;
}

}  // namespace

Isa isa_active() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

bool isa_force(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_supported())) return false;
  active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "portable";
  }
}

Activation activation_from_name(const std::string& name) {
  if (name == "none") return Activation::none;
  if (name == "relu") return Activation::relu;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "gelu") return Activation::gelu;
  throw std::invalid_argument("expected one of none, relu, sigmoid, tanh, gelu for activation but received \"" + name + "\"");
}

}  // namespace umbra

// Picks the instruction-set variant once and lets tests force a lower one.
#pragma once

#include "umbra_kernels.h"

namespace umbra {

// Kernels hold one function per Isa and index this table at call time.
template <typename Fn>
struct IsaTable {
  Fn portable;
  Fn avx2;
  Fn avx512;
  Fn pick() const {
    switch (isa_active()) {
      case Isa::avx512: return avx512 ? avx512 : (avx2 ? avx2 : portable);
      case Isa::avx2: return avx2 ? avx2 : portable;
      default: return portable;
    }
  }
};

}  // namespace umbra

// AVX-512 SpMM: dedicated kernels for batches up to 8 (ymm over an 8-wide Xt) and for 64-column
// blocks (four zmm per stored weight), and the shared batch template at 16 lanes for the rest.
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "../../spmm_block.h"

namespace umbra {
namespace {

// Batches up to 8: one ymm per stored weight over the 8-wide Xt. Per four stored weights the
// indices are masked and scaled to byte offsets in one vector op, and the last 0..3 weights of
// a row's segment run as masked FMAs instead of a data-dependent loop (whose exit would be one
// more branch misprediction on most rows).
struct Acc8 {
  __m256 a0, a1, a2, a3;
};

// acc += the row's stored weights in [j, end) of one panel, whose Xt rows start at xp.
inline void segment_x8(Acc8& acc, const uint16_t* col, const float* val, size_t j, size_t end, const char* xp) {
  const __m128i index_mask = _mm_set1_epi16(static_cast<short>(kSparsePanel - 1));
  auto row = [xp](uint32_t offset) { return _mm256_load_ps(reinterpret_cast<const float*>(xp + offset)); };
  for (; j + 4 <= end; j += 4) {
    __m128i i = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(col + j));
    i = _mm_slli_epi16(_mm_and_si128(i, index_mask), 5);  // a row of 8 floats is 32 bytes
    acc.a0 = _mm256_fmadd_ps(_mm256_set1_ps(val[j]), row(static_cast<uint32_t>(_mm_extract_epi16(i, 0))), acc.a0);
    acc.a1 = _mm256_fmadd_ps(_mm256_set1_ps(val[j + 1]), row(static_cast<uint32_t>(_mm_extract_epi16(i, 1))), acc.a1);
    acc.a2 = _mm256_fmadd_ps(_mm256_set1_ps(val[j + 2]), row(static_cast<uint32_t>(_mm_extract_epi16(i, 2))), acc.a2);
    acc.a3 = _mm256_fmadd_ps(_mm256_set1_ps(val[j + 3]), row(static_cast<uint32_t>(_mm_extract_epi16(i, 3))), acc.a3);
  }
  // 0..3 left: masked loads never read past the arrays; a masked-off weight reads Xt row 0
  // of the panel, and its FMA leaves the sum untouched.
  const unsigned left = static_cast<unsigned>(end - j);
  const __mmask8 m = static_cast<__mmask8>((1u << left) - 1);
  __m128i i = _mm_maskz_loadu_epi16(m, col + j);
  i = _mm_slli_epi16(_mm_and_si128(i, index_mask), 5);
  const __m128 v = _mm_maskz_loadu_ps(m, val + j);
  acc.a0 = _mm256_mask3_fmadd_ps(_mm256_broadcastss_ps(v), row(static_cast<uint32_t>(_mm_extract_epi16(i, 0))), acc.a0,
                                 static_cast<__mmask8>(-(left > 0)));
  acc.a1 = _mm256_mask3_fmadd_ps(_mm256_permutexvar_ps(_mm256_set1_epi32(1), _mm256_castps128_ps256(v)),
                                 row(static_cast<uint32_t>(_mm_extract_epi16(i, 1))), acc.a1, static_cast<__mmask8>(-(left > 1)));
  acc.a2 = _mm256_mask3_fmadd_ps(_mm256_permutexvar_ps(_mm256_set1_epi32(2), _mm256_castps128_ps256(v)),
                                 row(static_cast<uint32_t>(_mm_extract_epi16(i, 2))), acc.a2, static_cast<__mmask8>(-(left > 2)));
}

void spmm_rows_x8(const SpmmBlock& b) {
  const SparsePanels& w = *b.w;
  const size_t panels = w.panels(), stride = w.rows + 1;
  for (size_t q = 0; q < panels; ++q) {
    const bool first = q == 0, last = q + 1 == panels;
    const int32_t* ptr = w.panel_ptr + q * stride;
    const char* xp = reinterpret_cast<const char*>(b.xt + q * kSparsePanel * 8);
    const size_t lines = vec::prefetch_lines(ptr, b.row_begin, b.row_end);
    const bool activates = last && b.activation != Activation::none && b.activation != Activation::relu;
    size_t unactivated = b.row_begin;
    for (size_t n = b.row_begin; n < b.row_end; ++n) {
      float* yr = b.yt + n * 8;
      Acc8 acc{first ? _mm256_setzero_ps() : _mm256_loadu_ps(yr), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      vec::prefetch_ahead(w.values, w.col_idx, static_cast<size_t>(ptr[n]), lines);
      segment_x8(acc, w.col_idx, w.values, static_cast<size_t>(ptr[n]), static_cast<size_t>(ptr[n + 1]), xp);
      __m256 s = _mm256_add_ps(_mm256_add_ps(acc.a0, acc.a1), _mm256_add_ps(acc.a2, acc.a3));
      if (last && b.bias) s = _mm256_add_ps(s, _mm256_set1_ps(b.bias[n]));
      if (last && b.activation == Activation::relu) s = _mm256_max_ps(_mm256_setzero_ps(), s);  // NaN passes, as in bias_activation
      _mm256_storeu_ps(yr, s);
      if (activates && (n + 1 - unactivated == vec::kActivateRows || n + 1 == b.row_end)) {
        vec::activate_rows(b, unactivated, n + 1, 8);
        unactivated = n + 1;
      }
    }
  }
}

// 64 batch columns (four zmm per stored weight), two weights in flight. The Xt row's address
// is formed once per weight so its four FMAs read memory at base + displacement (each one
// fused uop; an indexed operand would split in two). A row's odd last weight is a masked FMA,
// not a branch.
//
// One panel's rows of Xt are 128 KiB here, past L1, so the FMAs wait on L2. When rows are long
// (mean >= kBandFrom stored weights per panel, i.e. below ~75% sparsity) the panel is walked in
// kBands column bands (64 KiB of Xt each, mostly L1 hits), a row's cursor kept between bands:
// 1.4x at 60% sparsity. At shorter rows the extra visit per row costs more than L1 saves (0.75x
// at 90%; four bands measured slower than two at both). Entries within a row are normally sorted by column (the packer
// keeps CSR order); when they are not, each entry is still summed exactly once, in whichever
// band reaches it (Xt holds the whole panel), only slower.
constexpr size_t kBands = 2;
constexpr size_t kBandFrom = 128;

template <size_t Stride>
void spmm_rows_x64(const SpmmBlock& b) {
  constexpr int U = 2;
  const SparsePanels& w = *b.w;
  const size_t panels = w.panels(), stride = w.rows + 1;
  const size_t ld = Stride != 0 ? Stride : b.ldxt;
  const uint16_t* col = w.col_idx;
  const float* val = w.values;
  auto fma4 = [](__m512* acc, __m512 v, const float* xr, __mmask16 k) {
    __asm__("" : "+r"(xr));  // keep the address in one register: the compiler would re-index each load
    for (int i = 0; i < 4; ++i) acc[i] = _mm512_mask3_fmadd_ps(v, _mm512_loadu_ps(xr + 16 * i), acc[i], k);
  };
  auto row_of = [&](const float* xp, size_t j) { return xp + static_cast<size_t>(col[j] & (kSparsePanel - 1)) * ld; };
  thread_local std::vector<uint32_t> cursor;
  if (cursor.size() < b.row_end - b.row_begin) cursor.resize(b.row_end - b.row_begin);
  uint32_t* cur = cursor.data() - b.row_begin;
  for (size_t q = 0; q < panels; ++q) {
    const int32_t* ptr = w.panel_ptr + q * stride;
    const float* xp = b.xt + q * kSparsePanel * ld;
    const size_t lines = vec::prefetch_lines(ptr, b.row_begin, b.row_end);
    const size_t bands = vec::mean_length(ptr, b.row_begin, b.row_end) >= kBandFrom ? kBands : 1;
    for (size_t band = 0; band < bands; ++band) {
      const bool first = q == 0 && band == 0, final_band = band + 1 == bands, last = q + 1 == panels && final_band;
      const uint32_t bound = static_cast<uint32_t>(kSparsePanel / bands * (band + 1));
      const bool activates = last && b.activation != Activation::none && b.activation != Activation::relu;
      size_t unactivated = b.row_begin;
      for (size_t n = b.row_begin; n < b.row_end; ++n) {
        float* yr = b.yt + n * b.ldxt;
        if (band == 0) vec::prefetch_ahead(val, col, static_cast<size_t>(ptr[n]), lines);
        __m512 acc[U][4];
        for (int u = 0; u < U; ++u)
          for (int i = 0; i < 4; ++i) acc[u][i] = u == 0 && !first ? _mm512_loadu_ps(yr + 16 * i) : _mm512_setzero_ps();
        size_t j = band == 0 ? static_cast<size_t>(ptr[n]) : cur[n];
        const size_t end = static_cast<size_t>(ptr[n + 1]);
        if (final_band) {
          for (; j + U <= end; j += U)
            for (int u = 0; u < U; ++u) fma4(acc[u], _mm512_set1_ps(val[j + u]), row_of(xp, j + u), 0xFFFF);
          // Up to U - 1 left, as masked FMAs: masked loads stay inside the arrays, and a
          // masked-off weight reads Xt row 0 of the panel without touching the sum.
          const unsigned left = static_cast<unsigned>(end - j);
          const __mmask8 m = static_cast<__mmask8>((1u << left) - 1);
          alignas(16) uint16_t idx[8];
          alignas(16) float v[4];
          _mm_store_si128(reinterpret_cast<__m128i*>(idx), _mm_maskz_loadu_epi16(m, col + j));
          _mm_store_ps(v, _mm_maskz_loadu_ps(m, val + j));
          for (int u = 0; u + 1 < U; ++u)
            fma4(acc[u], _mm512_set1_ps(v[u]), xp + static_cast<size_t>(idx[u] & (kSparsePanel - 1)) * ld,
                 static_cast<__mmask16>(-static_cast<int>(left > static_cast<unsigned>(u))));
        } else {
          for (; j + U <= end && static_cast<uint32_t>(col[j + U - 1] & (kSparsePanel - 1)) < bound; j += U)
            for (int u = 0; u < U; ++u) fma4(acc[u], _mm512_set1_ps(val[j + u]), row_of(xp, j + u), 0xFFFF);
          if (j < end && static_cast<uint32_t>(col[j] & (kSparsePanel - 1)) < bound) {
            fma4(acc[0], _mm512_set1_ps(val[j]), row_of(xp, j), 0xFFFF);
            ++j;
          }
          cur[n] = static_cast<uint32_t>(j);
        }
        const __m512 bias = last && b.bias ? _mm512_set1_ps(b.bias[n]) : _mm512_setzero_ps();
        for (int i = 0; i < 4; ++i) {
          __m512 s = acc[0][i];
          for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[u][i]);
          s = _mm512_add_ps(s, bias);
          if (last && b.activation == Activation::relu) s = _mm512_max_ps(_mm512_setzero_ps(), s);
          _mm512_storeu_ps(yr + 16 * i, s);
        }
        if (activates && (n + 1 - unactivated == vec::kActivateRows || n + 1 == b.row_end)) {
          vec::activate_rows(b, unactivated, n + 1, 64);
          unactivated = n + 1;
        }
      }
    }
  }
}

}  // namespace

// Batches up to 8 use 8-lane vectors over an 8-wide Xt: half the bytes per stored weight.
// Blocks of 49..64 columns take the 64-column kernel (lanes past the batch are zero in Xt).
void spmm_block_avx512(const SpmmBlock& block) {
  if (block.ldxt <= 8) spmm_rows_x8(block);
  else if (block.batch > 48 && block.batch <= 64) {
    if (block.ldxt == 64) spmm_rows_x64<64>(block);
    else spmm_rows_x64<0>(block);
  } else vec::spmm_block<16, 4>(block);
}

void transpose_in_avx512(const float* x, size_t m, size_t k, float* xt, size_t ldxt, size_t k0, size_t k1) {
  vec::transpose_in_x8(x, m, k, xt, ldxt, k0, k1);
}

void transpose_out_avx512(const float* yt, size_t ldyt, size_t m0, size_t batch, size_t r0, size_t r1, float* y, size_t n) {
  vec::transpose_out_x8(yt, ldyt, m0, batch, r0, r1, y, n);
}


}  // namespace umbra

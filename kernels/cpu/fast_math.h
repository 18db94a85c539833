#pragma once
// Branch-free exp and tanh that the compiler can vectorise (std::exp and std::tanh are
// scalar library calls and made GELU and softmax run at a few hundred MB/s).
// exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and the degree-6 minimax
// polynomial of Cephes' expf; relative error about 2e-7 (a couple of float ulps) over the
// whole float range. tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|), except for
// |x| < 0.3 where 1 - e cancels: there the odd Taylor series to x^9 (next term < 2e-8).
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/cpu/simd.h"

namespace minipipe::kernels::cpu {

// x * 2^n for an integral n in [-150, 128], for a float and for sixteen at once (simd.h).
// AVX-512 has one instruction for it (vscalefps, which also rounds a denormal result once);
// elsewhere 2^n is built as 2^half * 2^(n - half), each factor a normal float, so that results
// near overflow and in the denormal range come out right.
#if defined(__AVX512F__)
inline float scale_by_power_of_two(float x, float n) {
  return _mm_cvtss_f32(_mm_scalef_ss(_mm_set_ss(x), _mm_set_ss(n)));
}
// (The zero-masked form with every lane kept is the same instruction; the plain intrinsic
// passes GCC 12 an undefined vector that its -Wmaybe-uninitialized reports in every caller.)
inline Floats16 scale_by_power_of_two(Floats16 x, Floats16 n) {
  return reinterpret_cast<Floats16>(
      _mm512_maskz_scalef_ps(0xFFFF, reinterpret_cast<__m512>(x), reinterpret_cast<__m512>(n)));
}
#else
inline float float_from_bits(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline Floats16 float_from_bits(Ints16 bits) {
  Floats16 f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline int32_t truncate_to_int(float x) { return static_cast<int32_t>(x); }
inline Ints16 truncate_to_int(Floats16 x) { return __builtin_convertvector(x, Ints16); }
template <class F>
inline F scale_by_power_of_two(F x, F n) {
  const auto whole = truncate_to_int(n);
  const auto half = whole / 2;
  return x * float_from_bits((half + 127) << 23) * float_from_bits((whole - half + 127) << 23);
}
#endif

// One template for both, so that a lane of the sixteen gives the scalar's result bit for bit.
template <class F>
inline F fast_exp_in_range(F x) {
  // Round to nearest by adding and removing 1.5 * 2^23 (no library call, so it vectorises).
  const F n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  F r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F exp_r = p * r * r + r + 1.0f;
  return scale_by_power_of_two(exp_r, n);
}

template <class F>
inline F fast_exp(F x) {
  // Beyond float's range exp is +inf or 0; the clamp keeps n in the range above.
  const F low = splat<F>(-104.0f), high = splat<F>(88.8f), zero = splat<F>(0.0f);
  const F inside = x < low ? low : (x > high ? high : x);
  const F result = fast_exp_in_range(inside);
  return x < low ? zero : result;  // exp(88.8) already overflows to +inf
}

template <class F>
inline F fast_tanh(F x) {
  const F magnitude = x < 0.0f ? -x : x;
  const F e = fast_exp(-2.0f * magnitude);
  const F large = (1.0f - e) / (1.0f + e);
  const F x2 = x * x;
  const F series = x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835)))));
  return magnitude < 0.3f ? series : (x < 0.0f ? -large : large);
}

}  // namespace minipipe::kernels::cpu

#pragma once
// Branch-free exp and tanh that the compiler can vectorise (std::exp and std::tanh are
// scalar library calls and made GELU and softmax run at a few hundred MB/s).
// exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and the degree-6 minimax
// polynomial of Cephes' expf; relative error about 2e-7 (a couple of float ulps) over the
// whole float range. tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|), except for
// |x| < 0.3 where 1 - e cancels: there the odd Taylor series to x^9 (next term < 2e-8).
#include <cstdint>
#include <cstring>

namespace minipipe::kernels::cpu {

inline float fast_exp_in_range(float x) {
  // Round to nearest by adding and removing 1.5 * 2^23 (no library call, so it vectorises).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float exp_r = p * r * r + r + 1.0f;
  // 2^n as 2^half * 2^(n - half): each factor is a normal float for n in [-150, 128], so
  // results near overflow and in the denormal range come out right.
  const int32_t whole = static_cast<int32_t>(n), half = whole / 2;
  const int32_t bits_low = (half + 127) << 23, bits_high = (whole - half + 127) << 23;
  float low, high;
  std::memcpy(&low, &bits_low, sizeof low);
  std::memcpy(&high, &bits_high, sizeof high);
  return exp_r * low * high;
}

inline float fast_exp(float x) {
  // Beyond float's range exp is +inf or 0; the clamp keeps n in the range above.
  const float inside = x < -104.0f ? -104.0f : (x > 88.8f ? 88.8f : x);
  const float result = fast_exp_in_range(inside);
  return x < -104.0f ? 0.0f : result;  // exp(88.8) already overflows to +inf
}

inline float fast_tanh(float x) {
  const float magnitude = x < 0.0f ? -x : x;
  const float e = fast_exp(-2.0f * magnitude);
  const float large = (1.0f - e) / (1.0f + e);
  const float x2 = x * x;
  const float series =
      x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835)))));
  return magnitude < 0.3f ? series : (x < 0.0f ? -large : large);
}

}  // namespace minipipe::kernels::cpu

#pragma once
// Sums (and maxima) of float sequences that vectorise. Without -ffast-math the compiler must keep a single
// running sum in program order, one add per FP-add latency; sixteen independent partial sums
// let it use one vector add per sixteen terms. Partials are combined in double, so a long
// sum loses no more than a plain float loop would over sixteen times fewer terms.
#include <cstdint>

namespace minipipe::kernels::cpu {

// sum over i in [0, n) of term(i), where term returns float.
template <class Term>
double lane_sum(int64_t n, Term term) {
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int lane = 0; lane < kLanes; ++lane) lanes[lane] += term(i + lane);
  double total = 0.0;
  for (; i < n; ++i) total += term(i);
  for (float lane : lanes) total += lane;
  return total;
}

// max over i in [0, n) of x[i], n >= 1; the same sixteen-lane trick (a float max reduction
// is no more reorderable than a sum for the compiler: it must keep NaN and -0.0 order).
inline float lane_max(const float* x, int64_t n) {
  constexpr int kLanes = 16;
  float lanes[kLanes];
  for (float& lane : lanes) lane = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int lane = 0; lane < kLanes; ++lane) lanes[lane] = lanes[lane] < x[i + lane] ? x[i + lane] : lanes[lane];
  float result = x[0];
  for (; i < n; ++i) result = result < x[i] ? x[i] : result;
  for (float lane : lanes) result = result < lane ? lane : result;
  return result;
}

}  // namespace minipipe::kernels::cpu

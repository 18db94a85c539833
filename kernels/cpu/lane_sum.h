#pragma once
// Sums (and maxima) of float sequences that vectorise. Without -ffast-math the compiler must
// keep a single running sum in program order, one add per FP-add latency; sixteen independent
// partial sums let it use one vector add per sixteen terms. Partials are combined in double,
// so a long sum loses no more than a plain float loop would over sixteen times fewer terms.
// Lane l sums the terms i = l (mod 16) below the last multiple of 16; the rest are added in
// double after them, then the lanes in order: every function here adds in that order, so they
// agree bit for bit with each other.
#include <cstdint>

#include "kernels/cpu/simd.h"

namespace minipipe::kernels::cpu {

// sum over i in [0, n) of term(i), where term returns float. For terms the compiler turns
// into vector code by itself (loads and products); lane_sum16 below for the others.
template <class Term>
double lane_sum(int64_t n, Term term) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int lane = 0; lane < kLanes; ++lane) lanes[lane] += term(i + lane);
  double total = 0.0;
  for (; i < n; ++i) total += term(i);
  for (float lane : lanes) total += lane;
  return total;
}

// The same sum with the terms given sixteen at a time: terms16(i) returns the Floats16 of
// term(i), ..., term(i + 15) and term(i) one term (the tail). For terms with a call the
// compiler will not vectorise inside a reduction (fast_exp), or side effects (a store).
template <class Terms16, class Term>
double lane_sum16(int64_t n, Terms16 terms16, Term term) {
  Floats16 lanes = splat16(0.0f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) lanes += terms16(i);
  double total = 0.0;
  for (; i < n; ++i) total += term(i);
  for (int lane = 0; lane < kLanes; ++lane) total += lanes[lane];
  return total;
}

// max over i in [0, n) of x[i], n >= 1; the same sixteen-lane trick (a float max reduction
// is no more reorderable than a sum for the compiler: it must keep NaN and -0.0 order).
inline float lane_max(const float* x, int64_t n) {
  Floats16 lanes = splat16(x[0]);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) lanes = max16(lanes, load16(x + i));
  float result = x[0];
  for (; i < n; ++i) result = result < x[i] ? x[i] : result;
  for (int lane = 0; lane < kLanes; ++lane) result = result < lanes[lane] ? lanes[lane] : result;
  return result;
}

}  // namespace minipipe::kernels::cpu

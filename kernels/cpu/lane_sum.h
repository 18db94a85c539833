#pragma once
// Sums of float sequences that vectorise. Without -ffast-math the compiler must keep a single
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

}  // namespace minipipe::kernels::cpu

#pragma once
// Small helpers shared by the op benchmarks: the median of repeated timings, and a shape
// written as the tables print it.
#include <algorithm>
#include <string>
#include <vector>

#include "tensor/shape.h"

namespace minipipe::benchmarks {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// {4096, 768} -> "4096x768"
inline std::string dims(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

}  // namespace minipipe::benchmarks

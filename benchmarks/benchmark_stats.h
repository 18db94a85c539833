#pragma once
// Small helpers shared by the op benchmarks: the median of repeated timings, timings
// interleaved across the variants they compare, a shape written as the tables print it, and
// the JSON file of their rows.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "tensor/shape.h"

namespace minipipe::benchmarks {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

inline double seconds_of(const std::function<void()>& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The median seconds of each function (null ones skipped: 0), timed `repeats` times in turn
// after one warm-up each, so that a slow spell of a shared machine slows them all alike.
inline std::vector<double> time_interleaved(int repeats, const std::vector<std::function<void()>>& functions) {
  std::vector<std::vector<double>> seconds(functions.size());
  for (const auto& f : functions)
    if (f) f();
  for (int i = 0; i < repeats; ++i)
    for (size_t j = 0; j < functions.size(); ++j)
      if (functions[j]) seconds[j].push_back(seconds_of(functions[j]));
  std::vector<double> medians;
  for (const auto& s : seconds) medians.push_back(s.empty() ? 0.0 : median(s));
  return medians;
}

// {4096, 768} -> "4096x768"
inline std::string dims(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

// Writes `objects` (each one JSON object, already formatted) as a JSON array, one per line.
// False, after saying so on stderr, when the file cannot be written.
inline bool write_json_array(const std::string& path, const std::vector<std::string>& objects) {
  std::ofstream out(path);
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  out << "[\n";
  for (size_t i = 0; i < objects.size(); ++i) out << "  " << objects[i] << (i + 1 < objects.size() ? "," : "") << "\n";
  out << "]\n";
  return static_cast<bool>(out);
}

}  // namespace minipipe::benchmarks

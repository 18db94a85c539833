#pragma once
// Small helpers shared by the op benchmarks: the median of repeated timings, a shape
// written as the tables print it, and the JSON file of their rows.
#include <algorithm>
#include <cstdio>
#include <fstream>
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

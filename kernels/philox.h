#pragma once
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
// a counter-based generator. The numbers are a pure function of (key, counter), so any
// element of a random tensor can be drawn alone, on any device, in any order: this is
// what makes dropout masks independent of partitioning and schedule (DESIGN.md decision 9).
#include <cmath>
#include <cstdint>

#include "kernels/host_device.h"

namespace minipipe::kernels {

struct Philox4 {
  uint32_t v[4];
};

MINIPIPE_HOST_DEVICE inline Philox4 philox4x32(uint64_t key, uint64_t stream, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) from the top 24 bits: exactly representable in float32.
MINIPIPE_HOST_DEVICE inline float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Element `index` of the uniform stream (key, stream).
MINIPIPE_HOST_DEVICE inline float philox_uniform(uint64_t key, uint64_t stream, uint64_t index) {
  return uniform_from_bits(philox4x32(key, stream, index / 4).v[index % 4]);
}

// Element `index` of the standard-normal stream (key, stream), by Box-Muller on two of the
// four words of one Philox block.
MINIPIPE_HOST_DEVICE inline float philox_normal(uint64_t key, uint64_t stream, uint64_t index) {
  const Philox4 block = philox4x32(key, stream, index / 2);
  const int pair = static_cast<int>(index % 2) * 2;
  const float u1 = (static_cast<float>(block.v[pair] >> 8) + 1.0f) * (1.0f / 16777216.0f);
  const float u2 = uniform_from_bits(block.v[pair + 1]);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
}

}  // namespace minipipe::kernels

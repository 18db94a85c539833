#pragma once
// Sixteen floats as one value, with GCC's vector extension: + - * /, comparisons and ?: act
// lane by lane and compile to one AVX-512 instruction each (two AVX2 or four SSE ones on
// other CPUs). For the loops the compiler does not vectorise by itself: reductions (it must
// keep a float sum or max in program order) and loops whose bodies hold such a reduction.
// Every lane computes exactly what the scalar code computes on its element, so a kernel may
// mix the two at a range's ends and still give results that do not depend on where the
// kernel threads cut the ranges. (GCC contracts a * b + c into one FMA in C++ whatever -std
// says, but alike for a float and for sixteen: one template's two instantiations compile to
// the same operations; tests/kernels_test.cpp checks the bits.)
#include <cstdint>
#include <cstring>
#include <utility>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace minipipe::kernels::cpu {

constexpr int kLanes = 16;
typedef float Floats16 __attribute__((vector_size(64)));
typedef int32_t Ints16 __attribute__((vector_size(64)));

// Unaligned loads and stores typed as floats: with std::memcpy they were char accesses, which
// may alias anything, so a loop reread every pointer it held in memory (a kernel thread's
// lambda holds its arrays by reference) after each store: exp took 15.6 cycles per sixteen
// floats instead of 10, GELU 21 instead of 18. (A vector of floats aliases floats only.)
typedef float UnalignedFloats16 __attribute__((vector_size(64), aligned(4)));
inline Floats16 load16(const float* p) { return *reinterpret_cast<const UnalignedFloats16*>(p); }
inline void store16(float* p, Floats16 v) { *reinterpret_cast<UnalignedFloats16*>(p) = v; }

// x in every lane: one broadcast (Floats16{} + x would cost an add, to turn -0 into +0).
inline Floats16 splat16(float x) { return Floats16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

// Makes the compiler hold v in a register from here on. A value that several FMAs use is
// otherwise loaded again by each of them (the load folded into the FMA), and a small tile
// then waits on loads rather than on multiplies.
inline void keep_in_register(Floats16& v) {
#if defined(__AVX512F__)
  __asm__("" : "+v"(v));
#else
  (void)v;
#endif
}

// One float or sixteen from p, and back: for code written once for both widths.
template <class F>
F load(const float* p);
template <>
inline float load<float>(const float* p) { return *p; }
template <>
inline Floats16 load<Floats16>(const float* p) { return load16(p); }
inline void store(float* p, float x) { *p = x; }
inline void store(float* p, Floats16 v) { store16(p, v); }

// x as an F: for code written once for a float and for sixteen (fast_math.h).
template <class F>
F splat(float x);
template <>
inline float splat<float>(float x) { return x; }
template <>
inline Floats16 splat<Floats16>(float x) { return splat16(x); }

// A store of 64 bytes at a 64-byte aligned p that skips the caches (AVX-512's streaming
// store; a plain store elsewhere): for outputs larger than the caches, whose lines would
// otherwise first be read from memory only to be overwritten. stream_fence() after the last
// one, before another thread reads them.
inline void stream16(void* p, Ints16 v) {
#if defined(__AVX512F__)
  _mm512_stream_si512(static_cast<__m512i*>(p), reinterpret_cast<__m512i>(v));
#else
  std::memcpy(p, &v, sizeof v);
#endif
}
inline void stream_fence() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

namespace detail {
// The two-source shuffles of transpose16's step h (indices >= 16 pick the second source's
// lane index - 16): lower takes lanes j with (j & h) == 0 from the first vector and the
// others from the second's lane j - h; upper is the mirror. Built as constants from an index
// pack, so that each step is one permute per vector: indices filled in a loop were assembled
// lane by lane at run time, and the tile then took 94 ns instead of 12.
template <int h, std::size_t... j>
constexpr Ints16 lower_lanes(std::index_sequence<j...>) {
  return Ints16{((j & h) ? static_cast<int32_t>(kLanes + j - h) : static_cast<int32_t>(j))...};
}
template <int h, std::size_t... j>
constexpr Ints16 upper_lanes(std::index_sequence<j...>) {
  return Ints16{((j & h) ? static_cast<int32_t>(kLanes + j) : static_cast<int32_t>(j + h))...};
}
// Swaps the off-diagonal h x h blocks of every 2h x 2h block of the 16 x 16 tile v.
template <int h>
inline void swap_blocks(Ints16 (&v)[kLanes]) {
  constexpr Ints16 lower = lower_lanes<h>(std::make_index_sequence<kLanes>{});
  constexpr Ints16 upper = upper_lanes<h>(std::make_index_sequence<kLanes>{});
#pragma GCC unroll 16
  for (int i = 0; i < kLanes; ++i) {
    if (i & h) continue;
    const Ints16 a = v[i], b = v[i + h];
    v[i] = __builtin_shuffle(a, b, lower);
    v[i + h] = __builtin_shuffle(a, b, upper);
  }
}
}  // namespace detail

// A 16 x 16 tile of 32-bit values transposed in registers: afterwards lane c of v[r] holds
// what lane r of v[c] held. After swapping blocks of 8, 4, 2 and 1 every element has crossed
// the diagonal (64 two-source permutes on AVX-512).
inline void transpose16(Ints16 (&v)[kLanes]) {
  detail::swap_blocks<8>(v);
  detail::swap_blocks<4>(v);
  detail::swap_blocks<2>(v);
  detail::swap_blocks<1>(v);
}

// t[r * t_stride + c] = s[c * s_stride + r] for r, c < 16: sixteen rows of s loaded as
// vectors, transposed in registers, stored as sixteen rows of t (with streaming stores,
// each t row then a whole aligned cache line, for outputs larger than the caches).
template <bool kStreaming = false>
inline void copy_transposed16(const uint32_t* s, int64_t s_stride, uint32_t* t, int64_t t_stride) {
  Ints16 v[kLanes];
  for (int i = 0; i < kLanes; ++i) std::memcpy(&v[i], s + i * s_stride, sizeof v[i]);
  transpose16(v);
  for (int i = 0; i < kLanes; ++i) {
    if constexpr (kStreaming)
      stream16(t + i * t_stride, v[i]);
    else
      std::memcpy(t + i * t_stride, &v[i], sizeof v[i]);
  }
}

// Lane by lane, as the scalar code writes them (a < b ? b : a keeps the first of equal values).
inline Floats16 max16(Floats16 a, Floats16 b) { return a < b ? b : a; }

// a * b + c, rounded once where the CPU fuses it (AVX-512), twice elsewhere: for kernels
// whose lanes need not match a scalar loop bit for bit (fused attention's blocks).
inline Floats16 fma16(Floats16 a, Floats16 b, Floats16 c) {
#if defined(__AVX512F__)
  return reinterpret_cast<Floats16>(_mm512_fmadd_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b),
                                                   reinterpret_cast<__m512>(c)));
#else
  return a * b + c;
#endif
}

}  // namespace minipipe::kernels::cpu

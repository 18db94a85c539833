#pragma once
// Sixteen floats as one value, with GCC's vector extension: + - * /, comparisons and ?: act
// lane by lane and compile to one AVX-512 instruction each (two AVX2 or four SSE ones on
// other CPUs). For the loops the compiler does not vectorise by itself: reductions (it must
// keep a float sum or max in program order) and loops whose bodies hold such a reduction.
// Every lane computes exactly what the scalar code computes on its element (no FMA
// contraction under -std=c++20), so a kernel may mix the two at a range's ends and still
// give results that do not depend on where the kernel threads cut the ranges.
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace minipipe::kernels::cpu {

constexpr int kLanes = 16;
typedef float Floats16 __attribute__((vector_size(64)));
typedef int32_t Ints16 __attribute__((vector_size(64)));

inline Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);  // an unaligned load
  return v;
}

inline void store16(float* p, Floats16 v) { std::memcpy(p, &v, sizeof v); }

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

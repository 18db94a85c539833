#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/threads.h"
#include "kernels/gelu.h"

namespace minipipe::kernels::cpu {

namespace {

// GELU's formula, written once for both backends (kernels/gelu.h), with the vectorisable exp.
// A function object, not a function pointer, so that the loops stay inlined and vectorised.
// Like exp, each takes a float or sixteen (simd.h).
struct FastExp {
  template <class F>
  F operator()(F x) const {
    return fast_exp(x);
  }
};
template <class F>
F gelu(F x) {
  return kernels::gelu(x, FastExp{});
}
template <class F>
F gelu_derivative(F x) {
  return kernels::gelu_derivative(x, FastExp{});
}
template <class F>
F sigmoid(F x) {
  return 1.0f / (1.0f + fast_exp(-x));
}

// One loop per op, so that each loop body is a straight line the compiler can vectorise;
// the kernel threads (threads.h) take a range of elements each. The op must be a lambda:
// the loop runs behind parallel_ranges' std::function, where a function pointer is no
// longer a known function, is not inlined, and the loop no longer vectorises (10x slower).
template <class F>
void map(const float* x, float* y, int64_t n, F f) {
  static_assert(!std::is_pointer_v<F>, "pass the op as a lambda");
  parallel_ranges(n, 2, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
}

// map for ops with an exp (or tanh) inside: the compiler vectorises those loops itself, but
// into masked code that ran GELU 20% slower than sixteen lanes written out (simd.h). f takes
// a float or a Floats16 (a generic lambda); the lanes give the float's bits, so where the
// threads cut the ranges does not matter.
template <class F>
void map16(const float* x, float* y, int64_t n, F f) {
  parallel_ranges(n, 2, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) store16(y + i, f(load16(x + i)));
    for (; i < end; ++i) y[i] = f(x[i]);
  });
}

// dx[i] = dy[i] * derivative(v[i]), with v the input or the output of the op (whichever
// the derivative is written in), or no array at all for constant derivatives.
template <class F>
void map_backward(const float* v, const float* dy, float* dx, int64_t n, F derivative) {
  static_assert(!std::is_pointer_v<F>, "pass the derivative as a lambda");
  parallel_ranges(n, 3, [&](int64_t begin, int64_t end) {
    if (!v) {
      for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * derivative(0.0f);
      return;
    }
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * derivative(v[i]);
  });
}

template <class F>
void map_backward16(const float* v, const float* dy, float* dx, int64_t n, F derivative) {
  parallel_ranges(n, 3, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) store16(dx + i, load16(dy + i) * derivative(load16(v + i)));
    for (; i < end; ++i) dx[i] = dy[i] * derivative(v[i]);
  });
}

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float parameter) {
  switch (op) {
    case UnaryOp::Neg: return map(x, y, n, [](float v) { return -v; });
    case UnaryOp::Exp: return map16(x, y, n, [](auto v) { return fast_exp(v); });
    case UnaryOp::Log: return map(x, y, n, [](float v) { return std::log(v); });
    case UnaryOp::Sqrt: return map(x, y, n, [](float v) { return std::sqrt(v); });
    case UnaryOp::Relu: return map(x, y, n, [](float v) { return v > 0.0f ? v : 0.0f; });
    case UnaryOp::Gelu: return map16(x, y, n, [](auto v) { return gelu(v); });
    case UnaryOp::Tanh: return map16(x, y, n, [](auto v) { return fast_tanh(v); });
    case UnaryOp::Sigmoid: return map16(x, y, n, [](auto v) { return sigmoid(v); });
    case UnaryOp::Pow: return map(x, y, n, [parameter](float v) { return std::pow(v, parameter); });
    case UnaryOp::Scale: return map(x, y, n, [parameter](float v) { return v * parameter; });
    case UnaryOp::AddScalar: return map(x, y, n, [parameter](float v) { return v + parameter; });
  }
}

void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                    int64_t n, float parameter) {
  switch (op) {  // derivatives in terms of x (the input) or y (the output)
    case UnaryOp::Neg: return map_backward(nullptr, dy, dx, n, [](float) { return -1.0f; });
    case UnaryOp::Exp: return map_backward(y, dy, dx, n, [](float v) { return v; });
    case UnaryOp::Log: return map_backward(x, dy, dx, n, [](float u) { return 1.0f / u; });
    case UnaryOp::Sqrt: return map_backward(y, dy, dx, n, [](float v) { return 0.5f / v; });
    case UnaryOp::Relu: return map_backward(x, dy, dx, n, [](float u) { return u > 0.0f ? 1.0f : 0.0f; });
    case UnaryOp::Gelu: return map_backward16(x, dy, dx, n, [](auto u) { return gelu_derivative(u); });
    case UnaryOp::Tanh: return map_backward(y, dy, dx, n, [](float v) { return 1.0f - v * v; });
    case UnaryOp::Sigmoid: return map_backward(y, dy, dx, n, [](float v) { return v * (1.0f - v); });
    case UnaryOp::Pow:
      return map_backward(x, dy, dx, n, [parameter](float u) { return parameter * std::pow(u, parameter - 1.0f); });
    case UnaryOp::Scale: return map_backward(nullptr, dy, dx, n, [parameter](float) { return parameter; });
    case UnaryOp::AddScalar: return map_backward(nullptr, dy, dx, n, [](float) { return 1.0f; });
  }
}

namespace {

// The innermost dim, with the stride patterns that matter specialised so they vectorise.
template <BinaryOp op>
void binary_row(const float* a, int64_t sa, const float* b, int64_t sb, float* out, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = apply(op, a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) out[i] = apply(op, a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) out[i] = apply(op, av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = apply(op, a[i * sa], b[i * sb]);
  }
}

// Visits every row (all dims but the last) of an N-d walk over two strided arrays:
// row(index of the row, offset into the first, offset into the second). The kernel threads
// take a range of rows each; a range starts its odometer at its first row's coordinates.
template <class Row>
void for_each_row(const int64_t* shape, const int64_t* first_strides, const int64_t* second_strides, int ndim, Row row) {
  int64_t rows = 1;
  for (int d = 0; d < ndim - 1; ++d) rows *= shape[d];
  parallel_ranges(rows, 2 * shape[ndim - 1], [&](int64_t begin, int64_t end) {
    int64_t index[kMaxDims] = {0};
    for (int64_t d = ndim - 2, rest = begin; d >= 0; --d) {
      index[d] = rest % shape[d];
      rest /= shape[d];
    }
    for (int64_t r = begin; r < end; ++r) {
      int64_t first = 0, second = 0;
      for (int d = 0; d < ndim - 1; ++d) {
        first += index[d] * first_strides[d];
        second += index[d] * second_strides[d];
      }
      row(r, first, second);
      for (int d = ndim - 2; d >= 0; --d) {  // odometer increment over the outer dims
        if (++index[d] < shape[d]) break;
        index[d] = 0;
      }
    }
  });
}

template <BinaryOp op>
void binary_walk(const float* a, const int64_t* as, const float* b, const int64_t* bs,
                 float* out, const int64_t* shape, int ndim) {
  if (ndim == 0) {
    *out = apply(op, *a, *b);
    return;
  }
  const int64_t inner = shape[ndim - 1];
  if (ndim == 1) {  // one row: the threads take ranges of it
    parallel_ranges(inner, 3, [&](int64_t begin, int64_t end) {
      binary_row<op>(a + begin * as[0], as[0], b + begin * bs[0], bs[0], out + begin, end - begin);
    });
    return;
  }
  for_each_row(shape, as, bs, ndim, [&](int64_t row, int64_t a_offset, int64_t b_offset) {
    binary_row<op>(a + a_offset, as[ndim - 1], b + b_offset, bs[ndim - 1], out + row * inner, inner);
  });
}

}  // namespace

void binary_strided(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                    const int64_t* b_strides, float* out, const int64_t* shape, int ndim) {
  switch (op) {
    case BinaryOp::Add: return binary_walk<BinaryOp::Add>(a, a_strides, b, b_strides, out, shape, ndim);
    case BinaryOp::Sub: return binary_walk<BinaryOp::Sub>(a, a_strides, b, b_strides, out, shape, ndim);
    case BinaryOp::Mul: return binary_walk<BinaryOp::Mul>(a, a_strides, b, b_strides, out, shape, ndim);
    case BinaryOp::Div: return binary_walk<BinaryOp::Div>(a, a_strides, b, b_strides, out, shape, ndim);
  }
}

namespace {

// dst = src where the last two dims are swapped between them: src is contiguous along
// dim ndim - 2 and dst along dim ndim - 1 (x.transpose(-2, -1).contiguous(), the common
// case). Walking dst's rows would read src a column at a time, one cache line per element
// (3.5 GB/s); square tiles read and write whole lines: a tile's src lines stay in L1 while
// its dst rows are written, and a band of 32 dst rows reads 128-byte pieces of each src row
// while it writes 32 dst rows from start to end. The threads take ranges of (plane, band).
// Outputs larger than a core's L2 cache are written with streaming stores where every tile
// row is a whole aligned cache line (dst rows a multiple of 16 elements): each store then
// replaces a line without reading it first. (Measured on a 4096 x 768 transpose in a copy of
// this loop: with streaming stores, bands of 16 or 32 rows 51-57 GB/s, 64 30, 128 16, 256
// 13; bands of 32 without them 22 GB/s.)
template <bool kStreaming>
void transposed_copy32(const uint32_t* src, const int64_t* ss, uint32_t* dst, const int64_t* ds,
                       const int64_t* shape, int ndim) {
  constexpr int64_t kTile = 16, kBand = 32;  // a band: 32 rows of dst, 128 bytes of each src row
  const int64_t rows = shape[ndim - 2], cols = shape[ndim - 1];
  const int64_t src_col_stride = ss[ndim - 1], dst_row_stride = ds[ndim - 2];
  int64_t planes = 1;
  for (int d = 0; d < ndim - 2; ++d) planes *= shape[d];
  const int64_t bands = (rows + kBand - 1) / kBand;
  parallel_ranges(planes * bands, 2 * kBand * cols, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const uint32_t* s = src;
      uint32_t* t = dst;
      for (int64_t d = ndim - 3, rest = item / bands; d >= 0; --d) {  // the plane's coordinates
        s += rest % shape[d] * ss[d];
        t += rest % shape[d] * ds[d];
        rest /= shape[d];
      }
      const int64_t band_begin = item % bands * kBand, band_end = std::min(rows, band_begin + kBand);
      for (int64_t col_begin = 0; col_begin < cols; col_begin += kTile) {
        const int64_t col_end = std::min(cols, col_begin + kTile);
        for (int64_t row_begin = band_begin; row_begin < band_end; row_begin += kTile) {
          const int64_t row_end = std::min(band_end, row_begin + kTile);
          if (row_end - row_begin == kTile && col_end - col_begin == kTile) {
            copy_transposed16<kStreaming>(s + col_begin * src_col_stride + row_begin, src_col_stride,
                                          t + row_begin * dst_row_stride + col_begin, dst_row_stride);
            continue;
          }
          for (int64_t r = row_begin; r < row_end; ++r)  // src's stride along rows is 1
            for (int64_t c = col_begin; c < col_end; ++c) t[r * dst_row_stride + c] = s[c * src_col_stride + r];
        }
      }
    }
    if constexpr (kStreaming) stream_fence();
  });
}

void transposed_copy32(const uint32_t* src, const int64_t* ss, uint32_t* dst, const int64_t* ds,
                       const int64_t* shape, int ndim) {
  constexpr int64_t kStreamingBytes = int64_t{4} << 20;
  int64_t elements = 1;
  bool lines_aligned = reinterpret_cast<uintptr_t>(dst) % 64 == 0;
  for (int d = 0; d < ndim; ++d) {
    elements *= shape[d];
    if (d < ndim - 1) lines_aligned = lines_aligned && ds[d] % kLanes == 0;
  }
  if (lines_aligned && elements * 4 >= kStreamingBytes)
    transposed_copy32<true>(src, ss, dst, ds, shape, ndim);
  else
    transposed_copy32<false>(src, ss, dst, ds, shape, ndim);
}

}  // namespace

void strided_copy32(const void* src_void, const int64_t* ss, void* dst_void, const int64_t* ds,
                    const int64_t* shape, int ndim) {
  const auto* src = static_cast<const uint32_t*>(src_void);
  auto* dst = static_cast<uint32_t*>(dst_void);
  if (ndim == 0) {
    *dst = *src;
    return;
  }
  if (ndim >= 2 && ss[ndim - 2] == 1 && ds[ndim - 1] == 1 && ss[ndim - 1] != 1)
    return transposed_copy32(src, ss, dst, ds, shape, ndim);
  const int64_t inner = shape[ndim - 1], s_inner = ss[ndim - 1], d_inner = ds[ndim - 1];
  for_each_row(shape, ss, ds, ndim, [&](int64_t, int64_t s_offset, int64_t d_offset) {
    const uint32_t* s = src + s_offset;
    uint32_t* t = dst + d_offset;
    if (s_inner == 1 && d_inner == 1) {
      std::memcpy(t, s, static_cast<size_t>(inner) * 4);
    } else {
      for (int64_t i = 0; i < inner; ++i) t[i * d_inner] = s[i * s_inner];
    }
  });
}

void fill32(void* dst_void, uint32_t bits, int64_t n) {
  auto* dst = static_cast<uint32_t*>(dst_void);
  parallel_ranges(n, 1, [&](int64_t begin, int64_t end) { std::fill(dst + begin, dst + end, bits); });
}

}  // namespace minipipe::kernels::cpu

#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/threads.h"
#include "kernels/gelu.h"

namespace minipipe::kernels::cpu {

namespace {

// GELU's formula, written once for both backends (kernels/gelu.h), with the vectorisable exp.
// A function object, not a function pointer, so that the loops stay inlined and vectorised.
struct FastExp {
  float operator()(float x) const { return fast_exp(x); }
};
inline float gelu(float x) { return kernels::gelu(x, FastExp{}); }
inline float gelu_derivative(float x) { return kernels::gelu_derivative(x, FastExp{}); }

inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

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

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float parameter) {
  switch (op) {
    case UnaryOp::Neg: return map(x, y, n, [](float v) { return -v; });
    case UnaryOp::Exp: return map(x, y, n, [](float v) { return fast_exp(v); });
    case UnaryOp::Log: return map(x, y, n, [](float v) { return std::log(v); });
    case UnaryOp::Sqrt: return map(x, y, n, [](float v) { return std::sqrt(v); });
    case UnaryOp::Relu: return map(x, y, n, [](float v) { return v > 0.0f ? v : 0.0f; });
    case UnaryOp::Gelu: return map(x, y, n, [](float v) { return gelu(v); });
    case UnaryOp::Tanh: return map(x, y, n, [](float v) { return fast_tanh(v); });
    case UnaryOp::Sigmoid: return map(x, y, n, [](float v) { return sigmoid(v); });
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
    case UnaryOp::Gelu: return map_backward(x, dy, dx, n, [](float u) { return gelu_derivative(u); });
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

void strided_copy32(const void* src_void, const int64_t* ss, void* dst_void, const int64_t* ds,
                    const int64_t* shape, int ndim) {
  const auto* src = static_cast<const uint32_t*>(src_void);
  auto* dst = static_cast<uint32_t*>(dst_void);
  if (ndim == 0) {
    *dst = *src;
    return;
  }
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

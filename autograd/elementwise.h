#pragma once
// Elementwise ops. Binary ops broadcast NumPy-style; gradients are summed back to each
// input's shape.
#include "tensor/tensor.h"

namespace minipipe {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor scale(const Tensor& x, float factor);
Tensor add_scalar(const Tensor& x, float addend);
Tensor pow(const Tensor& x, float exponent);
Tensor sqrt(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // tanh approximation, as GPT-2 uses
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator*(const Tensor& x, float s) { return scale(x, s); }
inline Tensor operator*(float s, const Tensor& x) { return scale(x, s); }
inline Tensor operator/(const Tensor& x, float s) { return scale(x, 1.0f / s); }
inline Tensor operator+(const Tensor& x, float s) { return add_scalar(x, s); }
inline Tensor operator-(const Tensor& x, float s) { return add_scalar(x, -s); }
inline Tensor operator+(float s, const Tensor& x) { return add_scalar(x, s); }
inline Tensor operator-(float s, const Tensor& x) { return add_scalar(neg(x), s); }
// The same as named functions, with a number on either side where it reads naturally.
inline Tensor add(const Tensor& x, float s) { return add_scalar(x, s); }
inline Tensor sub(const Tensor& x, float s) { return add_scalar(x, -s); }
inline Tensor mul(const Tensor& x, float s) { return scale(x, s); }
inline Tensor mul(float s, const Tensor& x) { return scale(x, s); }
inline Tensor div(const Tensor& x, float s) { return scale(x, 1.0f / s); }

}  // namespace minipipe

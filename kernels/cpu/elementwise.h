#pragma once
// Elementwise kernels on raw pointers. Unary kernels take contiguous arrays; binary
// kernels and copies walk N-d strided layouts (a stride of 0 broadcasts a dim).
#include <cstdint>

#include "kernels/host_device.h"

namespace minipipe::kernels::cpu {

// Strided walks keep their odometer on the stack; tensors have at most this many dims.
constexpr int kMaxDims = 16;

enum class UnaryOp { Neg, Exp, Log, Sqrt, Relu, Gelu, Tanh, Sigmoid, Pow, Scale, AddScalar };
enum class BinaryOp { Add, Sub, Mul, Div };

// a op b, for the CPU and the CUDA binary kernels alike.
MINIPIPE_HOST_DEVICE inline float apply(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.0f;
}

// y = op(x); `parameter` is the exponent of Pow, the factor of Scale, the addend of AddScalar.
void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float parameter);
// dx = dy * op'(x), using y = op(x) where that is cheaper.
void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                    int64_t n, float parameter);

// out (contiguous, `shape`) = a op b, each input read through its own strides.
void binary_strided(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                    const int64_t* b_strides, float* out, const int64_t* shape, int ndim);

// dst = src for 4-byte elements (float32 or int32), both read through strides.
void strided_copy32(const void* src, const int64_t* src_strides, void* dst,
                    const int64_t* dst_strides, const int64_t* shape, int ndim);

void fill32(void* dst, uint32_t bits, int64_t n);

}  // namespace minipipe::kernels::cpu

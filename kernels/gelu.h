#pragma once
// GELU, tanh form (Hendrycks & Gimpel 2016): 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
// Since 0.5 (1 + tanh(u)) = sigmoid(2u), this is x sigmoid(2u): one exp and one division,
// without tanh's small-argument series and its selects. Written once for the CPU and CUDA
// kernels; each passes its own exp (a vectorisable one on the CPU, expf on the GPU). F is a
// float, or on the CPU sixteen of them (kernels/cpu/simd.h), which compute lane by lane
// exactly what the float code computes.
#include "kernels/host_device.h"

namespace minipipe::kernels {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;

// sigmoid(2u), the factor that multiplies x.
template <typename F, typename Exp>
MINIPIPE_HOST_DEVICE inline F gelu_gate(F x, Exp exp) {
  const F two_u = 2.0f * kGeluScale * (x + kGeluCubic * x * x * x);
  return 1.0f / (1.0f + exp(-two_u));
}

template <typename F, typename Exp>
MINIPIPE_HOST_DEVICE inline F gelu(F x, Exp exp) {
  return x * gelu_gate(x, exp);
}

// d/dx [x s(2u)] = s + x s (1 - s) d(2u)/dx
template <typename F, typename Exp>
MINIPIPE_HOST_DEVICE inline F gelu_derivative(F x, Exp exp) {
  const F s = gelu_gate(x, exp);
  const F d_two_u = 2.0f * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  return s + x * s * (1.0f - s) * d_two_u;
}

}  // namespace minipipe::kernels

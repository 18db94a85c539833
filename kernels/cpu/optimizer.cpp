#include "kernels/cpu/optimizer.h"

#include <cmath>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

void sgd_update(float* param, const float* grad, float grad_scale, float* momentum_buffer, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov,
                bool first_step) {
  parallel_for(n, 4, [&](int64_t i) {
    // An explicit fma, so that the compiler cannot fuse grad * grad_scale into the sum instead
    // and skip its rounding (which scale(), the pass this replaces, does).
    float g = std::fma(weight_decay, param[i], grad[i] * grad_scale);
    if (momentum != 0.0f) {
      float& buf = momentum_buffer[i];
      buf = first_step ? g : momentum * buf + (1.0f - dampening) * g;
      g = nesterov ? g + momentum * buf : buf;
    }
    param[i] -= lr * g;
  });
}

namespace {
struct AdamWConstants {
  float grad_scale, decay, beta1, beta2, eps, step_size, sqrt_correction2;
};

inline float square_root(float x) { return std::sqrt(x); }
inline Floats16 square_root(Floats16 x) {
#if defined(__AVX512F__)
  // Correctly rounded, as std::sqrt. (The zero-masked form with every lane kept: the plain
  // intrinsic hands GCC 12 an undefined vector, which -Wmaybe-uninitialized reports.)
  return _mm512_maskz_sqrt_ps(0xFFFF, x);
#else
  for (int lane = 0; lane < kLanes; ++lane) x[lane] = std::sqrt(x[lane]);
  return x;
#endif
}

// One AdamW step on one parameter (F = float) or sixteen (F = Floats16): the same operations
// in the same order either way, so the result does not depend on where the vectors start.
template <class F>
inline void adamw_element(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, const AdamWConstants& c) {
  F p = load<F>(param), m = load<F>(exp_avg), v = load<F>(exp_avg_sq);
  const F g = load<F>(grad) * c.grad_scale;
  p -= c.decay * p;
  m = c.beta1 * m + (1.0f - c.beta1) * g;
  v = c.beta2 * v + (1.0f - c.beta2) * g * g;
  const F denominator = square_root(v) / c.sqrt_correction2 + c.eps;
  p -= c.step_size * m / denominator;
  store(param, p);
  store(exp_avg, m);
  store(exp_avg_sq, v);
}
}  // namespace

// Written with explicit vectors: std::sqrt may set errno, which keeps the compiler from
// vectorising the loop by itself (it ran at a third of add's bandwidth).
void adamw_update(float* param, const float* grad, float grad_scale, float* exp_avg, float* exp_avg_sq, int64_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const float correction1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float correction2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  const AdamWConstants c{grad_scale, lr * weight_decay, beta1, beta2, eps, lr / correction1, std::sqrt(correction2)};
  parallel_ranges(n, 7, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes)
      adamw_element<Floats16>(param + i, grad + i, exp_avg + i, exp_avg_sq + i, c);
    for (; i < end; ++i) adamw_element<float>(param + i, grad + i, exp_avg + i, exp_avg_sq + i, c);
  });
}

}  // namespace minipipe::kernels::cpu

#include "kernels/cpu/optimizer.h"

#include <cmath>

#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

void sgd_update(float* param, const float* grad, float* momentum_buffer, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov,
                bool first_step) {
  parallel_for(n, 4, [&](int64_t i) {
    float g = grad[i] + weight_decay * param[i];
    if (momentum != 0.0f) {
      float& buf = momentum_buffer[i];
      buf = first_step ? g : momentum * buf + (1.0f - dampening) * g;
      g = nesterov ? g + momentum * buf : buf;
    }
    param[i] -= lr * g;
  });
}

void adamw_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const float correction1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float correction2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  const float step_size = lr / correction1;
  const float sqrt_correction2 = std::sqrt(correction2);
  parallel_for(n, 7, [&](int64_t i) {
    param[i] -= lr * weight_decay * param[i];
    exp_avg[i] = beta1 * exp_avg[i] + (1.0f - beta1) * grad[i];
    exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1.0f - beta2) * grad[i] * grad[i];
    const float denominator = std::sqrt(exp_avg_sq[i]) / sqrt_correction2 + eps;
    param[i] -= step_size * exp_avg[i] / denominator;
  });
}

}  // namespace minipipe::kernels::cpu

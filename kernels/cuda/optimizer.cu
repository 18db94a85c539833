// One thread per parameter, the same arithmetic in the same order as the CPU loop, so that a
// step on the GPU gives the CPU's parameters to float rounding.
#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optimizer.h"

namespace minipipe::kernels::cuda {

namespace {

__global__ void sgd_kernel(float* param, const float* grad, float grad_scale, float* momentum_buffer, int64_t n, float lr,
                           float momentum, float dampening, float weight_decay, bool nesterov, bool first_step) {
  MINIPIPE_GRID_STRIDE_LOOP(i, n) {
    float g = fmaf(weight_decay, param[i], __fmul_rn(grad[i], grad_scale));  // as the CPU: the product rounded
    if (momentum != 0.0f) {
      const float buffer = first_step ? g : momentum * momentum_buffer[i] + (1.0f - dampening) * g;
      momentum_buffer[i] = buffer;
      g = nesterov ? g + momentum * buffer : buffer;
    }
    param[i] -= lr * g;
  }
}

__global__ void adamw_kernel(float* param, const float* grad, float grad_scale, float* exp_avg, float* exp_avg_sq, int64_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay, float step_size,
                             float sqrt_correction2) {
  MINIPIPE_GRID_STRIDE_LOOP(i, n) {
    float p = param[i];
    p -= lr * weight_decay * p;
    const float g = __fmul_rn(grad[i], grad_scale);  // never fused into a later sum
    const float m = beta1 * exp_avg[i] + (1.0f - beta1) * g;
    const float v = beta2 * exp_avg_sq[i] + (1.0f - beta2) * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p - step_size * m / (sqrtf(v) / sqrt_correction2 + eps);
  }
}

}  // namespace

void sgd_update(float* param, const float* grad, float grad_scale, float* momentum_buffer, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov, bool first_step,
                cudaStream_t stream) {
  if (n == 0) return;
  sgd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(param, grad, grad_scale, momentum_buffer, n, lr, momentum,
                                                     dampening, weight_decay, nesterov, first_step);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void adamw_update(float* param, const float* grad, float grad_scale, float* exp_avg, float* exp_avg_sq, int64_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  cudaStream_t stream) {
  if (n == 0) return;
  // The bias corrections are computed on the host exactly as the CPU kernel computes them.
  const float correction1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float correction2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  adamw_kernel<<<blocks_for(n), kThreads, 0, stream>>>(param, grad, grad_scale, exp_avg, exp_avg_sq, n, lr, beta1, beta2, eps,
                                                       weight_decay, lr / correction1, std::sqrt(correction2));
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda

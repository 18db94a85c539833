#pragma once
// Optimizer updates, in place on contiguous parameter arrays.
#include <cstdint>

namespace minipipe::kernels::cpu {

// Both take the gradient as grad_scale * grad, rounded to float before anything else uses it:
// gradient clipping's factor applied where the gradient is read, bit for bit the update the
// clipped gradient (scale(grad, factor)) would give, without writing that gradient out.

// SGD with momentum (PyTorch's convention): g' = g + wd * p; buf = momentum * buf + (1 -
// dampening) * g' (buf = g' on the first step); step = nesterov ? g' + momentum * buf : buf;
// p -= lr * step. With momentum == 0, momentum_buffer may be null.
void sgd_update(float* param, const float* grad, float grad_scale, float* momentum_buffer, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov,
                bool first_step);

// AdamW (Loshchilov & Hutter 2019): decoupled weight decay p -= lr * wd * p, then Adam with
// bias correction for step t (t >= 1).
void adamw_update(float* param, const float* grad, float grad_scale, float* exp_avg, float* exp_avg_sq, int64_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step);

}  // namespace minipipe::kernels::cpu

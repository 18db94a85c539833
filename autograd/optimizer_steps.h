#pragma once
// In-place optimizer updates on one parameter tensor; nn/optim builds optimizers on them.
#include <cstdint>

#include "tensor/tensor.h"

namespace minipipe {

struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;
};

// momentum_buffer may be undefined when momentum is 0. first_step initialises the buffer.
void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer,
               const SgdOptions& options, bool first_step);
// step counts from 1.
void adamw_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const AdamWOptions& options, int64_t step);

}  // namespace minipipe

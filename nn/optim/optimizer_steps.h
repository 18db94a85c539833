#pragma once
// In-place optimizer updates on one parameter tensor, the optimizers' (nn/optim/optimizer.h)
// building blocks. They sit in nn/ because their options are nn's; autograd/ needs nothing
// from nn/.
#include <cstdint>

#include "nn/optim/optimizer_options.h"
#include "tensor/tensor.h"

namespace minipipe {

// The gradient used is grad_scale * grad (rounded to float, as scale(grad, grad_scale) would
// give it), so that gradient clipping costs no pass of its own.

// momentum_buffer may be undefined when momentum is 0. first_step initialises the buffer.
void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer,
               const nn::SgdOptions& options, bool first_step, float grad_scale = 1.0f);
// step counts from 1.
void adamw_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const nn::AdamWOptions& options, int64_t step, float grad_scale = 1.0f);

}  // namespace minipipe

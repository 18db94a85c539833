#pragma once
#include "tensor/tensor.h"

namespace minipipe {

// Normalises over the last dim (size C) and applies gamma [C], beta [C].
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps = 1e-5f);

// x is [N, C] or [N, C, H, W]; gamma, beta, running_mean, running_var are [C].
// training: normalise with the batch's statistics and update the running ones in place
//   (running = (1 - momentum) * running + momentum * batch, the variance unbiased), as
//   PyTorch does. In a pipeline the "batch" is one micro-batch (GPipe section 2.2).
// eval: normalise with the running statistics.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum = 0.1f, float eps = 1e-5f);

}  // namespace minipipe

#pragma once
// Optimizer updates in place on contiguous device arrays, on a stream. Same meaning as the
// CPU references in kernels/cpu/optimizer.h.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

void sgd_update(float* param, const float* grad, float grad_scale, float* momentum_buffer, int64_t n, float lr,
                float momentum, float dampening, float weight_decay, bool nesterov, bool first_step,
                cudaStream_t stream);

void adamw_update(float* param, const float* grad, float grad_scale, float* exp_avg, float* exp_avg_sq, int64_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                  cudaStream_t stream);

}  // namespace minipipe::kernels::cuda

#include "kernels/dispatch.h"

#include "minipipe_config.h"

#include <stdexcept>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/convolution.h"
#include "kernels/cpu/gather.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/normalization.h"
#include "kernels/cpu/optimizer.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/softmax.h"
#include "kernels/cpu/threads.h"
#include "kernels/profile.h"
#if MINIPIPE_HAS_CUDA
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/convolution.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gather.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/normalization.h"
#include "kernels/cuda/optimizer.h"
#include "kernels/cuda/reduce.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/softmax.h"
#endif

namespace minipipe::kernels {

// Each entry: the CPU kernel, or the CUDA one on `device` (the stream argument is the
// thread's current stream). Without CUDA the second branch only reports the bug.
#if MINIPIPE_HAS_CUDA
#define MINIPIPE_DISPATCH(device, cpu_call, cuda_call)    \
  do {                                                    \
    if ((device).is_cpu()) {                              \
      const KernelTimer timer(__func__);                  \
      cpu_call;                                           \
    } else {                                              \
      const cuda::DeviceGuard on_device((device).index);  \
      const cudaStream_t stream = cuda::current_stream(); \
      cuda_call;                                          \
    }                                                     \
  } while (0)
#else
namespace {
// The op layer checks devices before it calls a kernel (autograd/op_support.h), so reaching
// this is a bug in minipipe, not a user error.
[[noreturn]] void no_cuda(const Device& device) {
  throw std::logic_error("kernels: no CUDA backend in this build for " + device.str());
}
}  // namespace
#define MINIPIPE_DISPATCH(device, cpu_call, cuda_call) \
  do {                                                 \
    if (!(device).is_cpu()) no_cuda(device);           \
    const KernelTimer timer(__func__);                 \
    cpu_call;                                          \
  } while (0)
#endif

bool cuda_built() { return MINIPIPE_HAS_CUDA; }

void synchronize(const Device& device) {
  MINIPIPE_DISPATCH(device, (void)0, MINIPIPE_CUDA_CHECK(cudaStreamSynchronize(stream)));
}

WorkMark WorkMark::of_queued_work(const Device& device) {
  WorkMark mark;
  mark.device_ = device;
  MINIPIPE_DISPATCH(device, (void)0, {
    mark.event_ = std::make_shared<cuda::Event>(false);
    mark.event_->record(stream);
  });
  return mark;
}

void WorkMark::make_current_stream_wait() const {
  if (event_) MINIPIPE_DISPATCH(device_, (void)0, event_->wait_on(stream));
}

void unary_forward(const Device& device, UnaryOp op, const float* x, float* y, int64_t n, float parameter) {
  MINIPIPE_DISPATCH(device, cpu::unary_forward(op, x, y, n, parameter),
                    cuda::unary_forward(op, x, y, n, parameter, stream));
}

void unary_backward(const Device& device, UnaryOp op, const float* x, const float* y, const float* dy,
                    float* dx, int64_t n, float parameter) {
  MINIPIPE_DISPATCH(device, cpu::unary_backward(op, x, y, dy, dx, n, parameter),
                    cuda::unary_backward(op, x, y, dy, dx, n, parameter, stream));
}

void binary_strided(const Device& device, BinaryOp op, const float* a, const int64_t* a_strides,
                    const float* b, const int64_t* b_strides, float* out, const int64_t* shape, int ndim) {
  MINIPIPE_DISPATCH(device, cpu::binary_strided(op, a, a_strides, b, b_strides, out, shape, ndim),
                    cuda::binary_strided(op, a, a_strides, b, b_strides, out, shape, ndim, stream));
}

void causal_mask(const Device& device, const float* in, float* out, int64_t batch, int64_t queries, int64_t keys,
                 int64_t query_offset, float fill) {
  MINIPIPE_DISPATCH(device, cpu::causal_mask(in, out, batch, queries, keys, query_offset, fill),
                    cuda::causal_mask(in, out, batch, queries, keys, query_offset, fill, stream));
}

void attention_forward(const Device& device, const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k,
                       ConstHeadRows v, MutableHeadRows out, float* logsumexp) {
  MINIPIPE_DISPATCH(device, cpu::attention_forward(sizes, q, k, v, out, logsumexp),
                    cuda::attention_forward(sizes, q, k, v, out, logsumexp, stream));
}

void attention_backward(const Device& device, const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k,
                        ConstHeadRows v, ConstHeadRows out, ConstHeadRows dout, const float* logsumexp,
                        float* row_dots, MutableHeadRows dq, MutableHeadRows dk, MutableHeadRows dv) {
  MINIPIPE_DISPATCH(device, cpu::attention_backward(sizes, q, k, v, out, dout, logsumexp, row_dots, dq, dk, dv),
                    cuda::attention_backward(sizes, q, k, v, out, dout, logsumexp, row_dots, dq, dk, dv, stream));
}

void sum_dim(const Device& device, const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner) {
  MINIPIPE_DISPATCH(device, cpu::sum_dim(x, out, outer, reduce, inner),
                    cuda::sum_dim(x, out, outer, reduce, inner, stream));
}

void squared_run_sums(const Device& device, const float* x, float* out, int64_t n, int64_t run) {
  MINIPIPE_DISPATCH(device, cpu::squared_run_sums(x, out, n, run), cuda::squared_run_sums(x, out, n, run, stream));
}

void softmax_forward(const Device& device, const float* x, float* y, int64_t rows, int64_t cols) {
  MINIPIPE_DISPATCH(device, cpu::softmax_forward(x, y, rows, cols), cuda::softmax_forward(x, y, rows, cols, stream));
}

void softmax_backward(const Device& device, const float* y, const float* dy, float* dx, int64_t rows,
                      int64_t cols) {
  MINIPIPE_DISPATCH(device, cpu::softmax_backward(y, dy, dx, rows, cols),
                    cuda::softmax_backward(y, dy, dx, rows, cols, stream));
}

void log_softmax_forward(const Device& device, const float* x, float* y, int64_t rows, int64_t cols) {
  MINIPIPE_DISPATCH(device, cpu::log_softmax_forward(x, y, rows, cols),
                    cuda::log_softmax_forward(x, y, rows, cols, stream));
}

void log_softmax_backward(const Device& device, const float* y, const float* dy, float* dx, int64_t rows,
                          int64_t cols) {
  MINIPIPE_DISPATCH(device, cpu::log_softmax_backward(y, dy, dx, rows, cols),
                    cuda::log_softmax_backward(y, dy, dx, rows, cols, stream));
}

void cross_entropy_forward(const Device& device, const float* logits, const int32_t* targets, float* row_loss,
                           float* probabilities, int64_t rows, int64_t classes, int32_t ignore_index) {
  MINIPIPE_DISPATCH(device,
                    cpu::cross_entropy_forward(logits, targets, row_loss, probabilities, rows, classes, ignore_index),
                    cuda::cross_entropy_forward(logits, targets, row_loss, probabilities, rows, classes, ignore_index,
                                                stream));
}

void cross_entropy_backward(const Device& device, const float* probabilities, const int32_t* targets,
                            const float* scale, float* dlogits, int64_t rows, int64_t classes, int32_t ignore_index) {
  MINIPIPE_DISPATCH(device, cpu::cross_entropy_backward(probabilities, targets, *scale, dlogits, rows, classes, ignore_index),
                    cuda::cross_entropy_backward(probabilities, targets, scale, dlogits, rows, classes, ignore_index,
                                                 stream));
}

void gemm(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  MINIPIPE_DISPATCH(device, cpu::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
                    cuda::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stream));
}

void gemm_plus_bias(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                    int64_t lda, const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc) {
  MINIPIPE_DISPATCH(device, cpu::gemm_plus_bias(trans_a, trans_b, m, n, k, a, lda, b, ldb, bias, c, ldc), ([&] {
    const int64_t bias_strides[2] = {0, 1}, c_strides[2] = {ldc, 1}, shape[2] = {m, n};
    cuda::strided_copy32(bias, bias_strides, c, c_strides, shape, 2, stream);
    cuda::gemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, ldc, stream);
  }()));
}

void gemm_batched(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                  float beta, float* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  MINIPIPE_DISPATCH(device,
                    cpu::gemm_batched(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c,
                                      ldc, stride_c, batch),
                    cuda::gemm_batched(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c,
                                       ldc, stride_c, batch, stream));
}

void max_dim(const Device& device, const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce,
             int64_t inner) {
  MINIPIPE_DISPATCH(device, cpu::max_dim(x, out, argmax, outer, reduce, inner),
                    cuda::max_dim(x, out, argmax, outer, reduce, inner, stream));
}

void max_dim_backward(const Device& device, const float* dy, const int32_t* argmax, float* dx, int64_t outer,
                      int64_t reduce, int64_t inner) {
  MINIPIPE_DISPATCH(device, cpu::max_dim_backward(dy, argmax, dx, outer, reduce, inner),
                    cuda::max_dim_backward(dy, argmax, dx, outer, reduce, inner, stream));
}

void embedding_forward(const Device& device, const float* weight, const int32_t* indices, float* out, int64_t count,
                       int64_t dim) {
  MINIPIPE_DISPATCH(device, cpu::embedding_forward(weight, indices, out, count, dim),
                    cuda::embedding_forward(weight, indices, out, count, dim, stream));
}

void embedding_backward(const Device& device, const float* dout, const int32_t* indices, float* dweight,
                        int64_t count, int64_t dim) {
  MINIPIPE_DISPATCH(device, cpu::embedding_backward(dout, indices, dweight, count, dim),
                    cuda::embedding_backward(dout, indices, dweight, count, dim, stream));
}

void dropout(const Device& device, const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream_id,
             int64_t element_offset) {
  MINIPIPE_DISPATCH(device, cpu::dropout(x, y, n, p, seed, stream_id, element_offset),
                    cuda::dropout(x, y, n, p, seed, stream_id, element_offset, stream));
}

void layer_norm_forward(const Device& device, const float* x, const float* gamma, const float* beta, float* y,
                        float* mean, float* rstd, int64_t rows, int64_t cols, float eps) {
  MINIPIPE_DISPATCH(device, cpu::layer_norm_forward(x, gamma, beta, y, mean, rstd, rows, cols, eps),
                    cuda::layer_norm_forward(x, gamma, beta, y, mean, rstd, rows, cols, eps, stream));
}

void layer_norm_backward(const Device& device, const float* x, const float* gamma, const float* mean,
                         const float* rstd, const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                         int64_t cols) {
  MINIPIPE_DISPATCH(device, cpu::layer_norm_backward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, rows, cols),
                    cuda::layer_norm_backward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, rows, cols, stream));
}

void batch_norm_training_statistics(const Device& device, const float* x, float* mean, float* rstd,
                                    float* running_mean, float* running_var, int64_t n, int64_t channels,
                                    int64_t spatial, float momentum, float eps) {
  MINIPIPE_DISPATCH(device,
                    cpu::batch_norm_training_statistics(x, mean, rstd, running_mean, running_var, n, channels,
                                                        spatial, momentum, eps),
                    cuda::batch_norm_training_statistics(x, mean, rstd, running_mean, running_var, n, channels,
                                                         spatial, momentum, eps, stream));
}

void batch_norm_eval_statistics(const Device& device, const float* running_mean, const float* running_var,
                                float* mean, float* rstd, int64_t channels, float eps) {
  MINIPIPE_DISPATCH(device, cpu::batch_norm_eval_statistics(running_mean, running_var, mean, rstd, channels, eps),
                    cuda::batch_norm_eval_statistics(running_mean, running_var, mean, rstd, channels, eps, stream));
}

void batch_norm_apply(const Device& device, const float* x, const float* mean, const float* rstd, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t channels, int64_t spatial) {
  MINIPIPE_DISPATCH(device, cpu::batch_norm_apply(x, mean, rstd, gamma, beta, y, n, channels, spatial),
                    cuda::batch_norm_apply(x, mean, rstd, gamma, beta, y, n, channels, spatial, stream));
}

void batch_norm_backward(const Device& device, const float* x, const float* dy, const float* mean,
                         const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t n,
                         int64_t channels, int64_t spatial, bool batch_statistics) {
  MINIPIPE_DISPATCH(device,
                    cpu::batch_norm_backward(x, dy, mean, rstd, gamma, dx, dgamma, dbeta, n, channels, spatial,
                                             batch_statistics),
                    cuda::batch_norm_backward(x, dy, mean, rstd, gamma, dx, dgamma, dbeta, n, channels, spatial,
                                              batch_statistics, stream));
}

void im2col(const Device& device, const float* images, int64_t count, float* columns, int64_t channels, int64_t h,
            int64_t w, const Window2d& window) {
  const int64_t pixels = window.out_size_h(h) * window.out_size_w(w), image = channels * h * w;
  MINIPIPE_DISPATCH(device,
                    cpu::parallel_for(count, image * window.kernel_h * window.kernel_w, [&](int64_t j) {
                      cpu::im2col(images + j * image, columns + j * pixels, count * pixels, channels, h, w, window);
                    }),
                    cuda::im2col(images, count, columns, channels, h, w, window, stream));
}

void col2im_add(const Device& device, float* columns, int64_t count, float* images, int64_t channels, int64_t h,
                int64_t w, const Window2d& window) {
  const int64_t pixels = window.out_size_h(h) * window.out_size_w(w), image = channels * h * w;
  MINIPIPE_DISPATCH(device,
                    cpu::parallel_for(count, image * window.kernel_h * window.kernel_w, [&](int64_t j) {
                      cpu::col2im_add(columns + j * pixels, count * pixels, images + j * image, channels, h, w, window);
                    }),
                    cuda::col2im_add(columns, count, images, channels, h, w, window, stream));
}

void max_pool2d_forward(const Device& device, const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h,
                        int64_t w, const Window2d& window) {
  MINIPIPE_DISPATCH(device, cpu::max_pool2d_forward(x, y, argmax, planes, h, w, window),
                    cuda::max_pool2d_forward(x, y, argmax, planes, h, w, window, stream));
}

void max_pool2d_backward(const Device& device, const float* dy, const int32_t* argmax, float* dx, int64_t planes,
                         int64_t h, int64_t w, const Window2d& window) {
  MINIPIPE_DISPATCH(device, cpu::max_pool2d_backward(dy, argmax, dx, planes, h, w, window),
                    cuda::max_pool2d_backward(dy, argmax, dx, planes, h, w, window, stream));
}

void avg_pool2d_forward(const Device& device, const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                        const Window2d& window) {
  MINIPIPE_DISPATCH(device, cpu::avg_pool2d_forward(x, y, planes, h, w, window),
                    cuda::avg_pool2d_forward(x, y, planes, h, w, window, stream));
}

void avg_pool2d_backward(const Device& device, const float* dy, float* dx, int64_t planes, int64_t h, int64_t w,
                         const Window2d& window) {
  MINIPIPE_DISPATCH(device, cpu::avg_pool2d_backward(dy, dx, planes, h, w, window),
                    cuda::avg_pool2d_backward(dy, dx, planes, h, w, window, stream));
}

void sgd_update(const Device& device, float* param, const float* grad, float grad_scale, float* momentum_buffer,
                int64_t n, float lr, float momentum, float dampening, float weight_decay, bool nesterov,
                bool first_step) {
  MINIPIPE_DISPATCH(device,
                    cpu::sgd_update(param, grad, grad_scale, momentum_buffer, n, lr, momentum, dampening, weight_decay,
                                    nesterov, first_step),
                    cuda::sgd_update(param, grad, grad_scale, momentum_buffer, n, lr, momentum, dampening,
                                     weight_decay, nesterov, first_step, stream));
}

void adamw_update(const Device& device, float* param, const float* grad, float grad_scale, float* exp_avg,
                  float* exp_avg_sq, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  int64_t step) {
  MINIPIPE_DISPATCH(device,
                    cpu::adamw_update(param, grad, grad_scale, exp_avg, exp_avg_sq, n, lr, beta1, beta2, eps,
                                      weight_decay, step),
                    cuda::adamw_update(param, grad, grad_scale, exp_avg, exp_avg_sq, n, lr, beta1, beta2, eps,
                                       weight_decay, step, stream));
}

}  // namespace minipipe::kernels

#pragma once
// One entry per kernel that has both a CPU and a CUDA implementation: runs the one for
// `device`, CUDA kernels on that GPU and the calling thread's current stream. The op layer
// (autograd/) calls these, so that it says what to compute once and this file alone knows
// which backends a build has. Arguments mean what they mean in kernels/cpu/*.h.
#include <cstdint>
#include <memory>

#include "kernels/attention_layout.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/device.h"
#include "kernels/window2d.h"

namespace minipipe::kernels {

namespace cuda {
class Event;
}

using cpu::BinaryOp;
using cpu::UnaryOp;

// True when this build has the CUDA kernels (it was configured with nvcc present).
bool cuda_built();

// Waits until the work this thread queued on `device` (its current stream there) has run;
// nothing to wait for on the CPU. Another thread may then use what that work wrote.
void synchronize(const Device& device);

// The point this thread's queued work on `device` has reached, for another thread's stream
// to wait for without the host waiting (a CUDA event). It hands a tensor over between
// threads: the sender marks the work that wrote it, the receiver's stream waits for the mark
// before its own work reads it. On the CPU work is done when its call returns, and the mark
// is empty.
class WorkMark {
 public:
  WorkMark() = default;  // marks nothing
  static WorkMark of_queued_work(const Device& device);
  // The calling thread's later work on the mark's device runs after the marked work.
  void make_current_stream_wait() const;

 private:
  Device device_ = Device::cpu();
  std::shared_ptr<cuda::Event> event_;
};

void unary_forward(const Device& device, UnaryOp op, const float* x, float* y, int64_t n, float parameter);
void unary_backward(const Device& device, UnaryOp op, const float* x, const float* y, const float* dy,
                    float* dx, int64_t n, float parameter);
void binary_strided(const Device& device, BinaryOp op, const float* a, const int64_t* a_strides,
                    const float* b, const int64_t* b_strides, float* out, const int64_t* shape, int ndim);

void causal_mask(const Device& device, const float* in, float* out, int64_t batch, int64_t queries, int64_t keys,
                 int64_t query_offset, float fill);

// Fused causal attention (kernels/cpu/attention.h): strided heads in and out, no scores kept.
void attention_forward(const Device& device, const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k,
                       ConstHeadRows v, MutableHeadRows out, float* logsumexp);
void attention_backward(const Device& device, const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k,
                        ConstHeadRows v, ConstHeadRows out, ConstHeadRows dout, const float* logsumexp,
                        float* row_dots, MutableHeadRows dq, MutableHeadRows dk, MutableHeadRows dv);
void sum_dim(const Device& device, const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner);
// Sums of squares over runs of `run` entries (the last one ragged): ceil(n / run) outputs.
void squared_run_sums(const Device& device, const float* x, float* out, int64_t n, int64_t run);

void softmax_forward(const Device& device, const float* x, float* y, int64_t rows, int64_t cols);
void softmax_backward(const Device& device, const float* y, const float* dy, float* dx, int64_t rows,
                      int64_t cols);
void log_softmax_forward(const Device& device, const float* x, float* y, int64_t rows, int64_t cols);
void log_softmax_backward(const Device& device, const float* y, const float* dy, float* dx, int64_t rows,
                          int64_t cols);
void cross_entropy_forward(const Device& device, const float* logits, const int32_t* targets, float* row_loss,
                           float* probabilities, int64_t rows, int64_t classes, int32_t ignore_index);
// `scale` points to one float in the device's memory (host memory for the CPU), so that a GPU
// backward pass need not wait for the host to read it.
void cross_entropy_backward(const Device& device, const float* probabilities, const int32_t* targets,
                            const float* scale, float* dlogits, int64_t rows, int64_t classes, int32_t ignore_index);

void gemm(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// C = op(A) * op(B) + bias, the n values of bias added to every row (a linear layer with a
// bias): the CPU adds it as it stores C; a GPU copies it into C's rows, then runs the GEMM
// with beta = 1. Both round as that copy and GEMM would.
void gemm_plus_bias(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                    int64_t lda, const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc);
// `batch` GEMMs, matrix i at a + i * stride_a, b + i * stride_b and c + i * stride_c: one
// cuBLAS call on a GPU (a loop on the CPU).
void gemm_batched(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                  float beta, float* c, int64_t ldc, int64_t stride_c, int64_t batch);

void max_dim(const Device& device, const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce,
             int64_t inner);
void max_dim_backward(const Device& device, const float* dy, const int32_t* argmax, float* dx, int64_t outer,
                      int64_t reduce, int64_t inner);

void embedding_forward(const Device& device, const float* weight, const int32_t* indices, float* out, int64_t count,
                       int64_t dim);
void embedding_backward(const Device& device, const float* dout, const int32_t* indices, float* dweight,
                        int64_t count, int64_t dim);
void dropout(const Device& device, const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream_id,
             int64_t element_offset);

void layer_norm_forward(const Device& device, const float* x, const float* gamma, const float* beta, float* y,
                        float* mean, float* rstd, int64_t rows, int64_t cols, float eps);
void layer_norm_backward(const Device& device, const float* x, const float* gamma, const float* mean,
                         const float* rstd, const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                         int64_t cols);
void batch_norm_training_statistics(const Device& device, const float* x, float* mean, float* rstd,
                                    float* running_mean, float* running_var, int64_t n, int64_t channels,
                                    int64_t spatial, float momentum, float eps);
void batch_norm_eval_statistics(const Device& device, const float* running_mean, const float* running_var,
                                float* mean, float* rstd, int64_t channels, float eps);
void batch_norm_apply(const Device& device, const float* x, const float* mean, const float* rstd, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t channels, int64_t spatial);
void batch_norm_backward(const Device& device, const float* x, const float* dy, const float* mean,
                         const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t n,
                         int64_t channels, int64_t spatial, bool batch_statistics);

// im2col of `count` images [count, channels, h, w] side by side: image j's columns start at
// column j * pixels of columns [channels * kh * kw, count * pixels].
void im2col(const Device& device, const float* images, int64_t count, float* columns, int64_t channels, int64_t h,
            int64_t w, const Window2d& window);
// images += col2im(columns), the adjoint of im2col above. `columns` may be overwritten.
void col2im_add(const Device& device, float* columns, int64_t count, float* images, int64_t channels, int64_t h,
                int64_t w, const Window2d& window);
void max_pool2d_forward(const Device& device, const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h,
                        int64_t w, const Window2d& window);
void max_pool2d_backward(const Device& device, const float* dy, const int32_t* argmax, float* dx, int64_t planes,
                         int64_t h, int64_t w, const Window2d& window);
void avg_pool2d_forward(const Device& device, const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                        const Window2d& window);
void avg_pool2d_backward(const Device& device, const float* dy, float* dx, int64_t planes, int64_t h, int64_t w,
                         const Window2d& window);

void sgd_update(const Device& device, float* param, const float* grad, float grad_scale, float* momentum_buffer,
                int64_t n, float lr, float momentum, float dampening, float weight_decay, bool nesterov, bool first_step);
void adamw_update(const Device& device, float* param, const float* grad, float grad_scale, float* exp_avg,
                  float* exp_avg_sq, int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                  int64_t step);

}  // namespace minipipe::kernels

#include "kernels/dispatch.h"

#include "minipipe_config.h"

#include <stdexcept>

#include "kernels/cpu/gather.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/softmax.h"
#if MINIPIPE_HAS_CUDA
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
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
    cpu_call;                                          \
  } while (0)
#endif

bool cuda_built() { return MINIPIPE_HAS_CUDA; }

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

void sum_dim(const Device& device, const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner) {
  MINIPIPE_DISPATCH(device, cpu::sum_dim(x, out, outer, reduce, inner),
                    cuda::sum_dim(x, out, outer, reduce, inner, stream));
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
                           float* logsumexp, int64_t rows, int64_t classes, int32_t ignore_index) {
  MINIPIPE_DISPATCH(device, cpu::cross_entropy_forward(logits, targets, row_loss, logsumexp, rows, classes, ignore_index),
                    cuda::cross_entropy_forward(logits, targets, row_loss, logsumexp, rows, classes, ignore_index,
                                                stream));
}

void cross_entropy_backward(const Device& device, const float* logits, const int32_t* targets,
                            const float* logsumexp, const float* scale, float* dlogits, int64_t rows,
                            int64_t classes, int32_t ignore_index) {
  MINIPIPE_DISPATCH(device,
                    cpu::cross_entropy_backward(logits, targets, logsumexp, *scale, dlogits, rows, classes, ignore_index),
                    cuda::cross_entropy_backward(logits, targets, logsumexp, scale, dlogits, rows, classes,
                                                 ignore_index, stream));
}

void gemm(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  MINIPIPE_DISPATCH(device, cpu::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
                    cuda::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, stream));
}

}  // namespace minipipe::kernels

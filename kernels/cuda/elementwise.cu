// One thread per element, one kernel per job; the op is a kernel argument (the same for
// every thread, so the switch costs no divergence, and these kernels are memory-bound).
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/gelu.h"

namespace minipipe::kernels::cuda {

namespace {

// GELU's formula, written once for both backends (kernels/gelu.h).
struct DeviceExp {
  __device__ float operator()(float x) const { return expf(x); }
};

__device__ float apply(UnaryOp op, float v, float parameter) {
  switch (op) {
    case UnaryOp::Neg: return -v;
    case UnaryOp::Exp: return expf(v);
    case UnaryOp::Log: return logf(v);
    case UnaryOp::Sqrt: return sqrtf(v);
    case UnaryOp::Relu: return v > 0.0f ? v : 0.0f;
    case UnaryOp::Gelu: return gelu(v, DeviceExp{});
    case UnaryOp::Tanh: return tanhf(v);
    case UnaryOp::Sigmoid: return 1.0f / (1.0f + expf(-v));
    case UnaryOp::Pow: return powf(v, parameter);
    case UnaryOp::Scale: return v * parameter;
    case UnaryOp::AddScalar: return v + parameter;
  }
  return 0.0f;
}

// op'(x), given the input x and the output y (each read only by the ops that need it; the
// other may be null).
__device__ float derivative(UnaryOp op, const float* x, const float* y, int64_t i, float parameter) {
  switch (op) {
    case UnaryOp::Neg: return -1.0f;
    case UnaryOp::Exp: return y[i];
    case UnaryOp::Log: return 1.0f / x[i];
    case UnaryOp::Sqrt: return 0.5f / y[i];
    case UnaryOp::Relu: return x[i] > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::Gelu: return gelu_derivative(x[i], DeviceExp{});
    case UnaryOp::Tanh: return 1.0f - y[i] * y[i];
    case UnaryOp::Sigmoid: return y[i] * (1.0f - y[i]);
    case UnaryOp::Pow: return parameter * powf(x[i], parameter - 1.0f);
    case UnaryOp::Scale: return parameter;
    case UnaryOp::AddScalar: return 1.0f;
  }
  return 0.0f;
}

__global__ void unary_forward_kernel(UnaryOp op, const float* x, float* y, int64_t n, float parameter) {
  MINIPIPE_GRID_STRIDE_LOOP(i, n) y[i] = apply(op, x[i], parameter);
}

__global__ void unary_backward_kernel(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                                      int64_t n, float parameter) {
  MINIPIPE_GRID_STRIDE_LOOP(i, n) dx[i] = dy[i] * derivative(op, x, y, i, parameter);
}

static_assert(TwoStrideLayout::kMaxDims == cpu::kMaxDims);

// layout.first: strides of a, layout.second: strides of b.
__global__ void binary_strided_kernel(BinaryOp op, const float* a, const float* b, float* out,
                                      TwoStrideLayout layout) {
  MINIPIPE_GRID_STRIDE_LOOP(i, layout.count) {
    int64_t a_offset, b_offset;
    layout.offsets(i, a_offset, b_offset);
    out[i] = cpu::apply(op, a[a_offset], b[b_offset]);
  }
}

// Both inputs contiguous and of the output's shape: no index arithmetic.
__global__ void binary_contiguous_kernel(BinaryOp op, const float* a, const float* b, float* out, int64_t count) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count) out[i] = cpu::apply(op, a[i], b[i]);
}

__global__ void causal_mask_kernel(const float* in, float* out, int64_t queries, int64_t keys,
                                   int64_t query_offset, float fill, int64_t count) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count) {
    const int64_t key = i % keys, query = (i / keys) % queries;
    out[i] = key <= query_offset + query ? in[i] : fill;
  }
}

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float parameter, cudaStream_t stream) {
  if (n == 0) return;
  unary_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(op, x, y, n, parameter);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n,
                    float parameter, cudaStream_t stream) {
  if (n == 0) return;
  unary_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(op, x, y, dy, dx, n, parameter);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void binary_strided(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                    const int64_t* b_strides, float* out, const int64_t* shape, int ndim,
                    cudaStream_t stream) {
  const TwoStrideLayout layout(shape, a_strides, b_strides, ndim);
  if (layout.count == 0) return;
  if (layout.contiguous()) {
    binary_contiguous_kernel<<<blocks_for(layout.count), kThreads, 0, stream>>>(op, a, b, out, layout.count);
  } else {
    binary_strided_kernel<<<blocks_for(layout.count), kThreads, 0, stream>>>(op, a, b, out, layout);
  }
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void causal_mask(const float* in, float* out, int64_t batch, int64_t queries, int64_t keys, int64_t query_offset,
                 float fill, cudaStream_t stream) {
  const int64_t count = batch * queries * keys;
  if (count == 0) return;
  causal_mask_kernel<<<blocks_for(count), kThreads, 0, stream>>>(in, out, queries, keys, query_offset, fill, count);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda

#include "tensor/factories.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/cpu/elementwise.h"
#include "kernels/philox.h"
#include "kernels/profile.h"
#include "minipipe_config.h"
#if MINIPIPE_HAS_CUDA
#include "kernels/cuda/copy.h"
#include "kernels/cuda/runtime.h"
#endif

namespace minipipe {

namespace {
void check_shape(const Shape& shape, const char* op) {
  for (int64_t s : shape)
    if (s < 0) throw std::invalid_argument(std::string(op) + ": negative size in shape " + shape_str(shape));
  if (shape.size() > static_cast<size_t>(kernels::cpu::kMaxDims))
    throw std::invalid_argument(std::string(op) + ": shape " + shape_str(shape) + " has more than " +
                                std::to_string(kernels::cpu::kMaxDims) + " dims");
}

uint32_t bits_of(float value, DType dtype) {
  if (dtype == DType::Int32) return static_cast<uint32_t>(static_cast<int32_t>(value));
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits;
}

#if MINIPIPE_HAS_CUDA
// copy_ where either side is on a GPU. Contiguous tensors move in one memcpy (host<->device
// or device<->device, peer to peer between GPUs); otherwise the source is made contiguous on
// its own device and the destination's strides are applied by a copy kernel on its device.
void copy_with_cuda(const Tensor& dst, const Tensor& src) {
  const std::size_t bytes = static_cast<std::size_t>(src.numel()) * 4;
  if (src.device() == dst.device()) {
    kernels::cuda::DeviceGuard on(dst.device().index);
    kernels::cuda::strided_copy32(src.raw_data(), src.strides().data(), dst.raw_data(), dst.strides().data(),
                                  dst.shape().data(), static_cast<int>(dst.dim()), kernels::cuda::current_stream());
    return;
  }
  if (!src.is_contiguous()) return copy_with_cuda(dst, src.contiguous());
  if (!dst.is_contiguous()) {
    const Tensor staging = empty(dst.shape(), dst.dtype(), dst.device());
    copy_with_cuda(staging, src);
    return copy_with_cuda(dst, staging);
  }
  if (src.device().is_cpu()) {
    kernels::cuda::DeviceGuard on(dst.device().index);
    kernels::cuda::copy_host_to_device(dst.raw_data(), src.raw_data(), bytes);
  } else if (dst.device().is_cpu()) {
    kernels::cuda::DeviceGuard on(src.device().index);
    kernels::cuda::copy_device_to_host(dst.raw_data(), src.raw_data(), bytes);
  } else {
    kernels::cuda::DeviceGuard on(dst.device().index);
    kernels::cuda::copy_device_to_device(dst.raw_data(), dst.device().index, src.raw_data(), src.device().index, bytes);
  }
}
#endif
}  // namespace

Tensor empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "empty");
  if (dtype == DType::BFloat16)
    throw std::invalid_argument("bfloat16 tensors are not supported yet: use float32");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor full(const Shape& shape, float value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0f, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0f, dtype, device); }
Tensor empty_like(const Tensor& like) { return empty(like.shape(), like.dtype(), like.device()); }
Tensor zeros_like(const Tensor& like) { return zeros(like.shape(), like.dtype(), like.device()); }

Tensor arange(float start, float end, float step, Device device) {
  if (step == 0.0f || (end - start) / step < 0.0f)
    throw std::invalid_argument("arange: step " + std::to_string(step) + " cannot go from " +
                                std::to_string(start) + " to " + std::to_string(end));
  const auto n = static_cast<int64_t>(std::ceil((end - start) / step));
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = start + static_cast<float>(i) * step;
  return from_vector(values, {n}, device);
}

Tensor arange_int(int64_t n, Device device, int64_t first) {
  std::vector<int32_t> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<int32_t>(first + i);
  return from_int_vector(values, {n}, device);
}

namespace {
template <class T>
Tensor from_host(const std::vector<T>& values, const Shape& shape, Device device) {
  check_shape(shape, "from_vector");
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    throw std::invalid_argument("from_vector: " + std::to_string(values.size()) +
                                " values do not fill shape " + shape_str(shape) + " (" +
                                std::to_string(shape_numel(shape)) + " elements)");
  Tensor host = empty(shape, dtype_of<T>(), Device::cpu());
  std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return device.is_cpu() ? host : host.to(device);
}
}  // namespace

Tensor from_vector(const std::vector<float>& values, const Shape& shape, Device device) {
  return from_host(values, shape, device);
}
Tensor from_int_vector(const std::vector<int32_t>& values, const Shape& shape, Device device) {
  return from_host(values, shape, device);
}

Tensor rand(const Shape& shape, Generator& generator, float low, float high) {
  const RandomKey key = generator.next_key();
  std::vector<float> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = low + (high - low) * kernels::philox_uniform(key.seed, key.stream, i);
  return from_vector(values, shape);
}

Tensor randn(const Shape& shape, Generator& generator, float mean, float stddev) {
  const RandomKey key = generator.next_key();
  std::vector<float> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = mean + stddev * kernels::philox_normal(key.seed, key.stream, i);
  return from_vector(values, shape);
}

Tensor randint(int32_t low, int32_t high, const Shape& shape, Generator& generator) {
  if (high <= low)
    throw std::invalid_argument("randint: empty range [" + std::to_string(low) + ", " +
                                std::to_string(high) + "); high must exceed low");
  const RandomKey key = generator.next_key();
  const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(high) - low);
  std::vector<int32_t> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) {
    const auto block = kernels::philox4x32(key.seed, key.stream, i);
    const uint64_t wide = (static_cast<uint64_t>(block.v[0]) << 32) | block.v[1];
    values[i] = static_cast<int32_t>(low + static_cast<int64_t>(wide % range));
  }
  return from_int_vector(values, shape);
}

Tensor rand(const Shape& shape) { return rand(shape, default_generator()); }
Tensor randn(const Shape& shape) { return randn(shape, default_generator()); }

void fill_(const Tensor& t, float value) {
  const uint32_t bits = bits_of(value, t.dtype());
#if MINIPIPE_HAS_CUDA
  if (t.device().is_cuda()) {
    if (!t.is_contiguous()) return copy_(t, full(Shape(t.shape().size(), 1), value, t.dtype(), t.device()).expand(t.shape()));
    kernels::cuda::DeviceGuard on(t.device().index);
    return kernels::cuda::fill32(t.raw_data(), bits, t.numel(), kernels::cuda::current_stream());
  }
#endif
  const kernels::KernelTimer timer("fill");
  if (t.is_contiguous()) {
    kernels::cpu::fill32(t.raw_data(), bits, t.numel());
    return;
  }
  // A strided fill is a copy from a one-element source broadcast with stride 0.
  const Shape zero_strides(t.dim(), 0);
  kernels::cpu::strided_copy32(&bits, zero_strides.data(), t.raw_data(), t.strides().data(),
                               t.shape().data(), static_cast<int>(t.dim()));
}

void copy_(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape())
    throw std::invalid_argument("copy_: destination shape " + shape_str(dst.shape()) +
                                " differs from source shape " + shape_str(src.shape()));
  check_dtype("copy_", "source", src, dst.dtype());
#if MINIPIPE_HAS_CUDA
  if (src.device().is_cuda() || dst.device().is_cuda()) return copy_with_cuda(dst, src);
#else
  if (!src.device().is_cpu() || !dst.device().is_cpu())
    throw std::runtime_error("copy_: this build of minipipe has no CUDA backend (rebuild with -Dcuda=enabled on a machine "
                             "with nvcc); use device 'cpu'");
#endif
  const kernels::KernelTimer timer("copy (contiguous, transpose)");
  kernels::cpu::strided_copy32(src.raw_data(), src.strides().data(), dst.raw_data(),
                               dst.strides().data(), dst.shape().data(), static_cast<int>(dst.dim()));
}

Generator& default_generator() {
  thread_local Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) { default_generator() = Generator(seed); }

}  // namespace minipipe

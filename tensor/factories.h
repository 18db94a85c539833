#pragma once
// Ways to make tensors. All results are contiguous leaves that do not require grad.
#include <cstdint>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace minipipe {

Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
Tensor full(const Shape& shape, float value, DType dtype = DType::Float32,
            Device device = Device::cpu());
Tensor empty_like(const Tensor& like);
Tensor zeros_like(const Tensor& like);

// [start, end) in steps of `step`, float32.
Tensor arange(float start, float end, float step = 1.0f, Device device = Device::cpu());
// int32 first..first+n-1.
Tensor arange_int(int64_t n, Device device = Device::cpu(), int64_t first = 0);

// From host values; `shape` must hold values.size() elements.
Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                   Device device = Device::cpu());
Tensor from_int_vector(const std::vector<int32_t>& values, const Shape& shape,
                   Device device = Device::cpu());

// Seeded random tensors: uniform in [low, high), standard normal scaled, integers in
// [low, high). Without a generator they draw from this thread's default generator.
Tensor rand(const Shape& shape, Generator& generator, float low = 0.0f, float high = 1.0f);
Tensor randn(const Shape& shape, Generator& generator, float mean = 0.0f, float stddev = 1.0f);
Tensor randint(int32_t low, int32_t high, const Shape& shape, Generator& generator);
Tensor rand(const Shape& shape);
Tensor randn(const Shape& shape);

// Writes `value` into every element of `t` (in place, any layout).
void fill_(const Tensor& t, float value);
// Copies src into dst elementwise (same shape; any layouts, any devices).
void copy_(const Tensor& dst, const Tensor& src);

}  // namespace minipipe

#pragma once
// Element types. float32 carries values, int32 carries indices and labels; bfloat16 is
// reserved in the enum (so that storage and files can name it) but has no kernels yet.
#include <cstddef>
#include <cstdint>

namespace minipipe {

enum class DType { Float32, Int32, BFloat16 };

constexpr std::size_t dtype_size(DType dtype) {
  return dtype == DType::BFloat16 ? 2 : 4;
}

const char* dtype_name(DType dtype);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::Int32; }

}  // namespace minipipe

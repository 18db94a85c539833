#pragma once
// A device is `cpu` or `cuda:i`. Parsing and printing use the same spelling as PyTorch.
// It lives in kernels/, the bottom layer, because the kernel dispatch (kernels/dispatch.h)
// chooses a backend by it; tensor/ and everything above use the same type.
#include <string>

namespace minipipe {

enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  // Accepts "cpu", "cuda" (= cuda:0) and "cuda:N"; anything else throws.
  static Device parse(const std::string& text);

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

}  // namespace minipipe

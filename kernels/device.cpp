#include "kernels/device.h"

#include <stdexcept>

namespace minipipe {

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    if (digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 4)
      return cuda(std::stoi(digits));
  }
  throw std::invalid_argument("unknown device '" + text +
                              "': use 'cpu', 'cuda' or 'cuda:N' (N = GPU index)");
}

std::string Device::str() const {
  return is_cpu() ? "cpu" : "cuda:" + std::to_string(index);
}

}  // namespace minipipe

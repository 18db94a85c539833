#pragma once
// What the CUDA test files share: the GPU they run on, and a fixture that skips the test,
// saying why, where no GPU can be used.
#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/runtime.h"
#include "tensor/device.h"

namespace minipipe::testing {

inline const Device kGpu = Device::cuda(0);

class OnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why_not;
    if (kernels::cuda::device_count(&why_not) == 0) GTEST_SKIP() << "no GPU here: " << why_not;
  }
};

}  // namespace minipipe::testing

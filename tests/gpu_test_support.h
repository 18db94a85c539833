#pragma once
// What the CUDA test files share: the GPU they run on, and a fixture that skips the test,
// saying why, where no GPU can be used.
#include <gtest/gtest.h>

#include <cstdio>
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
    // Say once what "the GPU" is: a real one, or tests/cuda_emulation's stand-in.
    static const bool said = [] {
      std::fprintf(stderr, "GPU tests run on cuda:0: %s\n", kernels::cuda::describe_device(0).c_str());
      return true;
    }();
    (void)said;
  }
};

}  // namespace minipipe::testing

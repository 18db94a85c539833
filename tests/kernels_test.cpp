// kernels/cpu: the vectorisable transcendental functions against the C library.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/fast_math.h"

namespace minipipe::kernels::cpu {
namespace {

TEST(FastMath, ExpIsWithinAFewUlpsOfTheLibrary) {
  double worst = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double expected = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(fast_exp(x) - expected) / expected);
  }
  EXPECT_LT(worst, 4e-7) << "worst relative error";
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
  // The ends behave like the library's: overflow to +inf, underflow through denormals to 0.
  EXPECT_EQ(fast_exp(1000.0f), INFINITY);
  EXPECT_EQ(fast_exp(89.0f), INFINITY);
  EXPECT_NEAR(fast_exp(88.7f) / std::exp(double{88.7f}), 1.0, 1e-6);
  EXPECT_NEAR(fast_exp(-95.0f) / std::exp(double{-95.0f}), 1.0, 1e-3);  // a denormal: few bits left
  EXPECT_EQ(fast_exp(-1000.0f), 0.0f);
}

TEST(FastMath, TanhIsAccurateNearZeroAndInTheTails) {
  double worst_relative = 0.0;
  for (float x = -12.0f; x <= 12.0f; x += 0.00173f) {
    const double expected = std::tanh(static_cast<double>(x));
    const double error = std::abs(fast_tanh(x) - expected);
    if (std::abs(expected) > 1e-6) worst_relative = std::max(worst_relative, error / std::abs(expected));
  }
  EXPECT_LT(worst_relative, 5e-7);
  EXPECT_EQ(fast_tanh(0.0f), 0.0f);
  EXPECT_EQ(fast_tanh(20.0f), 1.0f);
  EXPECT_EQ(fast_tanh(-20.0f), -1.0f);
}

}  // namespace
}  // namespace minipipe::kernels::cpu

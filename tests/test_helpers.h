#pragma once
// Small helpers shared by the test suites.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "tensor/tensor.h"

namespace minipipe::testing {

// Every element within atol + rtol * |expected|.
inline void expect_values(const Tensor& actual, const std::vector<float>& expected, float atol = 1e-5f,
                          float rtol = 1e-5f) {
  const std::vector<float> values = actual.to_vector<float>();
  ASSERT_EQ(values.size(), expected.size()) << "shape " << shape_str(actual.shape());
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_NEAR(values[i], expected[i], atol + rtol * std::abs(expected[i])) << "element " << i;
}

inline void expect_same_values(const Tensor& a, const Tensor& b, float atol = 1e-5f, float rtol = 1e-5f) {
  ASSERT_EQ(a.shape(), b.shape());
  expect_values(a, b.to_vector<float>(), atol, rtol);
}

// The statement throws an exception whose message contains every fragment.
#define EXPECT_THROW_WITH(statement, ...)                                          \
  do {                                                                             \
    try {                                                                          \
      statement;                                                                   \
      ADD_FAILURE() << "expected an exception from: " #statement;                 \
    } catch (const std::exception& error) {                                        \
      for (const std::string& fragment : std::vector<std::string>{__VA_ARGS__})    \
        EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)     \
            << "message \"" << error.what() << "\" lacks \"" << fragment << "\"";  \
    }                                                                              \
  } while (0)

#define EXPECT_GRADCHECK(function, inputs, ...)                                    \
  do {                                                                             \
    const ::minipipe::GradcheckResult result_ =                                    \
        ::minipipe::gradcheck(function, inputs, ##__VA_ARGS__);                    \
    EXPECT_TRUE(result_.ok) << result_.report;                                     \
  } while (0)

}  // namespace minipipe::testing

#pragma once
// What the executor suites share: a small GPT with dropout, its batches, and bitwise
// comparison of two training runs.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "nn/transformer.h"
#include "tensor/factories.h"

namespace minipipe::testing {

inline nn::GPTConfig small_gpt() {
  return {.vocabulary = 31, .context = 8, .dim = 16, .layers = 4, .heads = 2, .dropout = 0.1f, .seed = 3};
}

// The mini-batch of a step: 8 sequences of 8 tokens, a pure function of the step.
inline datasets::Batch gpt_batch(int64_t step) {
  Generator g(100 + step);
  return {randint(0, 31, {8, 8}, g), randint(0, 31, {8, 8}, g), 0};
}

struct TrainingRun {
  std::vector<float> losses;  // per mini-batch
  std::map<std::string, Tensor> weights;
};

inline void expect_identical(const TrainingRun& a, const TrainingRun& b, const std::string& what) {
  EXPECT_EQ(a.losses, b.losses) << what;
  for (const auto& [name, t] : a.weights)
    ASSERT_EQ(t.to_vector<float>(), b.weights.at(name).to_vector<float>()) << what << ": " << name;
}

}  // namespace minipipe::testing

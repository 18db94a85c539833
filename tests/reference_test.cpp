// minipipe against PyTorch (llm.c's test_gpt2 idea): for the same weights and inputs, a
// small GPT and a small ResNet must give PyTorch's loss and every parameter gradient.
// The reference files come from tests/reference/make_reference.py; the folder is
// $MINIPIPE_REFERENCE_DIR, else the committed tests/reference/.
//
// Tolerances, per tensor: the loss within 2e-6 relative; each gradient within 1e-5 of its
// own largest magnitude (max |ours - torch| <= 1e-5 * max |torch|). Both sides compute in
// float32 but sum in different orders (Eigen's GEMM blocking against PyTorch's BLAS), which
// moves results by a few ulps per reduction: measured, the worst gradient differs by about
// 5e-7 of its largest element, so 1e-5 leaves a 20x margin; a wrong formula moves results
// by whole percents.
#include <gtest/gtest.h>

#include <cstdlib>

#include "autograd/reduction.h"
#include "nn/convolutional.h"
#include "nn/losses.h"
#include "nn/safetensors.h"
#include "nn/transformer.h"

namespace minipipe::nn {
namespace {

std::string reference_dir() {
  const char* dir = std::getenv("MINIPIPE_REFERENCE_DIR");
  return dir ? dir : MINIPIPE_SOURCE_REFERENCE_DIR;
}

// Loads "param.*" into the model; returns the file.
SafetensorsFile load_reference(const std::string& file_name, Module& model) {
  SafetensorsFile file = load_safetensors(reference_dir() + "/" + file_name);
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind("param.", 0) == 0) params[name.substr(6)] = t;
  // Buffers (running statistics) are not in the file: keep the model's own.
  for (const auto& [name, t] : model.named_buffers()) params[name] = t;
  model.load_state_dict(params);
  return file;
}

void expect_matches_reference(const Module& model, const Tensor& loss, const SafetensorsFile& file) {
  const float expected_loss = file.tensors.at("loss").item();
  EXPECT_NEAR(loss.item(), expected_loss, 2e-6f * std::abs(expected_loss)) << "loss";
  int compared = 0;
  for (const auto& [name, parameter] : model.named_parameters()) {
    const std::vector<float> ours = parameter.grad().to_vector<float>();
    const std::vector<float> theirs = file.tensors.at("grad." + name).to_vector<float>();
    ASSERT_EQ(ours.size(), theirs.size()) << name;
    float largest = 0, worst = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      largest = std::max(largest, std::abs(theirs[i]));
      worst = std::max(worst, std::abs(ours[i] - theirs[i]));
    }
    EXPECT_LE(worst, 1e-5f * largest) << "gradient of " << name << " (largest " << largest << ")";
    ++compared;
  }
  EXPECT_EQ(compared * 2 + 3, static_cast<int>(file.tensors.size()));  // every gradient in the file was compared
}

TEST(PyTorchReference, GPTLossAndEveryGradient) {
  const GPTConfig config{.vocabulary = 37, .context = 12, .dim = 16, .layers = 2, .heads = 2, .dropout = 0.0f};
  auto gpt = make_gpt(config);
  const SafetensorsFile file = load_reference("gpt_reference.safetensors", *gpt);
  EXPECT_EQ(file.metadata.at("dim"), "16");
  const Tensor loss = cross_entropy_loss((*gpt)(file.tensors.at("input.ids")), file.tensors.at("input.targets"));
  loss.backward();
  expect_matches_reference(*gpt, loss, file);
}

TEST(PyTorchReference, ResNetLossAndEveryGradient) {
  auto resnet = make_resnet({.in_channels = 1, .classes = 10, .width = 4, .blocks_per_stage = 1, .stages = 2});
  const SafetensorsFile file = load_reference("cnn_reference.safetensors", *resnet);
  const Tensor loss = cross_entropy_loss((*resnet)(file.tensors.at("input.images")), file.tensors.at("input.labels"));
  loss.backward();
  expect_matches_reference(*resnet, loss, file);
}

}  // namespace
}  // namespace minipipe::nn

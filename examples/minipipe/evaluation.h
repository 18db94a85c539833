#pragma once
// What `train gpt|cnn` evaluates during training and `minipipe eval` evaluates afterwards,
// in one place so that both give the same number, bit for bit.
//   gpt: the last 10% of the text (datasets::TextCorpus::split(0.1)), cut into
//        8 x batch windows of context bytes spread evenly over it, in batches of `batch`
//        windows; the mean over batches of each batch's mean cross-entropy (nats per byte).
//   cnn: the test images (MNIST's t10k files, or the same 20% of the digits set held out
//        with seed 2024), in batches of 256; the mean cross-entropy and the accuracy.
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "model_forward.h"
#include "nn/module.h"

namespace minipipe::cli {

// The text corpus a GPT trains on (`path`, or the bundled text when empty) and its
// validation split.
struct TextData {
  datasets::TextCorpus train, validation;
  std::string path;
};
TextData load_text_data(const std::string& path);
std::vector<datasets::Batch> gpt_validation_batches(const datasets::TextCorpus& validation, int64_t batch, int64_t context);
double gpt_validation_loss(nn::Module& model, const ModelForward& forward, const std::vector<datasets::Batch>& batches);

// The images a CNN trains on (an MNIST-style folder, or a digits CSV; the bundled digits
// when empty) and its test split.
struct ImageData {
  datasets::TensorDataset train, test;
  std::string name;
};
ImageData load_image_data(const std::string& path);
struct CnnEvaluation {
  double loss = 0, accuracy = 0;
};
CnnEvaluation evaluate_cnn(nn::Module& model, const ModelForward& forward, const datasets::TensorDataset& test);

}  // namespace minipipe::cli

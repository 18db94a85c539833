#include "evaluation.h"

#include <filesystem>
#include <stdexcept>

#include "autograd/node.h"
#include "autograd/reduction.h"
#include "commands.h"
#include "datasets/readers.h"
#include "nn/losses.h"

namespace minipipe::cli {

TextData load_text_data(const std::string& path) {
  const std::string file = path.empty() ? data_directory() + "/tom-sawyer.txt.gz" : path;
  auto [train, validation] = datasets::load_text(file).split(0.1);
  return {std::move(train), std::move(validation), file};
}

std::vector<datasets::Batch> gpt_validation_batches(const datasets::TextCorpus& validation, int64_t batch, int64_t context) {
  return validation.evaluation_batches(batch, context, 8);
}

double gpt_validation_loss(nn::Module& model, const ModelForward& forward, const std::vector<datasets::Batch>& batches) {
  NoGradGuard no_grad;
  model.eval();
  double total = 0;
  for (const datasets::Batch& batch : batches) {
    const Tensor logits = forward(batch.inputs);
    total += nn::cross_entropy_loss(logits, batch.targets.to(logits.device())).item();
  }
  model.train();
  return total / static_cast<double>(batches.size());
}

ImageData load_image_data(const std::string& path_or_empty) {
  namespace fs = std::filesystem;
  const std::string path = path_or_empty.empty() ? data_directory() + "/digits.csv.gz" : path_or_empty;
  if (fs::is_directory(path)) {
    auto find = [&](const std::string& stem) {
      for (const char* suffix : {"", ".gz"})
        if (fs::exists(path + "/" + stem + suffix)) return path + "/" + stem + suffix;
      throw std::runtime_error("'" + path + "' has no " + stem + "[.gz]; expected an MNIST-style folder "
                               "(see scripts/fetch-fashion-mnist.sh)");
    };
    return {datasets::load_idx(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte")),
            datasets::load_idx(find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte")), path};
  }
  // The digits set has no test split of its own: hold out 20%, always the same 20%.
  auto [train, test] = datasets::train_test_split(datasets::load_digits_csv(path), 0.2, 2024);
  return {train, test, path};
}

CnnEvaluation evaluate_cnn(nn::Module& model, const ModelForward& forward, const datasets::TensorDataset& test) {
  NoGradGuard no_grad;
  model.eval();
  double loss_sum = 0;
  int64_t correct = 0;
  for (const datasets::Batch& batch : datasets::DataLoader(test, 256, false, 0, false).sequential_batches()) {
    const Tensor logits = forward(batch.inputs);
    const Tensor targets = batch.targets.to(logits.device());
    loss_sum += nn::cross_entropy_loss(logits, targets).item() * static_cast<double>(batch.inputs.shape()[0]);
    const std::vector<int32_t> predicted = argmax(logits, 1).to_vector<int32_t>(), truth = batch.targets.to_vector<int32_t>();
    for (size_t i = 0; i < truth.size(); ++i) correct += predicted[i] == truth[i];
  }
  model.train();
  return {loss_sum / static_cast<double>(test.size()), static_cast<double>(correct) / static_cast<double>(test.size())};
}

}  // namespace minipipe::cli

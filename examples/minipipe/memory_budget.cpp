#include "memory_budget.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace minipipe::cli {

namespace {

std::string amount(double bytes) {
  char text[64];
  if (bytes > 1e18) return "more than an exabyte";
  if (bytes < 1024.0 * 1024.0 * 1024.0) std::snprintf(text, sizeof text, "%.0f MiB", bytes / (1024.0 * 1024.0));
  else std::snprintf(text, sizeof text, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return text;
}

constexpr double kFloat = 4;           // bytes
constexpr double kPerParameter = 4;    // the parameter, its gradient, Adam's two moments

}  // namespace

int64_t memory_budget_bytes(int64_t limit_mib) {
  if (limit_mib > 0) return limit_mib << 20;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    int64_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

void check_memory_budget(double bytes, int64_t limit_mib, const std::string& what, const std::string& fix) {
  const int64_t budget = memory_budget_bytes(limit_mib);
  if (budget <= 0 || bytes <= static_cast<double>(budget)) return;
  throw std::invalid_argument(what + " needs " + (bytes > 1e18 ? "" : "about ") + amount(bytes) + " but " +
                              amount(static_cast<double>(budget)) +
                              (limit_mib > 0 ? " is allowed (--memory-limit)" : " is available on this machine") + ": " +
                              fix + (limit_mib > 0 ? "" : ", or set --memory-limit MiB if the estimate is too cautious"));
}

double gpt_training_bytes(const nn::GPTConfig& c, int64_t batch_size, int stages) {
  const double dim = static_cast<double>(c.dim), vocabulary = static_cast<double>(c.vocabulary);
  const double context = static_cast<double>(c.context), tokens = static_cast<double>(batch_size) * context;
  // Per layer: its parameters with their gradients and optimizer state, and the activations
  // one step keeps. A block keeps a dozen tensors of tokens x dim (norms, projections, the
  // MLP's 4 dim) and the attention scores and probabilities (batch x heads x context x
  // context); the head keeps the logits.
  const double embedding = kPerParameter * (vocabulary + context) * dim + 2 * tokens * dim;
  const double block = kPerParameter * (12 * dim * dim + 13 * dim) + 24 * tokens * dim +
                       3 * static_cast<double>(batch_size) * static_cast<double>(c.heads) * context * context;
  const double head = kPerParameter * vocabulary * dim + 3 * tokens * vocabulary;
  const double layers = static_cast<double>(c.layers);
  if (stages <= 1) return kFloat * (embedding + layers * block + head);
  // The uniform partition gives each rank at most ceil((layers + 2) / stages) of the layers;
  // the rank of the most holds that many blocks, or the embedding or head and one block fewer.
  const double most_layers = std::min(layers + 2, std::ceil((layers + 2) / static_cast<double>(stages)));
  const double blocks = std::min(layers, most_layers - 1);
  return kFloat * std::max({std::min(layers, most_layers) * block, embedding + blocks * block, blocks * block + head,
                            most_layers >= layers + 2 ? embedding + layers * block + head : 0.0});
}

double resnet_training_bytes(const nn::ResNetConfig& c, int64_t batch_size, int64_t image_height, int64_t image_width) {
  double parameters = 0, activations = 0, width = static_cast<double>(c.width);
  double pixels = static_cast<double>(image_height) * static_cast<double>(image_width);
  const double blocks = static_cast<double>(c.blocks_per_stage), batch = static_cast<double>(batch_size);
  parameters += 9 * static_cast<double>(c.in_channels) * width;
  for (int64_t stage = 0; stage < c.stages; ++stage, width *= 2, pixels /= 4) {
    parameters += blocks * 2 * 9 * width * width;
    activations += blocks * 12 * batch * width * pixels + 9 * batch * width * pixels;  // + an im2col buffer
  }
  parameters += width * static_cast<double>(c.classes);
  return kFloat * (kPerParameter * parameters + activations);
}

}  // namespace minipipe::cli

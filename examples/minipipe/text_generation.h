#pragma once
// Sampling text from a byte-level GPT (used by `sample gpt` and after `train gpt`).
#include <string>

#include "nn/transformer.h"

namespace minipipe::cli {

// Appends `length` bytes to the prompt, each drawn from softmax(logits / temperature) of
// the last `context` bytes, with Philox draws keyed by the seed.
std::string generate_text(nn::Module& model, const nn::GPTConfig& config, const std::string& prompt, int64_t length,
                          float temperature, uint64_t seed, Device device);

}  // namespace minipipe::cli

#pragma once
// Sampling text from a byte-level GPT (used by `sample gpt` and after `train gpt`).
#include <string>

#include "model_forward.h"
#include "nn/transformer.h"

namespace minipipe::cli {

// Appends `length` bytes to the prompt, each drawn from softmax(logits / temperature) of
// the last `context` bytes, with Philox draws keyed by the seed. `model` is switched to eval
// mode for it; `forward` computes the logits.
std::string generate_text(nn::Module& model, const ModelForward& forward, const nn::GPTConfig& config,
                          const std::string& prompt, int64_t length, float temperature, uint64_t seed);

}  // namespace minipipe::cli

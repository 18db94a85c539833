#pragma once
// Sampling text from a byte-level GPT (used by `sample gpt` and after `train gpt`).
#include <functional>
#include <string>

#include "model_forward.h"
#include "nn/transformer.h"

namespace minipipe::cli {

// Appends `length` bytes to the prompt, each drawn from softmax(logits / temperature) of
// the last `context` bytes, with Philox draws keyed by the seed. `model` is switched to eval
// mode for it; `forward` computes the logits. When `stop_requested` (checked before each
// byte) says so, returns the text drawn so far.
std::string generate_text(nn::Module& model, const ModelForward& forward, const nn::GPTConfig& config,
                          const std::string& prompt, int64_t length, float temperature, uint64_t seed,
                          const std::function<bool()>& stop_requested = {});

// The text as it is safe to print: an untrained byte-level model draws any byte, and raw
// control bytes (ESC above all) or broken UTF-8 would garble the terminal. Keeps printable
// ASCII, newlines, tabs and well-formed UTF-8 characters outside the C1 controls; writes
// every other byte as \xNN.
std::string printable_text(const std::string& bytes);

}  // namespace minipipe::cli

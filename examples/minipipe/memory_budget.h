#pragma once
// Sizes from flags or checkpoint metadata are checked before anything is allocated: a run
// estimates the bytes it needs (in floating point, so absurd sizes cannot overflow) and
// compares them with what the machine can give, instead of growing until it is killed.
#include <cstdint>
#include <string>

#include "nn/convolutional.h"
#include "nn/transformer.h"

namespace minipipe::cli {

// --memory-limit in MiB when given (> 0), else the machine's available memory
// (MemAvailable in /proc/meminfo); 0 when neither is known.
int64_t memory_budget_bytes(int64_t limit_mib);

// Throws, naming the estimate, the budget and the fix, when `bytes` is over the budget.
void check_memory_budget(double bytes, int64_t limit_mib, const std::string& what, const std::string& fix);

// Training a model: parameters with their gradients and two Adam moments, plus the
// activations one step keeps (a generous estimate: several tensors per layer). For a GPT cut
// into `stages` (processes under mpirun, each holding its stage's layers alone): what the rank
// holding the most needs, under the uniform partition.
double gpt_training_bytes(const nn::GPTConfig& config, int64_t batch_size, int stages = 1);
double resnet_training_bytes(const nn::ResNetConfig& config, int64_t batch_size, int64_t image_height, int64_t image_width);

}  // namespace minipipe::cli

#pragma once
// The `minipipe` subcommands, behind plain option structs (main.cpp parses the command
// line with CLI11; nothing else includes it).
#include <cstdint>
#include <string>

namespace minipipe::cli {

struct TrainOptions {
  std::string device = "cpu";
  int64_t steps = 0;          // 0: the model's default
  int64_t epochs = 0;         // CNN only; overrides steps when set
  int64_t batch_size = 0;     // 0: the model's default
  float learning_rate = 0.0f; // 0: the model's default
  uint64_t seed = 0;
  std::string data;           // empty: the bundled data
  std::string save, resume, log_json;
  int64_t eval_interval = 0;  // 0: the model's default
  int64_t stop_after = 0;     // stop (and save) after this many steps of this run; 0: run to the end
};

struct CnnOptions : TrainOptions {
  int64_t width = 16;
  int64_t blocks_per_stage = 1;
};

struct GptOptions : TrainOptions {
  int64_t dim = 128, layers = 4, heads = 4, context = 128;
  // Off by default: the 5-minute default run sees each byte about 3 times and does not
  // overfit, and dropout slows its descent (measured: 2.30 vs 2.05 nats/byte at step 400).
  float dropout = 0.0f;
  int64_t sample_length = 200;  // bytes printed after training (0: none)
};

struct SampleOptions {
  std::string checkpoint, prompt = "Tom ";
  int64_t length = 300;
  float temperature = 0.8f;
  uint64_t seed = 0;
};

int train_cnn(const CnnOptions& options);
int train_gpt(const GptOptions& options);
int sample_gpt(const SampleOptions& options);
int print_info();

// Where the bundled data lives: $MINIPIPE_DATA_DIR, else the source tree's data/, else the
// installed copy.
std::string data_directory();

}  // namespace minipipe::cli

// `minipipe train gpt`: a byte-level GPT on the bundled novel (or any text file), with
// validation loss in nats per byte, exact resume, JSON Lines logs and a sample at the end.
#include <cstdio>
#include <stdexcept>

#include "commands.h"
#include "datasets/readers.h"
#include "evaluation.h"
#include "memory_budget.h"
#include "nn/losses.h"
#include "pipeline/process_group.h"
#include "text_generation.h"
#include "training_run.h"

namespace minipipe::cli {

int train_gpt(const GptOptions& options) {
  const Device device = pipeline::device_of_rank(Device::parse(options.device));  // under mpirun: the rank's GPU
  const TextData text = load_text_data(options.data);
  const datasets::TextCorpus &train_text = text.train, &validation_text = text.validation;

  nn::GPTConfig config{256, options.context, options.dim, options.layers, options.heads, options.dropout, options.seed,
                       options.tie_embeddings};
  if (!options.resume.empty()) {
    config = nn::gpt_config_from(nn::read_checkpoint_metadata(options.resume), options.resume);
    config.seed = options.seed;
  }
  const int64_t batch_size = options.batch_size > 0 ? options.batch_size : 16;
  // Under mpirun each rank holds its stage alone, and the limit is each rank's.
  const int ranks_sharing = pipeline::launched_by_mpirun() ? options.pipeline.stages : 1;
  check_memory_budget(gpt_training_bytes(config, batch_size, ranks_sharing), options.memory_limit_mib,
                      "a GPT of " + std::to_string(config.layers) + " layers of width " + std::to_string(config.dim) +
                          " trained on " + std::to_string(batch_size) + " x " + std::to_string(config.context) + " tokens" +
                          (ranks_sharing > 1 ? " (the largest of " + std::to_string(ranks_sharing) + " ranks' shares)" : ""),
                      options.resume.empty() ? "lower --layers, --dim, --context or --batch-size"
                                             : "the checkpoint's model is this size; lower --batch-size");
  TrainingRecipe recipe;
  recipe.model_name = "gpt";
  recipe.throughput_unit = "tokens";
  recipe.layers = nn::gpt_recipe(config);
  recipe.loss = [](const Tensor& out, const Tensor& targets) { return nn::cross_entropy_loss(out, targets); };
  recipe.total_steps = options.steps > 0 ? options.steps : 800;
  recipe.eval_interval = options.eval_interval > 0 ? options.eval_interval : 100;
  const float peak_learning_rate = options.learning_rate > 0 ? options.learning_rate : 5e-3f;
  recipe.optimizer = {
      [peak_learning_rate](nn::NamedTensors parameters) {
        return std::make_unique<nn::AdamW>(std::move(parameters),
                                           nn::AdamWOptions{.lr = peak_learning_rate, .beta2 = 0.99f, .weight_decay = 0.1f});
      },
      {nn::LearningRateSchedule::Kind::WarmupCosine, peak_learning_rate, std::max<int64_t>(1, recipe.total_steps / 20),
       recipe.total_steps, 0.1f},
      1.0f};
  recipe.batch_at = [&train_text, batch_size, config, seed = options.seed](int64_t step) {
    return train_text.sample(batch_size, config.context, seed, step);
  };
  recipe.items_in = [](const datasets::Batch& batch) { return batch.inputs.numel(); };
  const std::vector<datasets::Batch> validation_batches = gpt_validation_batches(validation_text, batch_size, config.context);
  recipe.evaluate = [&validation_batches](nn::Module& model, const ModelForward& forward) {
    Evaluation evaluation;
    evaluation.loss = gpt_validation_loss(model, forward, validation_batches);
    evaluation.text = evaluation.result = "validation loss " + std::to_string(evaluation.loss) + " nats/byte";
    return evaluation;
  };
  recipe.checkpoint_metadata = nn::gpt_metadata(config);
  recipe.checkpoint_metadata["validation_batch_size"] = std::to_string(batch_size);  // `minipipe eval` evaluates the same windows
  recipe.description = [&, steps = recipe.total_steps](int64_t parameters) {
    return "gpt: " + std::to_string(parameters) + " parameters (" + std::to_string(config.layers) + " layers, dim " +
           std::to_string(config.dim) + ", " + std::to_string(config.heads) + " heads, context " +
           std::to_string(config.context) + ") on " + text.path + " (" + std::to_string(train_text.tokens.size()) +
           " training bytes), " + std::to_string(steps) + " steps of " + std::to_string(batch_size) + " x " +
           std::to_string(config.context) + " tokens on " + device.str();
  };
  recipe.more_steps_flags = "--steps";
  recipe.after_training = [&](nn::Module& model, const ModelForward& forward, const std::function<bool()>& stop_requested,
                              TrainingLog& log) {
    if (options.sample_length == 0 || stop_requested()) return;
    // Ctrl-C or SIGTERM while sampling ends the sample where it is (the run is saved already).
    const std::string prompt = "Tom ";
    bool stopped = false;
    const std::string sample = generate_text(model, forward, config, prompt, options.sample_length, 0.8f, options.seed,
                                             [&] { return stopped = stop_requested(); });
    std::printf("--- sample ---\n%s\n", printable_text(sample).c_str());
    if (stopped)
      log.message("sampling stopped by a signal after " + std::to_string(sample.size() - prompt.size()) + " bytes");
  };
  return run_training(options, device, recipe);
}

}  // namespace minipipe::cli

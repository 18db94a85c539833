// `minipipe train gpt`: a byte-level GPT on the bundled novel (or any text file), with
// validation loss in nats per byte, exact resume, JSON Lines logs and a sample at the end.
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "autograd/node.h"
#include "commands.h"
#include "evaluation.h"
#include "datasets/readers.h"
#include "memory_budget.h"
#include "nn/losses.h"
#include "tensor/allocator.h"
#include "text_generation.h"
#include "pipeline/process_group.h"
#include "pipelined_training.h"
#include "training_state.h"
#include "stop_requests.h"
#include "training_log.h"

namespace minipipe::cli {

int train_gpt(const GptOptions& options) {
  const Device device = pipeline::device_of_rank(Device::parse(options.device));  // under mpirun: the rank's GPU
  const TextData text = load_text_data(options.data);
  const datasets::TextCorpus &train_text = text.train, &validation_text = text.validation;
  const std::string& path = text.path;

  nn::GPTConfig config{256, options.context, options.dim, options.layers, options.heads, options.dropout, options.seed,
                       options.tie_embeddings};
  if (!options.resume.empty()) {
    config = nn::gpt_config_from(read_metadata(options.resume), options.resume);
    config.seed = options.seed;
  }
  const int64_t batch_size = options.batch_size > 0 ? options.batch_size : 16;
  check_memory_budget(gpt_training_bytes(config, batch_size), options.memory_limit_mib,
                      "a GPT of " + std::to_string(config.layers) + " layers of width " + std::to_string(config.dim) +
                          " trained on " + std::to_string(batch_size) + " x " + std::to_string(config.context) + " tokens",
                      options.resume.empty() ? "lower --layers, --dim, --context or --batch-size"
                                             : "the checkpoint's model is this size; lower --batch-size");
  auto model = nn::make_gpt(config);
  model->to(device);

  const int64_t total_steps = options.steps > 0 ? options.steps : 800;
  const int64_t eval_interval = options.eval_interval > 0 ? options.eval_interval : 100;
  const float peak_learning_rate = options.learning_rate > 0 ? options.learning_rate : 5e-3f;
  const OptimizerSetup optimizer{
      [peak_learning_rate](nn::NamedTensors parameters) {
        return std::make_unique<nn::AdamW>(std::move(parameters),
                                           nn::AdamWOptions{.lr = peak_learning_rate, .beta2 = 0.99f, .weight_decay = 0.1f});
      },
      {nn::LearningRateSchedule::Kind::WarmupCosine, peak_learning_rate, std::max<int64_t>(1, total_steps / 20), total_steps, 0.1f},
      1.0f};
  const int64_t start_step =
      options.resume.empty() ? 0 : nn::metadata_integer(read_metadata(options.resume), "step", options.resume, 0, int64_t{1} << 50);
  int64_t end_step = options.stop_after > 0 ? std::min(total_steps, start_step + options.stop_after) : total_steps;
  if (start_step >= total_steps)
    throw std::runtime_error("nothing to do: the run is already at step " + std::to_string(start_step) + " of " +
                             std::to_string(total_steps) + " (raise --steps)");
  const std::vector<datasets::Batch> validation_batches = gpt_validation_batches(validation_text, batch_size, config.context);

  const datasets::Batch first = train_text.sample(batch_size, config.context, options.seed, start_step);
  PipelinedTraining training(model, options.pipeline, device, options.seed,
                             [](const Tensor& out, const Tensor& targets) { return nn::cross_entropy_loss(out, targets); },
                             datasets::split_into_micro_batches(first, options.pipeline.micro_batches)[0].inputs.to(device),
                             optimizer, [config] { return nn::make_gpt(config); });
  if (!options.resume.empty()) load_training_state(options.resume, *model, training.optimizers());
  const ModelForward forward = [&training](const Tensor& x) { return training.forward(x); };
  TrainingLog log(options.log_json, start_step, end_step, "tokens");
  log.message("gpt: " + std::to_string(model->parameter_count()) + " parameters (" + std::to_string(config.layers) +
              " layers, dim " + std::to_string(config.dim) + ", " + std::to_string(config.heads) + " heads, context " +
              std::to_string(config.context) + ") on " + path + " (" + std::to_string(train_text.tokens.size()) +
              " training bytes), " + std::to_string(total_steps) + " steps of " + std::to_string(batch_size) + " x " +
              std::to_string(config.context) + " tokens on " + device.str());
  for (const std::string& file : {options.resume, options.save})
    if (const std::string note = stale_temporary_note(file); !note.empty()) log.message(note);
  training.reset_peak_memory();
  training.log_setup(log, end_step, total_steps, eval_interval);
  float last_loss = 0.0f;
  double last_validation = NAN;
  const StopRequests stop;  // from here on, Ctrl-C ends the run after its step and saves
  for (int64_t step = start_step; step < end_step;) {
    const int64_t count = training.steps_per_call(step, end_step, eval_interval);  // 1 unless pipedream
    std::vector<datasets::Batch> batches;
    for (int64_t i = 0; i < count; ++i) batches.push_back(train_text.sample(batch_size, config.context, options.seed, step + i));
    const std::vector<float> losses = training.train(batches, step);
    log.steps(step, losses, training.learning_rates(step, count), batches[0].inputs.numel());
    last_loss = losses.back();
    step += count;
    if (step % eval_interval == 0 || step == end_step) {
      last_validation = gpt_validation_loss(*model, forward, validation_batches);
      log.evaluation(step - 1, JsonObject().add_exact("validation_loss", last_validation),
                     "validation loss " + std::to_string(last_validation) + " nats/byte");
    }
    if (stop.ends_run_after(step - 1, end_step, log, options.save, [&](bool here) { return training.any_process(here); })) break;
  }
  if (!options.save.empty()) {
    Metadata metadata = nn::gpt_metadata(config);
    metadata["step"] = std::to_string(end_step);
    metadata["validation_batch_size"] = std::to_string(batch_size);  // `minipipe eval` evaluates the same windows
    save_training_state(options.save, *model, training.optimizers(), metadata);
    log.message("saved " + options.save + " at step " + std::to_string(end_step));
  }
  log.summary(JsonObject().add("event", std::string("summary")).add("model", std::string("gpt")).add("steps", end_step)
                  .add("final_train_loss", static_cast<double>(last_loss)).add_exact("final_validation_loss", last_validation)
                  .add("wall_seconds", log.elapsed_seconds())
                  .add_raw("pipeline", training.summary().str())
                  .add_raw("peak_bytes", training.peak_memory_json()));
  training.write_trace_files();
  log.message("done in " + std::to_string(static_cast<int>(log.elapsed_seconds())) + " s: validation loss " +
              std::to_string(last_validation) + " nats/byte, peak memory " + training.peak_memory_text());
  if (options.sample_length > 0 && !stop.requested()) {
    const std::string text = generate_text(*model, forward, config, "Tom ", options.sample_length, 0.8f, options.seed);
    std::printf("--- sample ---\n%s\n", printable_text(text).c_str());
  }
  return stop.exit_status();
}

}  // namespace minipipe::cli

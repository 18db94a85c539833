// `minipipe train cnn`: a small ResNet on the bundled digits set, or on (Fashion-)MNIST IDX
// files, with evaluation, checkpoints that resume exactly, and JSON Lines logs.
#include <filesystem>
#include <stdexcept>

#include "autograd/node.h"
#include "autograd/reduction.h"
#include "commands.h"
#include "evaluation.h"
#include "datasets/readers.h"
#include "model_forward.h"
#include "nn/convolutional.h"
#include "nn/losses.h"
#include "tensor/allocator.h"
#include "memory_budget.h"
#include "pipeline/process_group.h"
#include "pipelined_training.h"
#include "stop_requests.h"
#include "training_log.h"
#include "training_state.h"

namespace minipipe::cli {

int train_cnn(const CnnOptions& options) {
  const Device device = pipeline::device_of_rank(Device::parse(options.device));  // under mpirun: the rank's GPU
  const ImageData data = load_image_data(options.data);

  nn::ResNetConfig config;
  config.in_channels = data.train.inputs.shape()[1];
  config.width = options.width;
  config.blocks_per_stage = options.blocks_per_stage;
  config.stages = data.train.inputs.shape()[2] >= 16 ? 3 : 2;  // 8x8 digits: two stages
  config.seed = options.seed;
  int64_t start_step = 0;
  if (!options.resume.empty()) {  // the checkpoint's architecture wins
    const nn::ResNetConfig saved = nn::resnet_config_from(read_metadata(options.resume), options.resume);
    config.width = saved.width, config.blocks_per_stage = saved.blocks_per_stage, config.stages = saved.stages;
    config.in_channels = saved.in_channels;
  }
  const int64_t batch_size = options.batch_size > 0 ? options.batch_size : 64;
  check_memory_budget(resnet_training_bytes(config, batch_size, data.train.inputs.shape()[2], data.train.inputs.shape()[3]),
                      options.memory_limit_mib,
                      "a ResNet of width " + std::to_string(config.width) + " with " + std::to_string(config.blocks_per_stage) +
                          " blocks per stage trained on " + std::to_string(batch_size) + " images",
                      options.resume.empty() ? "lower --width, --blocks or --batch-size"
                                             : "the checkpoint's model is this size; lower --batch-size");
  auto model = nn::make_resnet(config);
  model->to(device);

  const datasets::DataLoader loader(data.train, batch_size, true, options.seed);
  const int64_t default_epochs = data.train.size() < 10000 ? 20 : 2;
  const int64_t total_steps = options.epochs > 0 ? options.epochs * loader.batches_per_epoch()
                              : options.steps > 0 ? options.steps
                                                  : default_epochs * loader.batches_per_epoch();
  const int64_t eval_interval = options.eval_interval > 0 ? options.eval_interval : loader.batches_per_epoch();
  const float peak_learning_rate = options.learning_rate > 0 ? options.learning_rate : 3e-3f;
  const OptimizerSetup optimizer{
      [peak_learning_rate](nn::NamedTensors parameters) {
        return std::make_unique<nn::AdamW>(std::move(parameters), nn::AdamWOptions{.lr = peak_learning_rate, .weight_decay = 1e-4f});
      },
      {nn::LearningRateSchedule::Kind::WarmupCosine, peak_learning_rate, total_steps / 20, total_steps, 0.05f},
      0.0f};
  if (!options.resume.empty())
    start_step = nn::metadata_integer(read_metadata(options.resume), "step", options.resume, 0, int64_t{1} << 50);
  int64_t end_step = options.stop_after > 0 ? std::min(total_steps, start_step + options.stop_after) : total_steps;
  if (start_step >= total_steps)
    throw std::runtime_error("nothing to do: the run is already at step " + std::to_string(start_step) + " of " +
                             std::to_string(total_steps) + " (raise --steps or --epochs)");

  const datasets::Batch first = loader.batch_at(start_step);
  PipelinedTraining training(model, options.pipeline, device, options.seed,
                             [](const Tensor& out, const Tensor& targets) { return nn::cross_entropy_loss(out, targets); },
                             datasets::split_into_micro_batches(first, options.pipeline.micro_batches)[0].inputs.to(device),
                             optimizer, [config] { return nn::make_resnet(config); });
  if (!options.resume.empty()) load_training_state(options.resume, *model, training.optimizers());
  const ModelForward forward = [&training](const Tensor& x) { return training.forward(x); };
  TrainingLog log(options.log_json, start_step, end_step, "samples");
  log.message("cnn: ResNet with " + std::to_string(model->parameter_count()) + " parameters on " + data.name + " (" +
              std::to_string(data.train.size()) + " train, " + std::to_string(data.test.size()) + " test images), " +
              std::to_string(total_steps) + " steps of " + std::to_string(batch_size) + " on " + device.str());
  for (const std::string& file : {options.resume, options.save})
    if (const std::string note = stale_temporary_note(file); !note.empty()) log.message(note);
  training.reset_peak_memory();
  training.log_setup(log, end_step, total_steps, eval_interval);
  float last_loss = 0.0f;
  CnnEvaluation last_eval;
  const StopRequests stop;  // from here on, Ctrl-C ends the run after its step and saves
  for (int64_t step = start_step; step < end_step;) {
    const int64_t count = training.steps_per_call(step, end_step, eval_interval);  // 1 unless pipedream
    std::vector<datasets::Batch> batches;
    for (int64_t i = 0; i < count; ++i) batches.push_back(loader.batch_at(step + i));
    const std::vector<float> losses = training.train(batches, step);
    log.steps(step, losses, training.learning_rates(step, count), batches[0].inputs.shape()[0]);
    last_loss = losses.back();
    step += count;
    if (step % eval_interval == 0 || step == end_step) {
      last_eval = evaluate_cnn(*model, forward, data.test);
      log.evaluation(step - 1, JsonObject().add_exact("validation_loss", last_eval.loss).add("accuracy", last_eval.accuracy),
                     "test loss " + std::to_string(last_eval.loss) + ", accuracy " + std::to_string(100 * last_eval.accuracy) + "%");
    }
    if (stop.ends_run_after(step - 1, end_step, log, options.save, [&](bool here) { return training.any_process(here); })) break;
  }
  if (!options.save.empty()) {
    Metadata metadata = nn::resnet_metadata(config);
    metadata["step"] = std::to_string(end_step);
    save_training_state(options.save, *model, training.optimizers(), metadata);
    log.message("saved " + options.save + " at step " + std::to_string(end_step));
  }
  log.summary(JsonObject().add("event", std::string("summary")).add("model", std::string("cnn")).add("steps", end_step)
                  .add("final_train_loss", static_cast<double>(last_loss)).add_exact("final_validation_loss", last_eval.loss)
                  .add("accuracy", last_eval.accuracy).add("wall_seconds", log.elapsed_seconds())
                  .add_raw("pipeline", training.summary().str())
                  .add_raw("peak_bytes", training.peak_memory_json()));
  training.write_trace_files();
  log.message("done in " + std::to_string(static_cast<int>(log.elapsed_seconds())) + " s: test accuracy " +
              std::to_string(100 * last_eval.accuracy) + "%, peak memory " + training.peak_memory_text());
  return stop.exit_status();
}

}  // namespace minipipe::cli

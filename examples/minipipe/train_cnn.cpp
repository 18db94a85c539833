// `minipipe train cnn`: a small ResNet on the bundled digits set, or on (Fashion-)MNIST IDX
// files, with evaluation, checkpoints that resume exactly, and JSON Lines logs.
#include <filesystem>
#include <stdexcept>

#include "autograd/node.h"
#include "autograd/reduction.h"
#include "commands.h"
#include "datasets/readers.h"
#include "model_forward.h"
#include "nn/convolutional.h"
#include "nn/losses.h"
#include "tensor/allocator.h"
#include "memory_budget.h"
#include "pipelined_training.h"
#include "stop_requests.h"
#include "training_log.h"
#include "training_state.h"

namespace minipipe::cli {

namespace {

struct ImageData {
  datasets::TensorDataset train, test;
  std::string name;
};

ImageData load_images(const std::string& path) {
  namespace fs = std::filesystem;
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

struct Evaluation {
  double loss = 0, accuracy = 0;
};

Evaluation evaluate(nn::Module& model, const ModelForward& forward, const datasets::TensorDataset& test) {
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

}  // namespace

int train_cnn(const CnnOptions& options) {
  const Device device = Device::parse(options.device);
  const ImageData data = load_images(options.data.empty() ? data_directory() + "/digits.csv.gz" : options.data);

  nn::ResNetConfig config;
  config.in_channels = data.train.inputs.shape()[1];
  config.width = options.width;
  config.blocks_per_stage = options.blocks_per_stage;
  config.stages = data.train.inputs.shape()[2] >= 16 ? 3 : 2;  // 8x8 digits: two stages
  config.seed = options.seed;
  int64_t start_step = 0;
  if (!options.resume.empty()) {  // the checkpoint's architecture wins
    const Metadata m = read_metadata(options.resume);
    if (required(m, "model", options.resume) != "cnn")
      throw std::runtime_error("checkpoint '" + options.resume + "' holds a " + m.at("model") + " model, not a cnn");
    config.width = required_integer(m, "width", options.resume, 1, 1 << 12);
    config.blocks_per_stage = required_integer(m, "blocks_per_stage", options.resume, 1, 1 << 10);
    config.stages = required_integer(m, "stages", options.resume, 1, 8);
    config.in_channels = required_integer(m, "in_channels", options.resume, 1, 1 << 10);
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
        return std::make_unique<nn::AdamW>(std::move(parameters), AdamWOptions{.lr = peak_learning_rate, .weight_decay = 1e-4f});
      },
      {nn::LearningRateSchedule::Kind::WarmupCosine, peak_learning_rate, total_steps / 20, total_steps, 0.05f},
      0.0f};
  if (!options.resume.empty())
    start_step = required_integer(read_metadata(options.resume), "step", options.resume, 0, int64_t{1} << 50);
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
  Evaluation last_eval;
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
      last_eval = evaluate(*model, forward, data.test);
      log.evaluation(step - 1, JsonObject().add("validation_loss", last_eval.loss).add("accuracy", last_eval.accuracy),
                     "test loss " + std::to_string(last_eval.loss) + ", accuracy " + std::to_string(100 * last_eval.accuracy) + "%");
    }
    if (stop.ends_run_after(step - 1, end_step, log, options.save)) break;
  }
  if (!options.save.empty()) {
    save_training_state(options.save, *model, training.optimizers(),
                        {{"model", "cnn"}, {"step", std::to_string(end_step)}, {"width", std::to_string(config.width)},
                         {"blocks_per_stage", std::to_string(config.blocks_per_stage)}, {"stages", std::to_string(config.stages)},
                         {"in_channels", std::to_string(config.in_channels)}, {"classes", std::to_string(config.classes)}});
    log.message("saved " + options.save + " at step " + std::to_string(end_step));
  }
  log.summary(JsonObject().add("event", std::string("summary")).add("model", std::string("cnn")).add("steps", end_step)
                  .add("final_train_loss", static_cast<double>(last_loss)).add("final_validation_loss", last_eval.loss)
                  .add("accuracy", last_eval.accuracy).add("wall_seconds", log.elapsed_seconds())
                  .add_raw("pipeline", training.summary().str())
                  .add_raw("peak_bytes", training.peak_memory_json()));
  training.write_trace_files();
  log.message("done in " + std::to_string(static_cast<int>(log.elapsed_seconds())) + " s: test accuracy " +
              std::to_string(100 * last_eval.accuracy) + "%, peak memory " + training.peak_memory_text());
  return stop.exit_status();
}

}  // namespace minipipe::cli

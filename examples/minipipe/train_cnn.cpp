// `minipipe train cnn`: a small ResNet on the bundled digits set, or on (Fashion-)MNIST IDX
// files, with evaluation, checkpoints that resume exactly, and JSON Lines logs.
#include <cmath>
#include <stdexcept>

#include "commands.h"
#include "datasets/readers.h"
#include "evaluation.h"
#include "memory_budget.h"
#include "nn/convolutional.h"
#include "nn/losses.h"
#include "pipeline/process_group.h"
#include "training_run.h"

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
  if (!options.resume.empty()) {  // the checkpoint's architecture wins
    const nn::ResNetConfig saved = nn::resnet_config_from(nn::read_checkpoint_metadata(options.resume), options.resume);
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
  const datasets::DataLoader loader(data.train, batch_size, true, options.seed);
  TrainingRecipe recipe;
  recipe.model_name = "cnn";
  recipe.throughput_unit = "samples";
  recipe.layers = nn::resnet_recipe(config);
  recipe.loss = [](const Tensor& out, const Tensor& targets) { return nn::cross_entropy_loss(out, targets); };
  const int64_t default_epochs = data.train.size() < 10000 ? 20 : 2;
  recipe.total_steps = options.epochs > 0 ? options.epochs * loader.batches_per_epoch()
                       : options.steps > 0 ? options.steps
                                           : default_epochs * loader.batches_per_epoch();
  recipe.eval_interval = options.eval_interval > 0 ? options.eval_interval : loader.batches_per_epoch();
  const float peak_learning_rate = options.learning_rate > 0 ? options.learning_rate : 3e-3f;
  recipe.optimizer = {
      [peak_learning_rate](nn::NamedTensors parameters) {
        return std::make_unique<nn::AdamW>(std::move(parameters), nn::AdamWOptions{.lr = peak_learning_rate, .weight_decay = 1e-4f});
      },
      {nn::LearningRateSchedule::Kind::WarmupCosine, peak_learning_rate, recipe.total_steps / 20, recipe.total_steps, 0.05f},
      0.0f};
  recipe.batch_at = [&loader](int64_t step) { return loader.batch_at(step); };
  recipe.items_in = [](const datasets::Batch& batch) { return batch.inputs.shape()[0]; };
  recipe.evaluate = [&data](nn::Module& model, const ModelForward& forward) {
    const CnnEvaluation result = evaluate_cnn(model, forward, data.test);
    Evaluation evaluation;
    evaluation.loss = result.loss;
    evaluation.accuracy = result.accuracy;
    evaluation.extra.add_exact("accuracy", result.accuracy);  // every digit, as `minipipe eval` prints it
    evaluation.text = "test loss " + std::to_string(result.loss) + ", accuracy " + std::to_string(100 * result.accuracy) + "%";
    evaluation.result = "test accuracy " + std::to_string(100 * result.accuracy) + "%";
    return evaluation;
  };
  recipe.unevaluated.extra.add("accuracy", NAN);
  recipe.checkpoint_metadata = nn::resnet_metadata(config);
  recipe.description = [&, steps = recipe.total_steps](int64_t parameters) {
    return "cnn: ResNet with " + std::to_string(parameters) + " parameters on " + data.name + " (" +
           std::to_string(data.train.size()) + " train, " + std::to_string(data.test.size()) + " test images), " +
           std::to_string(steps) + " steps of " + std::to_string(batch_size) + " on " + device.str();
  };
  recipe.more_steps_flags = "--steps or --epochs";
  return run_training(options, device, recipe);
}

}  // namespace minipipe::cli

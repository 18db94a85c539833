#pragma once
// The skeleton every `minipipe train MODEL` shares. A model's command builds its model, data
// and optimizer settings into a TrainingRecipe; run_training does the rest the same way for
// every model: the step to resume from, the pipeline (PipelinedTraining), the loop with its
// evaluations and stop requests, the checkpoint, the summary line and the closing line.
#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "commands.h"
#include "datasets/dataset.h"
#include "model_forward.h"
#include "nn/model_recipe.h"
#include "pipelined_training.h"
#include "stop_requests.h"
#include "training_log.h"
#include "training_state.h"

namespace minipipe::cli {

// One evaluation of the model during training.
struct Evaluation {
  double loss = NAN;       // the validation (or test) loss; NaN until one has run
  double accuracy = NAN;   // the CNN's test accuracy (a fraction); NaN for models without one
  JsonObject extra;        // further fields for the JSON lines (the CNN's accuracy)
  std::string text;        // the line shown after it
  std::string result;      // the closing line's words for it ("test accuracy 98.6%")
};

struct TrainingRecipe {
  std::string model_name;       // the summary's "model"
  std::string throughput_unit;  // what the progress rate counts: "tokens", "samples"
  // The model, layer by layer: built whole in one process, and under mpirun each rank's
  // layers alone (nn/model_recipe.h).
  nn::ModelRecipe layers;
  pipeline::LossFunction loss;
  OptimizerSetup optimizer;
  int64_t total_steps = 0, eval_interval = 0;
  std::function<datasets::Batch(int64_t step)> batch_at;  // the mini-batch of each step
  std::function<int64_t(const datasets::Batch&)> items_in;  // what the rate counts, in one mini-batch
  // `model`: as this process holds it (its mode is switched for evaluation).
  std::function<Evaluation(nn::Module& model, const ModelForward&)> evaluate;
  Evaluation unevaluated;        // what the summary reports when no evaluation ran
  Metadata checkpoint_metadata;  // what --save records beside the weights (the step is added)
  // The run's first line, before the pipeline's, given the model's parameter count.
  std::function<std::string(int64_t parameters)> description;
  std::string more_steps_flags;  // which flags lengthen the run, for "nothing to do"
  // After the closing line (the GPT's sample). `stop_requested` says whether Ctrl-C or
  // SIGTERM reached this process or, under mpirun, any process: every rank calls it at the
  // same points, and all stop together.
  std::function<void(nn::Module& model, const ModelForward&, const std::function<bool()>& stop_requested, TrainingLog&)>
      after_training;
};

// Trains as `options` say; returns the exit status (0, or 128 + the signal that stopped it).
int run_training(const TrainOptions& options, Device device, const TrainingRecipe& recipe);

}  // namespace minipipe::cli

#include "training_run.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "nn/model_file.h"

namespace minipipe::cli {

namespace {

// Whether an evaluation reached the run's target (--target-loss, --target-accuracy), and in
// which words; empty when it did not, or no target was set.
std::string target_reached(const TrainOptions& options, const Evaluation& evaluation) {
  if (options.target_loss > 0 && evaluation.loss <= options.target_loss)
    return "loss " + format_value("%.4f", evaluation.loss) + " <= " + format_value("%g", options.target_loss);
  if (options.target_accuracy > 0 && evaluation.accuracy >= options.target_accuracy)
    return "accuracy " + format_value("%.1f", 100 * evaluation.accuracy) + "% >= " + format_value("%g", 100 * options.target_accuracy) + "%";
  return "";
}

}  // namespace

int run_training(const TrainOptions& options, Device device, const TrainingRecipe& recipe) {
  const int64_t start_step =
      options.resume.empty() ? 0 : nn::metadata_integer(nn::read_checkpoint_metadata(options.resume), "step", options.resume, 0, int64_t{1} << 50);
  int64_t end_step = options.stop_after > 0 ? std::min(recipe.total_steps, start_step + options.stop_after) : recipe.total_steps;
  if (start_step >= recipe.total_steps)
    throw std::runtime_error("nothing to do: the run is already at step " + std::to_string(start_step) + " of " +
                             std::to_string(recipe.total_steps) + " (raise " + recipe.more_steps_flags + ")");

  const datasets::Batch first = recipe.batch_at(start_step);
  PipelinedTraining training(recipe.layers, options.pipeline, device, options.seed, recipe.loss,
                             datasets::split_into_micro_batches(first, options.pipeline.micro_batches)[0].inputs.to(device),
                             recipe.optimizer);
  nn::Sequential& model = *training.model();
  if (!options.resume.empty()) load_training_state(options.resume, model, training.optimizers(), training.tied_copies());
  const ModelForward forward = [&training](const Tensor& x) { return training.forward(x); };
  TrainingLog log(options.log_json, start_step, end_step, recipe.throughput_unit);
  log.message(recipe.description(training.model_parameters()));
  for (const std::string& file : {options.resume, options.save})
    if (const std::string note = stale_temporary_note(file); !note.empty()) log.message(note);
  training.reset_peak_memory();
  training.log_setup(log, end_step, recipe.total_steps, recipe.eval_interval);

  float last_loss = 0.0f;
  Evaluation last_evaluation = recipe.unevaluated;
  // Time to target counts the training steps alone: evaluations cost every schedule the same.
  const bool has_target = options.target_loss > 0 || options.target_accuracy > 0;
  double training_seconds = 0;
  int64_t target_step = -1;
  const StopRequests stop;  // from here on, Ctrl-C ends the run after its step and saves
  for (int64_t step = start_step; step < end_step;) {
    const int64_t count = training.steps_per_call(step, end_step, recipe.eval_interval);  // 1 unless pipedream
    std::vector<datasets::Batch> batches;
    for (int64_t i = 0; i < count; ++i) batches.push_back(recipe.batch_at(step + i));
    const auto started = std::chrono::steady_clock::now();
    const std::vector<float> losses = training.train(batches, step);
    training_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log.steps(step, losses, training.learning_rates(step, count), recipe.items_in(batches[0]));
    last_loss = losses.back();
    step += count;
    if (step % recipe.eval_interval == 0 || step == end_step) {
      last_evaluation = recipe.evaluate(model, forward);
      log.evaluation(step - 1, JsonObject().add_exact("validation_loss", last_evaluation.loss).merge(last_evaluation.extra),
                     last_evaluation.text);
      const std::string reached = target_reached(options, last_evaluation);
      if (has_target && training.any_process(!reached.empty())) {  // all ranks stop together
        target_step = step;
        log.message("reached the target (" + reached + ") after step " + std::to_string(step) + ", " +
                    format_value("%.2f", training_seconds) + " s of training (evaluations excluded)");
        end_step = step;
        break;
      }
    }
    if (stop.ends_run_after(step - 1, end_step, log, options.save, [&](bool here) { return training.any_process(here); })) break;
  }

  if (!options.save.empty()) {
    Metadata metadata = recipe.checkpoint_metadata;
    metadata["step"] = std::to_string(end_step);
    save_training_state(options.save, model, training.optimizers(), metadata, training.process_group(),
                        training.tied_copies());
    log.message("saved " + options.save + " at step " + std::to_string(end_step));
  }
  JsonObject summary = JsonObject().add("event", std::string("summary")).add("model", recipe.model_name).add("steps", end_step)
                           .add("final_train_loss", static_cast<double>(last_loss))
                           .add_exact("final_validation_loss", last_evaluation.loss).merge(last_evaluation.extra)
                           .add("wall_seconds", log.elapsed_seconds())
                           .add_raw("pipeline", training.summary().str())
                           .add_raw("peak_bytes", training.peak_memory_json());
  if (has_target) {
    if (target_step < 0) {
      log.message("the target was not reached in " + std::to_string(end_step) + " steps");
      summary.add_raw("target_step", "null").add_raw("target_training_seconds", "null");
    } else {
      summary.add("target_step", target_step).add("target_training_seconds", training_seconds);
    }
  }
  if (training.process_group()) summary.add_raw("ranks", training.ranks_json());  // every rank takes part
  log.summary(summary);
  if (const std::string profile = training.profile_text(); !profile.empty()) log.message(profile);
  training.write_trace_files();
  const std::string evaluated =
      std::isnan(last_evaluation.loss) ? "no evaluation ran (stopped before the first)" : last_evaluation.result;
  log.message("done in " + std::to_string(static_cast<int>(log.elapsed_seconds())) + " s: " + evaluated +
              ", peak memory " + training.peak_memory_text());
  if (recipe.after_training)
    recipe.after_training(model, forward, [&] { return training.any_process(stop.requested()); }, log);
  return stop.exit_status();
}

}  // namespace minipipe::cli

#pragma once
// The training commands train every step through the library's pipeline::Trainer (one stage
// and one micro-batch by default, which is plain training). This turns the command's flags
// into the Trainer's options and reports what the commands show: the plan, notes on the
// setup, measured bubble, per-stage peak bytes and weight versions, and the trace and
// timeline of the last call.
#include <functional>
#include <memory>

#include "commands.h"
#include "pipeline/trainer.h"
#include "training_log.h"

namespace minipipe::cli {

using OptimizerSetup = pipeline::OptimizerSetup;

class PipelinedTraining {
 public:
  // The model is built from `layers` on `device`: whole in one process, under mpirun this
  // rank's layers only (pipeline::Trainer).
  PipelinedTraining(const nn::ModelRecipe& layers, const PipelineFlags& flags, Device device, uint64_t seed,
                    pipeline::LossFunction loss, const Tensor& sample_micro_batch, const OptimizerSetup& optimizer);
  // The model as this process holds it (evaluation switches it to eval mode and back).
  const std::shared_ptr<nn::Sequential>& model() const { return model_; }
  // Parameters in the whole model: under mpirun the ranks' counts added (every rank calls it).
  int64_t model_parameters() const;
  // The steps' kernels are timed under --profile (evaluation's are not).
  std::vector<float> train(const std::vector<datasets::Batch>& batches, int64_t first_step);
  // Under --profile: where the steps' CPU time went, kernel by kernel ("" without).
  std::string profile_text() const;
  std::string kernel_profile_json() const;
  int64_t steps_per_call(int64_t step, int64_t end_step, int64_t eval_interval) const {
    return trainer_.steps_per_call(step, end_step, eval_interval);
  }
  std::vector<nn::Optimizer*> optimizers() const { return trainer_.optimizers(); }
  std::vector<float> learning_rates(int64_t first_step, int64_t count) const;
  Tensor forward(const Tensor& x) const { return trainer_.forward(x); }
  bool any_process(bool here) const { return trainer_.any_process(here); }
  const pipeline::ProcessGroup* process_group() const { return trainer_.process_group(); }  // null without mpirun
  std::map<std::string, std::string> tied_copies() const { return trainer_.tied_copies(); }
  std::string plan_text() const;
  // The plan when there is more than one stage or micro-batch, and a note when the stages'
  // threads outnumber the cores (or --threads cannot be honoured).
  // Also a note when pipedream must drain where an uninterrupted run would not (--stop-after
  // off a drain point), since resuming then cannot give that run's losses exactly.
  void log_setup(TrainingLog& log, int64_t end_step, int64_t total_steps, int64_t eval_interval) const;
  // Memory on every device the stages use (--device, or each of --stage-devices once).
  void reset_peak_memory() const;
  std::string peak_memory_json() const;  // {"cpu": bytes, "cuda:0": bytes}
  std::string peak_memory_text() const;  // "6 MiB on cpu, 3 MiB on cuda:0"
  JsonObject summary() const;  // the "pipeline" object of the summary line
  // Under mpirun (every rank calls it; rank 0 gets the array): per rank, the pieces it holds,
  // its parameters, its peak bytes and what it sent per step, by kind.
  std::string ranks_json() const;
  void write_trace_files() const;

 private:
  std::string weights_text() const;  // "stash", ... under pipedream; "synchronous" otherwise

  PipelineFlags flags_;
  pipeline::Trainer trainer_;
  std::shared_ptr<nn::Sequential> model_;
  std::vector<Device> devices_;  // distinct, in stage order
};

}  // namespace minipipe::cli

#pragma once
// The training commands run every step through a pipeline::Pipeline (one stage and one
// micro-batch by default, which is plain training). This wraps it with the optimizers and
// what the commands report: measured bubble, per-stage peak bytes and weight versions, and
// the trace and timeline of the last call.
#include <functional>
#include <memory>

#include "commands.h"
#include "nn/optim/optimizer.h"
#include "pipeline/executor.h"
#include "pipeline/process_group.h"
#include "training_log.h"

namespace minipipe::cli {

// How the commands optimise: the optimizer for a list of parameters, the learning rate at
// each step, and the largest gradient norm (0: no clipping).
struct OptimizerSetup {
  std::function<std::unique_ptr<nn::Optimizer>(nn::NamedTensors)> make;
  nn::LearningRateSchedule learning_rate;
  float clip_norm = 0.0f;
};

// The --weights flag checked against --schedule: "stash" when pipedream has none, an error
// when a synchronous schedule has one.
std::string weight_policy_flag(const std::string& schedule, const std::string& weights);

// --replicas: one count per stage, like "2,1" (empty: none).
std::vector<int> parse_replicas(const std::string& list, int stages);

class PipelinedTraining {
 public:
  // Synchronous schedules get one optimizer over the whole model, stepped after each
  // mini-batch with the global gradient norm clipped; pipedream gets one per stage (per
  // replica of a replicated stage), stepped on its thread with the stage's own gradient norm
  // clipped (no stage sees the others' gradients: PipeDream's stages update independently).
  // `model_factory` builds the model again (its values do not matter): replicated stages
  // (--replicas, or --plan auto under pipedream) run their further replicas on copies.
  using ModelFactory = std::function<std::shared_ptr<nn::Sequential>()>;
  PipelinedTraining(std::shared_ptr<nn::Sequential> model, const PipelineFlags& flags, Device device, uint64_t seed,
                    pipeline::LossFunction loss, const Tensor& sample_micro_batch, const OptimizerSetup& optimizer,
                    ModelFactory model_factory);
  bool asynchronous() const { return flags_.schedule == "pipedream"; }
  // The measured bubble needs every stage's timed instructions: not under --untimed, and not
  // across processes, where each rank sees one stage's events (null, not a false number).
  bool measures_bubble() const { return !flags_.untimed && !group_; }
  // Mini-batches `first_step`, `first_step` + 1, ... trained, their losses returned: one after
  // another for synchronous schedules, streamed through the pipeline for pipedream.
  std::vector<float> train(const std::vector<datasets::Batch>& batches, int64_t first_step);
  // How many steps the next train() should take from `step`: 1 for synchronous schedules;
  // pipedream streams up to the next drain point (an evaluation, a multiple of 64 steps, so
  // that the progress shown stays fresh) or the end, and drains there.
  // Replicated stages (round_robin() > 1) need every drain point at a multiple of it.
  int64_t steps_per_call(int64_t step, int64_t end_step, int64_t eval_interval) const;
  // Every optimizer (the replicas of a stage hold equal states after a drain).
  std::vector<nn::Optimizer*> optimizers() const;
  float learning_rate(int64_t step) const { return optimizer_setup_.learning_rate.at(step); }
  std::vector<float> learning_rates(int64_t first_step, int64_t count) const;
  // The model's forward with the stages on their devices (evaluation, sampling).
  Tensor forward(const Tensor& x) const { return pipeline_->forward(x); }
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
  void write_trace_files() const;
  // Whether this process, or under mpirun any process, was asked to stop (after each step, on
  // every process, so that all stop after the same step).
  bool any_process(bool here) const { return group_ ? group_->sum(here ? 1.0 : 0.0) > 0 : here; }

 private:
  pipeline::StagePlan planned_partition(const Tensor& sample);  // --plan auto
  void join_process_group(Device device);                                     // under mpirun
  // Under mpirun: this replica's share of `batch`, and, after its run, every stage's gradient
  // (averaged over the replicas) on every rank and the mini-batch's loss.
  datasets::Batch data_parallel_shard(const datasets::Batch& batch) const;
  float gather_step(const pipeline::StepResult& result) const;
  std::vector<pipeline::TraceEvent> gather_trace(std::vector<std::string>& row_names) const;
  // --token-slices N or auto (TeraPipe's planner on timings of the stages) for sequences like
  // `sample`; empty without the flag.
  std::vector<int64_t> token_slices(const pipeline::StagePlan& plan, const Tensor& sample);
  int64_t round_robin() const;  // steps that give every replica of every stage one mini-batch
  int64_t drain_every() const;  // pipedream drains at least this often: 64 steps, or a multiple of round_robin()

  std::shared_ptr<nn::Sequential> model_;
  PipelineFlags flags_;
  std::unique_ptr<pipeline::ProcessGroup> group_;  // under mpirun: this process's place in the run
  std::string rank_map_;                           // which rank runs which stage of which replica
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  OptimizerSetup optimizer_setup_;
  std::vector<std::unique_ptr<nn::Optimizer>> optimizers_;  // one, or one per worker (pipedream)
  std::vector<int> replicas_;                               // per stage; empty: one each
  std::vector<int> peak_weight_versions_;
  std::vector<int64_t> peak_stash_bytes_;
  std::vector<Device> devices_;  // distinct, in stage order
  std::vector<int64_t> peak_bytes_;
  std::vector<pipeline::TraceEvent> last_trace_;
  double last_trace_origin_us_ = 0;
  int64_t last_call_mini_batches_ = 1;
  double planned_seconds_per_mini_batch_ = 0;  // --plan auto or --token-slices auto: the planner's prediction
  std::vector<int64_t> token_slices_;          // the lengths in use (empty: none)
  std::string token_slice_note_;               // how auto chose them
  double training_seconds_ = 0;                // in train(), for the measured time per mini-batch
  int64_t mini_batches_trained_ = 0;
  double bubble_sum_ = 0;
  int64_t steps_ = 0;
};

}  // namespace minipipe::cli

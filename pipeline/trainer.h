#pragma once
// Training through a pipeline, as a library: what turns a Pipeline's forward and backward
// passes into a training run. A Trainer
// - cuts the model into stages (a partition method, or PipeDream's planner, section 3.1) and
//   token slices (a count, or TeraPipe's planner, section 3.3), and builds the Pipeline;
// - owns the optimizers: one over the whole model for the synchronous schedules, stepped after
//   each mini-batch with the global gradient norm clipped; one per stage (per replica of a
//   replicated stage) under pipedream, stepped on the stage's own thread with that stage's
//   gradient norm clipped, since PipeDream's stages update independently (section 3.3);
// - sets the learning rate of every step from its schedule;
// - under mpirun joins the process group (process_group.h): K x D processes run the K stages
//   of D data-parallel pipeline replicas, each replica trains on its share of every
//   mini-batch. A rank holds its stage's layers only (built alone from an nn::ModelRecipe,
//   or cut from a whole model), with their gradients and optimizer state; a stage's replicas
//   average its gradients, the ranks agree on the global gradient norm from each stage's
//   squared norms, and each rank steps its own stage: the same step one process takes. In
//   one process the D replicas run as threads beside each other (data_parallel.h);
// - keeps what a run measured (peak bytes, weight versions, bubble, the last trace).
// The command line (examples/minipipe) is one user of it; docs/api.md shows another.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "nn/model_recipe.h"
#include "nn/optim/optimizer.h"
#include "pipeline/data_parallel.h"
#include "pipeline/executor.h"
#include "pipeline/process_group.h"
#include "pipeline/schedule_spec.h"

namespace minipipe::pipeline {

// How a Trainer optimises: an optimizer for a list of parameters, the learning rate at each
// step, and the largest gradient norm (0: no clipping).
struct OptimizerSetup {
  std::function<std::unique_ptr<nn::Optimizer>(nn::NamedTensors)> make;
  nn::LearningRateSchedule learning_rate;
  float clip_norm = 0.0f;
};

struct TrainerOptions {
  // The schedule. Its token_slices count cuts sequences into equal slices; under
  // plan_stages, `stages` counts the workers the planner may use.
  ScheduleSpec schedule;
  // How the stages run: recompute, devices, seed, tracing, kernel threads, status reports,
  // an injected link. Its schedule fields (schedule, micro_batches, virtual_stages, weights,
  // token_slices, replicas, model_factory, remote_stages) are set from the rest of these
  // options.
  PipelineOptions pipeline;
  std::string partition = "uniform";  // make_partition's methods: uniform, params, time, or counts like "3,3,2"
  bool plan_stages = false;           // PipeDream's planner chooses the stages (and, under pipedream, replicas)
  bool plan_token_slices = false;     // TeraPipe's planner chooses the token slices
  // The token slices' lengths (adding up to the sequence length), in place of schedule.token_slices
  // equal ones: a plan TeraPipe's planner made before, say.
  std::vector<int64_t> token_slice_lengths;
  OptimizerSetup optimizer;
  Device device = Device::cpu();      // where the model is (every stage, unless pipeline.stage_devices says)
  // Builds the model again (its values do not matter): replicated stages run on copies.
  std::function<std::shared_ptr<nn::Sequential>()> model_factory;
  // Data-parallel pipeline replicas, each on its share of every mini-batch: under mpirun the
  // processes are stages x replicas; in one process the replicas are threads (data_parallel.h),
  // which needs model_factory or a recipe.
  int data_parallel = 1;
  // Under mpirun: how long a rank waits for a neighbour before the run fails (0: for ever),
  // and a text that must be the same on every rank (the command line, say), checked before
  // the first step.
  double rank_timeout_seconds = 600;
  std::string same_on_every_rank;
};

// What the runs so far measured, per worker (stage, or replica of a stage) where a list.
struct TrainingStats {
  std::vector<int64_t> peak_bytes;         // the most each worker's memory tracker held
  std::vector<int> peak_weight_versions;   // asynchronous: most weight versions held at once
  std::vector<int64_t> peak_stash_bytes;   // asynchronous: most bytes of stashed versions
  double bubble_sum = 0;                   // measured bubble fractions, summed over the pipeline runs
  int64_t pipeline_runs = 0;
  int64_t mini_batches = 0;
  double seconds = 0;                      // in train()
  int64_t last_call_mini_batches = 1;
  SentBytes sent_bytes;                    // under mpirun: what this process sent in train(), in all
  std::vector<TraceEvent> last_trace;      // the last pipeline run's (when pipeline.trace)
  double last_trace_origin_us = 0;
  double mean_bubble() const { return pipeline_runs ? bubble_sum / static_cast<double>(pipeline_runs) : 0.0; }
};

class Trainer {
 public:
  // `sample_inputs`: one micro-batch's inputs, which time-based partitions and the planners
  // profile the model on. Throws std::invalid_argument for options that do not combine.
  // Under mpirun the layers other ranks run are dropped from `model` once the plan is made
  // (the process held them until then); a recipe never builds them.
  Trainer(std::shared_ptr<nn::Sequential> model, LossFunction loss, const Tensor& sample_inputs, TrainerOptions options);
  // The model from its recipe, on options.device: whole in one process; under mpirun this
  // rank's layers only (the others nn::AbsentLayer), equal to the whole model's.
  Trainer(const nn::ModelRecipe& recipe, LossFunction loss, const Tensor& sample_inputs, TrainerOptions options);

  // Mini-batches first_step, first_step + 1, ... trained, their losses returned: one after
  // another for synchronous schedules, streamed through the pipeline (and drained at the
  // end) under pipedream.
  std::vector<float> train(const std::vector<datasets::Batch>& batches, int64_t first_step);
  // How many steps the next train() should take from `step`: 1 for synchronous schedules;
  // pipedream streams up to the next drain point (a multiple of `drain_interval` steps, of
  // 64, or the end) and drains there. Replicated stages need every drain point at a
  // multiple of round_robin(); throws otherwise, naming the steps to change.
  int64_t steps_per_call(int64_t step, int64_t end_step, int64_t drain_interval) const;
  int64_t round_robin() const;  // steps that give every replica of every stage one mini-batch
  int64_t drain_every() const;  // pipedream drains at least this often: 64 steps, or a multiple of round_robin()

  bool asynchronous() const { return options_.schedule.asynchronous(); }
  const TrainerOptions& options() const { return options_; }
  const ScheduleSpec& schedule() const { return options_.schedule; }  // as planned: stages, replicas
  const Pipeline& pipeline() const { return *pipeline_; }
  // The model as this process holds it: whole, or under mpirun its own layers only.
  const std::shared_ptr<nn::Sequential>& model() const { return model_; }
  // Under mpirun, the tied weights this rank holds a later copy of (the GPT head's, whose
  // embedding another rank holds): its name here -> the name the whole model gives it. A
  // checkpoint holds it once, under that name.
  std::map<std::string, std::string> tied_copies() const;
  const ProcessGroup* process_group() const { return group_.get(); }  // null without mpirun
  std::vector<nn::Optimizer*> optimizers() const;  // every optimizer (replicas hold equal states after a drain)
  float learning_rate(int64_t step) const { return options_.optimizer.learning_rate.at(step); }
  const std::vector<int64_t>& token_slices() const { return token_slices_; }  // the lengths in use (empty: none)
  // What the planners chose, in words, and the time per mini-batch they predicted (0: none ran).
  const std::string& planner_note() const { return planner_note_; }
  double planned_seconds_per_mini_batch() const { return planned_seconds_per_mini_batch_; }
  const TrainingStats& stats() const { return stats_; }
  // The measured bubble needs every stage's timed instructions: tracing on, one process.
  bool measures_bubble() const { return options_.pipeline.trace && !group_; }
  // The model's forward with the stages on their devices (evaluation, sampling). Under mpirun
  // every rank calls it: the input goes through the ranks' stages, and every rank gets the
  // output (on the CPU).
  Tensor forward(const Tensor& x) const;
  // Whether this process, or under mpirun any process, says `here` (every process must call
  // it at the same point: to stop after the same step, say).
  bool any_process(bool here) const { return group_ ? group_->sum(here ? 1.0 : 0.0) > 0 : here; }
  // The last run's trace of every process, on rank 0 (empty elsewhere), one row per rank named
  // in `row_names`; without mpirun, this process's trace and worker names.
  std::vector<TraceEvent> gathered_trace(std::vector<std::string>& row_names) const;

 private:
  void start(LossFunction loss, const Tensor& sample, const nn::ModelRecipe* recipe);
  void join_process_group();
  void check_options(const nn::Sequential& model) const;
  std::vector<bool> own_layers(const StagePlan& plan, const Schedule& schedule) const;  // under mpirun
  void keep_own_layers(const StagePlan& plan, const Schedule& schedule, const nn::ModelRecipe* recipe);
  void add_tied_gradients() const;  // under mpirun: each tied weight's two sides summed on both
  float clip_factor() const;  // the step's gradient scale: 1 without clipping or under the norm
  int loss_stage() const;  // the stage of the model's last piece, whose rank computes the loss
  bool holds_loss() const { return group_ && group_->stage() == loss_stage(); }
  StagePlan make_plan(const Tensor& sample, const nn::ModelRecipe* recipe);
  StagePlan planned_partition(const std::vector<LayerProfile>& profiles);
  std::vector<int64_t> plan_token_slices(const StagePlan& plan, const Tensor& sample, const nn::ModelRecipe* recipe);
  std::shared_ptr<nn::Sequential> piece_from_recipe(const nn::ModelRecipe& recipe, const StagePlan& plan, int piece) const;
  std::string decided_on_rank_zero(const std::function<std::string()>& decide) const;
  bool measure_zb_auto_costs(const StagePlan& plan, const Tensor& sample, const nn::ModelRecipe* recipe);
  void note_zb_auto(const Schedule& schedule, bool measured);
  void make_optimizers();
  float gather_step(const StepResult& result) const;
  void record(StepResult& result, std::vector<float>& losses);

  std::shared_ptr<nn::Sequential> model_;
  TrainerOptions options_;
  std::unique_ptr<ProcessGroup> group_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<PipelineReplicas> replicas_;  // in one process under data_parallel > 1: replicas 1 .. D-1
  // Under mpirun: a weight this rank holds that a layer of another rank ties (Megatron's
  // embedding group): this rank's tensor, and the rank holding the other side.
  struct TiedAcrossRanks {
    Tensor tensor;
    std::string name, saved_as;  // here, and in the whole model (the earlier layer's name)
    bool later;                  // this side is the later layer's (the head's)
    int peer;
  };
  std::vector<TiedAcrossRanks> tied_across_ranks_;
  std::vector<std::unique_ptr<nn::Optimizer>> optimizers_;  // one, or one per worker (pipedream)
  std::vector<int64_t> token_slices_;
  std::string planner_note_;
  double planned_seconds_per_mini_batch_ = 0;
  TrainingStats stats_;
};

}  // namespace minipipe::pipeline

#pragma once
// Runs a schedule on a model cut into stages: one worker thread per stage, kept from step to
// step, channels between neighbours (DESIGN.md decision 6), one interpreter for every
// schedule. A stage's input received from its neighbour is a leaf that requires grad; its
// gradient after the stage's backward is what goes upstream (decision 4). The unit of work
// is a micro-batch, or one token slice of it (TeraPipe), and each stage keeps the keys and
// values of a micro-batch's earlier slices (nn/key_value_cache.h) until their backward.
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

#include "datasets/dataset.h"
#include "nn/sequential.h"
#include "pipeline/channel.h"
#include "pipeline/partition.h"
#include "pipeline/schedule.h"
#include "pipeline/schedule_spec.h"
#include "pipeline/stage_threads.h"
#include "pipeline/trace.h"
#include "tensor/allocator.h"

namespace minipipe::pipeline {

struct RunState;  // pipeline/run_state.h

// GPipe section 2.3 (re-materialisation) and torchgpipe's checkpoint modes: `Always` keeps
// only each stage's input per micro-batch and recomputes the stage's forward in backward;
// `ExceptLast` does so on every stage but the last, whose backward follows its forward
// closely anyway.
enum class Recompute { Never, Always, ExceptLast };
Recompute parse_recompute(const std::string& name);  // never | always | except_last
const char* recompute_name(Recompute recompute);

struct PipelineOptions {
  int micro_batches = 1;           // per mini-batch (asynchronous: per update)
  std::string schedule = "gpipe";  // gpipe | 1f1b | pipedream (asynchronous: run_async)
  Recompute recompute = Recompute::Never;
  std::vector<Device> stage_devices;  // one per stage; empty means every stage on the CPU
  uint64_t seed = 0;                  // keys dropout (with the step, layer and sample position)
  bool trace = false;                 // record a TraceEvent per instruction
  // Threads each stage's CPU kernels may use (kernels/cpu/threads.h): 1, so that a stage is
  // one core, unless there are cores to spare.
  int kernel_threads = 1;
  WeightPolicy weights = WeightPolicy::Stash;  // pipedream only
  // TeraPipe: the lengths of the token slices each micro-batch's sequences are cut into,
  // adding up to the sequence length (pipeline/token_slices.h); empty: whole sequences. The
  // inputs and targets must then be [batch, tokens], and the loss a mean over the tokens.
  std::vector<int64_t> token_slices = {};
  // PipeDream's replicated stages (section 3.1), pipedream only: replicas per stage (empty:
  // one each; pipeline/pipedream.h says how they share the work). Replica 0 of every stage
  // runs on the model's own layers; each further replica runs on a copy made from a model
  // that model_factory builds (the same architecture; its initial values are overwritten).
  std::vector<int> replicas = {};
  std::function<std::shared_ptr<nn::Sequential>()> model_factory = {};
  // Interleaved 1F1B (schedule "interleaved"): model chunks per stage. The plan then cuts
  // the model into stages x virtual_stages pieces, and stage s runs pieces s, s + K, ...
  int virtual_stages = 1;
  // torchgpipe's deferred BatchNorm: running statistics move once per mini-batch, by the
  // statistics of all its micro-batches, as with the whole mini-batch on one device (each
  // micro-batch is still normalised by its own statistics).
  bool deferred_batch_norm = false;
  // Status reports (pipeline/status.h): also print one when a run takes longer than this
  // (0: only on request), through status_output (default: standard error).
  double status_after_seconds = 0;
  std::function<void(const std::string&)> status_output = {};
  // Multi-process runs (pipeline/process_group.h): this process runs only the local stage's
  // program, through channels to the other stages' processes. run() then returns the local
  // stage's share: the losses on the last stage, gradients in the local stage's parameters.
  // Synchronous schedules, one chunk per stage, no tied weights or skips across stages.
  std::shared_ptr<RemoteStages> remote_stages = {};
  // A slower link between stages than the machine's, injected into every channel (in-process
  // or to other processes), to see communication's share of a step; the simulator takes the
  // same model (CostModel::communication).
  LinkModel link = {};
};

// The loss of one micro-batch, averaged over its samples (the executor weights micro-batch
// losses by their share of the mini-batch, so the sum is the mini-batch's mean loss).
using LossFunction = std::function<Tensor(const Tensor& output, const Tensor& targets)>;

// Asynchronous schedules: which weight version (counted from the pipeline's construction)
// one micro-batch's forward and backward ran with on one stage, and, under vertical sync,
// the version the input stage used.
struct WeightVersionRecord {
  int stage, replica, micro_batch;
  int64_t forward_version, backward_version, input_stage_version;
};

struct StepResult {
  float loss = 0;                    // mean over the mini-batch (run_async: over all its mini-batches)
  std::vector<float> losses;         // per mini-batch
  // Per worker (the stages, or with replicated stages their replicas, stage by stage).
  std::vector<int64_t> peak_bytes;   // the most its tracker held during the step
  std::vector<TraceEvent> trace;     // when options.trace
  // When the run began, on the steady clock (microseconds since its epoch, which processes on
  // one machine share): the trace's times count from here.
  double trace_origin_us = 0;
  // Asynchronous schedules, per worker: the most weight versions held at once, and the most
  // bytes of stashed copies (counted in peak_bytes too).
  std::vector<int> peak_weight_versions;
  std::vector<int64_t> peak_stash_bytes;
  std::vector<WeightVersionRecord> weight_versions;  // one per stage and micro-batch
};

// A failure in a stage: every stage was stopped; the message names the worker (the stage, and
// its replica when replicated), the instruction and its unit ("Forward of micro-batch 2.1"),
// then the original error.
class PipelineError : public std::runtime_error {
 public:
  PipelineError(const Schedule& schedule, int worker, Instruction instruction, const std::string& what);
  int stage, replica;  // replica: 0 unless the stage is replicated
  Instruction instruction;
};

class Pipeline {
 public:
  // The schedule named by options.schedule, built for the plan's stages and options'
  // micro-batches, virtual stages, token slices and (pipedream) weights and replicas.
  Pipeline(std::shared_ptr<nn::Sequential> model, StagePlan plan, PipelineOptions options, LossFunction loss);
  // A schedule given as a value: generated (make_schedule), or written out by hand. It is
  // validated first (validate() throws ScheduleError naming what is wrong), and it sets what
  // options.schedule, micro_batches and virtual_stages would: the plan must cut the model into
  // schedule.pieces() pieces, and a token-sliced schedule needs options.token_slices' lengths,
  // one per slice. Synchronous schedules only: pipedream's programs follow the mini-batches of
  // each run_async call, so that one is built by name.
  Pipeline(std::shared_ptr<nn::Sequential> model, StagePlan plan, Schedule schedule, PipelineOptions options,
           LossFunction loss);

  // Forward and backward of every micro-batch of `batch`, as the schedule orders them;
  // gradients accumulate in the parameters' .grad over the micro-batches. OptimizerStep
  // calls the function given to set_optimizer_step (if any) on the stage's own thread;
  // without one, the caller steps after run() returns, which is the same for these
  // synchronous schedules and lets it clip by the global gradient norm. run_async needs one.
  StepResult run(const datasets::Batch& batch, uint64_t step);

  // PipeDream (schedule "pipedream"): streams the mini-batches, which are steps first_step,
  // first_step + 1, ..., through the stages without a flush between them; each is cut into
  // `micro_batches` micro-batches, and each stage calls the optimizer step function on its
  // own thread after every mini-batch's backwards, with the weight versions the policy names.
  // A replicated stage's replicas take the mini-batches round-robin and average their
  // gradients before each update (the number of mini-batches must be a multiple of every
  // stage's replicas). The pipeline drains at the end of the call, so the caller can evaluate
  // or save; the replicas of a stage then hold the same weights as the model.
  StepResult run_async(const std::vector<datasets::Batch>& mini_batches, uint64_t first_step);

  // The whole model on the calling thread, stage after stage on each stage's device (the
  // activations move along), for evaluation and sampling with training's placement, with
  // the stages' kernel threads. The output is on the last stage's device. Across processes
  // every rank of the pipeline calls it: each runs its own pieces, receiving their input from
  // the rank before and sending their output on; the rank of the last piece returns the
  // output, the others an undefined tensor.
  Tensor forward(const Tensor& x) const;

  // Called as step(stage, replica, training step) to update the parameters of one replica of
  // a stage (replica 0 unless stages are replicated), on that replica's thread.
  using OptimizerStepFunction = std::function<void(int stage, int replica, uint64_t step)>;
  void set_optimizer_step(OptimizerStepFunction step) { optimizer_step_ = std::move(step); }
  const Schedule& schedule() const { return schedule_; }
  const StagePlan& plan() const { return plan_; }
  const std::shared_ptr<nn::Sequential>& model() const { return model_; }  // as given (stage 0 replica 0's)
  int stages() const { return schedule_.stages; }  // the plan's pieces / virtual stages
  int replicas(int s) const { return schedule_.replicas_of(s); }
  int workers() const { return schedule_.workers(); }
  Device device_of(int s) const;  // where stage s (every replica of it) runs
  // The layers of stage s (replica 0's: the model's own), those of one replica, and, under
  // interleaving, those of one chunk (stage(s) is chunk 0).
  const std::shared_ptr<nn::Sequential>& stage(int s) const { return chunk(s, 0); }
  const std::shared_ptr<nn::Sequential>& replica(int s, int r) const { return worker_modules_.at(schedule_.first_worker(s) + r)[0]; }
  const std::shared_ptr<nn::Sequential>& chunk(int s, int c) const { return worker_modules_.at(schedule_.first_worker(s)).at(c); }
  // Tied weights (DeepSpeed's TiedLayerSpec, Megatron's shared embedding): a parameter the
  // layers of several stages hold, like a GPT head on the token embedding. Each stage adds
  // its gradient on its own (the later stages into a stand-in), and run() sums them, in
  // stage order, into the parameter's .grad before it returns, ready for the caller's step.
  // Synchronous schedules only, with the stages holding it on one device.
  struct TiedParameter {
    std::string name;         // the model's name for it
    std::vector<int> stages;  // the stages whose layers hold it, in order
  };
  const std::vector<TiedParameter>& tied_parameters() const { return tied_; }
  // Skip connections across stages (nn/skip.h, torchgpipe's portals): the piece of the model
  // that stashes a tensor sends it straight to the piece that pops it, after its forward, and
  // the gradient comes straight back before the stashing piece's backward; the stages in
  // between never see it. (Pieces are the stages, or under interleaving the chunks.)
  struct SkipRoute {
    std::string name;
    int from_piece, to_piece;
  };
  const std::vector<SkipRoute>& skip_routes() const { return skip_routes_; }
  // Updates stage s has made under run_async, which is the version its weights have.
  int64_t weight_version(int s) const { return weight_versions_[s]; }

  // One micro-batch as the stages see it: its data, the training step that keys its dropout,
  // and the factor that makes its loss a share of its mini-batch's mean.
  struct WorkUnit {
    datasets::Batch data;
    uint64_t step;
    float loss_weight;
  };
  struct StageRecord;  // what a stage's thread reports of one run

 private:
  friend class StageWorker;  // runs one worker's program on this pipeline's stages
  struct Common {};  // the two public constructors' shared part
  Pipeline(Common, std::shared_ptr<nn::Sequential> model, StagePlan plan, Schedule schedule, PipelineOptions options,
           LossFunction loss);
  // The schedule options.schedule names, for a plan of the given pieces.
  static ScheduleSpec schedule_spec(const StagePlan& plan, const PipelineOptions& options);
  // Cuts `batch` into options.micro_batches units of training step `step`.
  void add_micro_batches(const datasets::Batch& batch, uint64_t step, std::vector<WorkUnit>& units) const;
  StepResult run_units(const std::vector<WorkUnit>& units);
  void open_channels(RunState& state) const;     // between the workers of neighbouring pieces
  void prepare_replicas(RunState& state) const;  // all-reduces, and the model's values in every replica
  StepResult step_result(const std::vector<WorkUnit>& units, const std::vector<double>& losses,
                         std::vector<StageRecord>& records, std::chrono::steady_clock::time_point origin) const;
  void check_token_slices_fit(const std::vector<WorkUnit>& units) const;
  void make_replicas();
  void find_tied_parameters();
  void find_skip_routes();
  void check_remote_stages() const;
  int local_worker() const;  // across processes, the worker this process runs; -1 in one process
  void add_tied_gradients() const;

  std::shared_ptr<nn::Sequential> model_;
  StagePlan plan_;
  PipelineOptions options_;
  LossFunction loss_;
  Schedule schedule_;
  std::vector<std::vector<std::shared_ptr<nn::Sequential>>> worker_modules_;  // [worker][chunk]
  std::vector<std::shared_ptr<MemoryTracker>> trackers_;         // per worker
  std::unique_ptr<StageThreads> threads_;                        // one per worker
  OptimizerStepFunction optimizer_step_;
  std::vector<int64_t> weight_versions_;  // per stage
  std::vector<TiedParameter> tied_;
  // Per tied parameter: the parameter, and per stage after its first, the leaf whose .grad
  // collects that stage's share (autograd/engine.h, GradientRedirect).
  std::vector<Tensor> tied_tensors_;
  std::vector<std::vector<Tensor>> tied_stand_ins_;
  std::vector<SkipRoute> skip_routes_;
};

}  // namespace minipipe::pipeline

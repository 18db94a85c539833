#include "pipeline/executor.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <thread>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>

#include "autograd/elementwise.h"
#include "autograd/engine.h"
#include "autograd/node.h"
#include "kernels/cpu/threads.h"
#include "kernels/dispatch.h"
#include "nn/forward_context.h"
#include "nn/key_value_cache.h"
#include "nn/skip.h"
#include "pipeline/channel.h"
#include "pipeline/pipedream.h"
#include "pipeline/replica_all_reduce.h"
#include "pipeline/status.h"
#include "pipeline/token_slices.h"
#include "pipeline/validator.h"
#include "pipeline/weight_versions.h"
#include "tensor/factories.h"

namespace minipipe::pipeline {

Recompute parse_recompute(const std::string& name) {
  if (name == "never") return Recompute::Never;
  if (name == "always") return Recompute::Always;
  if (name == "except_last") return Recompute::ExceptLast;
  throw std::invalid_argument("unknown recompute mode '" + name + "': use never, always or except_last");
}

const char* recompute_name(Recompute recompute) {
  switch (recompute) {
    case Recompute::Never: return "never";
    case Recompute::Always: return "always";
    case Recompute::ExceptLast: return "except_last";
  }
  return "?";
}

PipelineError::PipelineError(int stage_, Instruction instruction_, const std::string& what, int replica_)
    : std::runtime_error("pipeline stage " + std::to_string(stage_) +
                         (replica_ >= 0 ? " replica " + std::to_string(replica_) : std::string()) + ", " +
                         op_name(instruction_.op) +
                         (instruction_.micro_batch >= 0 ? " of micro-batch " + std::to_string(instruction_.micro_batch) : "") +
                         (instruction_.slice > 0 ? ", token slice " + std::to_string(instruction_.slice) : "") +
                         (instruction_.chunk > 0 ? ", chunk " + std::to_string(instruction_.chunk) : "") + ": " + what),
      stage(stage_), replica(std::max(replica_, 0)), instruction(instruction_) {}

namespace {
Schedule synchronous_only(Schedule schedule) {
  if (schedule.asynchronous())
    throw std::invalid_argument("pipeline: schedule '" + schedule.name + "' is asynchronous; build pipedream by name "
                                "(options.schedule), since its programs follow each run_async call's mini-batches");
  return schedule;
}
}  // namespace

Schedule Pipeline::schedule_named_by(const StagePlan& plan, const PipelineOptions& options) {
  const int token_slices = options.token_slices.empty() ? 1 : static_cast<int>(options.token_slices.size());
  const int chunks = options.virtual_stages;
  if (chunks < 1 || plan.stages() % chunks != 0)
    throw std::invalid_argument("pipeline: " + std::to_string(chunks) + " virtual stages per stage need a plan of a multiple of " +
                                std::to_string(chunks) + " pieces; the plan has " + std::to_string(plan.stages()) +
                                " (cut the model into stages x virtual stages)");
  if (!options.replicas.empty() && options.schedule != "pipedream")
    throw std::invalid_argument("pipeline: replicated stages run under the pipedream schedule, not " + options.schedule +
                                " (or give every stage one replica)");
  if (options.schedule == "pipedream") {  // the program's length follows each run_async's mini-batches
    if (token_slices > 1)
      throw std::invalid_argument("pipeline: token slices run with the synchronous schedules (gpipe, 1f1b), not pipedream");
    return make_pipedream_schedule(plan, options, round_robin_groups(options.replicas) * options.micro_batches);
  }
  return make_schedule(options.schedule, plan.stages() / chunks, options.micro_batches, token_slices, chunks);
}

Pipeline::Pipeline(std::shared_ptr<nn::Sequential> model, StagePlan plan, PipelineOptions options, LossFunction loss)
    : Pipeline(Common{}, std::move(model), plan, schedule_named_by(plan, options), options, std::move(loss)) {}

Pipeline::Pipeline(std::shared_ptr<nn::Sequential> model, StagePlan plan, Schedule schedule, PipelineOptions options,
                   LossFunction loss)
    : Pipeline(Common{}, std::move(model), std::move(plan), synchronous_only(std::move(schedule)), std::move(options),
               std::move(loss)) {}

Pipeline::Pipeline(Common, std::shared_ptr<nn::Sequential> model, StagePlan plan, Schedule schedule,
                   PipelineOptions options, LossFunction loss)
    : model_(std::move(model)), plan_(std::move(plan)), options_(std::move(options)), loss_(std::move(loss)),
      schedule_(std::move(schedule)) {
  validate(schedule_);  // before anything runs
  // The schedule decides what the options would have named.
  if (plan_.stages() != schedule_.pieces())
    throw std::invalid_argument("pipeline: schedule '" + schedule_.name + "' runs " + std::to_string(schedule_.pieces()) +
                                " pieces of the model (" + std::to_string(schedule_.stages) + " stages x " +
                                std::to_string(schedule_.virtual_stages) + " virtual stages), but the plan cuts it into " +
                                std::to_string(plan_.stages()));
  const int token_slices = options_.token_slices.empty() ? 1 : static_cast<int>(options_.token_slices.size());
  if (token_slices != schedule_.token_slices)
    throw std::invalid_argument("pipeline: schedule '" + schedule_.name + "' cuts sequences into " +
                                std::to_string(schedule_.token_slices) + " token slices, but options.token_slices gives " +
                                std::to_string(token_slices) + " (give the length of each slice)");
  options_.schedule = schedule_.name;
  options_.virtual_stages = schedule_.virtual_stages;
  if (!schedule_.asynchronous()) options_.micro_batches = schedule_.micro_batches;
  const int chunks = options_.virtual_stages;
  weight_versions_.assign(stages(), 0);
  if (!options_.token_slices.empty())
    check_token_slices(options_.token_slices,
                       std::accumulate(options_.token_slices.begin(), options_.token_slices.end(), int64_t{0}));
  if (options_.kernel_threads < 1 || options_.kernel_threads > kernels::cpu::kMaxKernelThreads)
    throw std::invalid_argument("pipeline: kernel_threads is " + std::to_string(options_.kernel_threads) +
                                "; give each stage between 1 and " + std::to_string(kernels::cpu::kMaxKernelThreads));
  if (!options_.stage_devices.empty() && static_cast<int>(options_.stage_devices.size()) != stages())
    throw std::invalid_argument("pipeline: " + std::to_string(options_.stage_devices.size()) + " stage devices for " +
                                std::to_string(stages()) + " stages");
  worker_modules_.assign(workers(), std::vector<std::shared_ptr<nn::Sequential>>(chunks));
  for (int piece = 0; piece < schedule_.pieces(); ++piece) {
    const int s = schedule_.stage_of_piece(piece);
    auto& module = worker_modules_[schedule_.first_worker(s)][schedule_.chunk_of_piece(piece)];
    module = stage_module(*model_, plan_, piece);
    module->to(device_of(s));
  }
  make_replicas();
  find_tied_parameters();
  find_skip_routes();
  if (options_.remote_stages) check_remote_stages();
  for (int w = 0; w < workers(); ++w) trackers_.push_back(std::make_shared<MemoryTracker>());
  threads_ = std::make_unique<StageThreads>(workers());
}

Schedule Pipeline::make_pipedream_schedule(const StagePlan& plan, const PipelineOptions& options, int micro_batches) {
  // plan's pieces are the stages: pipedream does not interleave (the validator says so).
  return pipedream_schedule(plan.stages(), micro_batches, options.micro_batches, options.weights, options.replicas);
}

// Replica r of every stage with more than r replicas comes from the r-th model that
// model_factory builds, loaded with the model's values.
void Pipeline::make_replicas() {
  int most = 1;
  for (int s = 0; s < stages(); ++s) most = std::max(most, replicas(s));
  if (most > 1 && !options_.model_factory)
    throw std::invalid_argument("pipeline: replicated stages need PipelineOptions::model_factory, a function that builds the "
                                "model again, to give each replica its own copy of the stage's layers");
  for (int r = 1; r < most; ++r) {
    const std::shared_ptr<nn::Sequential> copy = options_.model_factory();
    try {
      if (!copy || copy->size() != model_->size()) throw std::invalid_argument("it has a different number of layers");
      copy->load_state_dict(model_->state_dict());
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("pipeline: model_factory must build the pipeline's model again, but ") +
                                  e.what());
    }
    copy->train(model_->is_training());
    for (int s = 0; s < stages(); ++s) {  // replicas run under pipedream, which has one chunk per stage
      if (replicas(s) <= r) continue;
      auto& module = worker_modules_[schedule_.first_worker(s) + r][0];
      module = stage_module(*copy, plan_, s);
      module->to(device_of(s));
    }
  }
}

void Pipeline::find_tied_parameters() {
  std::map<const TensorImpl*, std::vector<int>> holders;  // parameter -> the stages holding it
  std::map<const TensorImpl*, Tensor> tensors;
  for (int s = 0; s < stages(); ++s)
    for (int c = 0; c < schedule_.virtual_stages; ++c)
      for (const Tensor& p : chunk(s, c)->parameters()) {
        std::vector<int>& stages_holding = holders[p.impl()];
        if (stages_holding.empty() || stages_holding.back() != s) stages_holding.push_back(s);
        tensors[p.impl()] = p;
      }
  for (const auto& [name, p] : model_->named_parameters()) {
    const std::vector<int>& holding = holders[p.impl()];
    if (holding.size() < 2) continue;
    const std::string where = "tied parameter '" + name + "' is held by stages " + std::to_string(holding.front()) +
                              " and " + std::to_string(holding.back());
    if (schedule_.asynchronous())
      throw std::invalid_argument("pipeline: " + where + ", whose weights would be updated at different times under " +
                                  schedule_.name + "; untie it or use a synchronous schedule (gpipe, 1f1b, ...)");
    for (int s : holding)
      if (device_of(s) != device_of(holding.front()))
        throw std::invalid_argument("pipeline: " + where + ", on different devices (" + device_of(holding.front()).str() +
                                    ", " + device_of(s).str() + "); put those stages on one device or untie it");
    tied_.push_back({name, holding});
    tied_tensors_.push_back(tensors.at(p.impl()));
    std::vector<Tensor> stand_ins;
    for (size_t i = 1; i < holding.size(); ++i) stand_ins.push_back(zeros_like(p));
    tied_stand_ins_.push_back(std::move(stand_ins));
  }
}

void Pipeline::check_remote_stages() const {
  const int local = options_.remote_stages->local_stage();
  auto refuse = [](const std::string& what) {
    throw std::invalid_argument("pipeline: stages in separate processes do not run " + what + " yet");
  };
  if (local < 0 || local >= stages())
    throw std::invalid_argument("pipeline: this process runs stage " + std::to_string(local) + ", but there are " +
                                std::to_string(stages()) + " stages");
  if (schedule_.asynchronous()) refuse("the asynchronous " + schedule_.name + " schedule; use gpipe, 1f1b, zb-h1 or zb-h2");
  if (schedule_.virtual_stages > 1) refuse("interleaved chunks");
  if (!tied_.empty()) refuse("tied weights across stages (" + tied_[0].name + ")");
  if (!skip_routes_.empty()) refuse("skip connections across stages ('" + skip_routes_[0].name + "')");
}

void Pipeline::find_skip_routes() {
  std::map<std::string, int> stashed_in, popped_in;  // name -> piece
  for (int piece = 0; piece < schedule_.pieces(); ++piece) {
    const nn::Sequential& layers = *chunk(schedule_.stage_of_piece(piece), schedule_.chunk_of_piece(piece));
    for (const std::string& name : nn::skips_stashed(layers))
      if (!stashed_in.emplace(name, piece).second)
        throw std::invalid_argument("pipeline: the model stashes skip '" + name + "' twice; give each SkipStash its own name");
    for (const std::string& name : nn::skips_popped(layers)) {
      if (!popped_in.emplace(name, piece).second)
        throw std::invalid_argument("pipeline: the model pops skip '" + name + "' twice; give each SkipPop its own name");
      if (!stashed_in.count(name))
        throw std::invalid_argument("pipeline: the model pops skip '" + name + "' (piece " + std::to_string(piece) +
                                    ") without stashing it before; put a SkipStash '" + name + "' earlier");
    }
  }
  for (const auto& [name, from] : stashed_in) {
    if (!popped_in.count(name))
      throw std::invalid_argument("pipeline: the model stashes skip '" + name + "' and never pops it; add a SkipPop '" +
                                  name + "' after it, or remove the SkipStash");
    if (popped_in.at(name) != from) skip_routes_.push_back({name, from, popped_in.at(name)});
  }
}

// Each later stage's share of a tied parameter's gradient, added in stage order to what the
// first stage accumulated.
void Pipeline::add_tied_gradients() const {
  NoGradGuard no_grad;
  for (size_t t = 0; t < tied_.size(); ++t)
    for (const Tensor& stand_in : tied_stand_ins_[t]) {
      const Tensor share = stand_in.grad(), own = tied_tensors_[t].grad();
      if (!share.defined()) continue;
      tied_tensors_[t].set_grad(own.defined() ? add(own, share) : share);
    }
}

Device Pipeline::device_of(int s) const {
  return options_.stage_devices.empty() ? Device::cpu() : options_.stage_devices[s];
}

Tensor Pipeline::forward(const Tensor& x) const {
  kernels::cpu::KernelThreads kernel_threads(options_.kernel_threads);
  Tensor h = x;
  for (int piece = 0; piece < schedule_.pieces(); ++piece) {
    const int s = schedule_.stage_of_piece(piece);
    h = chunk(s, schedule_.chunk_of_piece(piece))->forward(h.to(device_of(s)));
  }
  return h;
}

namespace {

// Where one worker is, for status reports (pipeline/status.h); written by the worker only.
struct WorkerProgress {
  std::atomic<int> position{-1};     // the instruction under way, or -1 before the first
  std::atomic<bool> waiting{false};  // blocked in a receive or an AllReduce
  std::atomic<int> in_flight{0};     // units forwarded and not yet backwarded
  std::atomic<bool> done{false};
};

// Everything one run shares between the worker threads.
struct RunState {
  std::chrono::steady_clock::time_point origin = std::chrono::steady_clock::now();  // traces count from here
  std::vector<std::unique_ptr<WorkerProgress>> progress;  // per worker
  // Between workers of neighbouring stages, keyed (gradient?, sender, receiver): activations
  // go from a worker of stage s to the worker of s + 1 that runs the micro-batch, gradients
  // back.
  std::map<std::tuple<bool, int, int>, std::unique_ptr<Channel>> channels;
  std::vector<std::unique_ptr<ReplicaAllReduce>> all_reduces;  // per stage; null with one replica
  Mailbox skips;  // skip connections across stages
  std::mutex error_mutex;
  std::exception_ptr error;
  int error_worker = -1;
  Instruction error_instruction{Op::OptimizerStep, -1};

  Channel& channel(bool gradient, int from, int to) { return *channels.at({gradient, from, to}); }
  void fail(int worker, Instruction instruction, std::exception_ptr e) {
    {
      std::lock_guard lock(error_mutex);
      if (error) return;  // the first failure is the one reported
      error = e, error_worker = worker, error_instruction = instruction;
    }
    for (auto& [key, c] : channels) c->close();
    skips.close();
    for (auto& a : all_reduces)
      if (a) a->close();
  }
};

thread_local RunState* current_run = nullptr;

// "stage 1: instruction 7 of 20, ReceiveGradient of micro-batch 2, waiting for stage 2; 2 in flight".
std::string describe_progress(const Schedule& schedule, const RunState& state, double seconds) {
  char header[96];
  std::snprintf(header, sizeof header, "pipeline status, %.2f s into the run:\n", seconds);
  std::string out = header;
  for (int w = 0; w < schedule.workers(); ++w) {
    const WorkerProgress& p = *state.progress[w];
    const Program& program = schedule.programs[w];
    out += "  " + schedule.worker_name(w) + ": ";
    const int at = p.position.load();
    if (p.done.load()) {
      out += "done\n";
      continue;
    }
    if (at < 0) {
      out += "not started\n";
      continue;
    }
    const Instruction& i = program[at];
    out += "instruction " + std::to_string(at + 1) + " of " + std::to_string(program.size()) + ", " + op_name(i.op) +
           (i.micro_batch >= 0 ? " of micro-batch " + unit_label(i, schedule) : "");
    if (p.waiting.load()) {
      const int s = schedule.stage_of(w), piece = schedule.piece_of(s, i.chunk);
      if (i.op == Op::AllReduce) {
        out += ", waiting for the stage's other replicas";
      } else if (i.op != Op::ReceiveActivation && i.op != Op::ReceiveGradient) {
        out += ", waiting for a skip connection's " + std::string(i.op == Op::Forward ? "tensor" : "gradient");
      } else {
        const int from = schedule.worker_of_piece(i.op == Op::ReceiveActivation ? piece - 1 : piece + 1, i.micro_batch);
        out += ", waiting for the " + std::string(i.op == Op::ReceiveActivation ? "activation" : "gradient") + " from " +
               schedule.worker_name(from);
      }
    }
    out += "; " + std::to_string(p.in_flight.load()) + " in flight\n";
  }
  return out;
}

// A stage's hand-offs. On a GPU each stage thread queues its work on a stream of its own,
// and a tensor crosses streams safely by two rules (tensor/cuda_allocator.cpp):
// - the receiver's stream waits for the work that wrote it (an event the sender records
//   after queueing that work, on the device the tensor is on), since it does not follow the
//   sender's stream; neither host waits;
// - the receiver's stream takes its memory over, since that stream reads it from then on: the
//   sender's stream must not reuse the memory, when the sender drops the tensor last, before
//   those reads ran.
// On the CPU work is done when its call returns, and both rules cost nothing.
Message take_over(Message message) {
  message.written.make_current_stream_wait();
  if (message.value.defined()) message.value.impl()->storage->hand_over_to_current_stream();
  return message;
}

Message receive(Channel& channel, const Instruction& instruction) {
  return take_over(channel.receive(instruction.micro_batch, instruction.slice, instruction.chunk));
}

// `chunk`: the receiver's chunk the message is for. `value` is on the receiver's device, or,
// for a skip connection's gradient that does not exist, undefined.
Message message_for(const Instruction& instruction, int chunk, const Tensor& value, Device device, int64_t weight_version = -1) {
  return {instruction.micro_batch, instruction.slice, chunk, value, kernels::WorkMark::of_queued_work(device), weight_version};
}

void send(Channel& channel, const Instruction& instruction, int chunk, const Tensor& value, int64_t weight_version = -1) {
  channel.send(message_for(instruction, chunk, value, value.device(), weight_version));
}

// A stage's stashed weight versions (PipeDream section 3.3): copies of its parameters, made
// on the stage's thread and so charged to its memory tracker.
class WeightStash {
 public:
  explicit WeightStash(std::vector<Tensor> parameters) : parameters_(std::move(parameters)) {
    for (const Tensor& p : parameters_)
      if (!p.is_contiguous() || p.offset() != 0 || static_cast<int64_t>(p.impl()->storage->bytes()) != p.nbytes())
        throw std::invalid_argument("weight stashing needs every parameter to own its memory; one of shape " +
                                    shape_str(p.shape()) + " is a view into a larger block");
  }
  void stash(int version) {
    NoGradGuard no_grad;
    std::vector<Tensor>& copy = copies_[version];
    for (const Tensor& p : parameters_) {
      copy.push_back(p.detach().clone());
      bytes_ += copy.back().nbytes();
    }
  }
  // Exchanges the parameters' memory with the copy of `version`, which then holds the
  // version the parameters held, `live`.
  void load(int version, int live) {
    std::vector<Tensor> copy = std::move(copies_.at(version));
    copies_.erase(version);
    for (size_t i = 0; i < parameters_.size(); ++i) parameters_[i].impl()->storage->swap_memory(*copy[i].impl()->storage);
    if (copies_.count(live)) drop(live);  // a second copy of the same version is not worth keeping
    copies_[live] = std::move(copy);
  }
  void drop(int version) {
    for (const Tensor& t : copies_.at(version)) bytes_ -= t.nbytes();
    copies_.erase(version);
  }
  int64_t bytes() const { return bytes_; }
  // After a failure: exchange the latest weights back in if an older version is in the
  // parameters.
  void restore_latest(const WeightVersionState& versions) {
    if (versions.live() != versions.latest() && copies_.count(versions.latest())) load(versions.latest(), versions.live());
  }

 private:
  std::vector<Tensor> parameters_;
  std::map<int, std::vector<Tensor>> copies_;
  int64_t bytes_ = 0;
};

}  // namespace

struct Pipeline::StageRecord {
  int updates = 0;  // asynchronous: OptimizerSteps run
  std::vector<TraceEvent> trace;
  std::vector<WeightVersionRecord> versions;
  int peak_versions = 1;
  int64_t peak_stash_bytes = 0;
};

StepResult Pipeline::run(const datasets::Batch& batch, uint64_t step) {
  if (schedule_.asynchronous())
    throw std::invalid_argument("pipeline: the '" + schedule_.name + "' schedule streams several mini-batches: use run_async");
  std::vector<WorkUnit> units;
  add_micro_batches(batch, step, units);
  check_token_slices_fit(units);
  StepResult result = run_units(units);
  result.losses = {result.loss};
  return result;
}

StepResult Pipeline::run_async(const std::vector<datasets::Batch>& mini_batches, uint64_t first_step) {
  if (!schedule_.asynchronous())
    throw std::invalid_argument("pipeline: run_async needs the pipedream schedule; '" + schedule_.name + "' is synchronous");
  if (mini_batches.empty()) throw std::invalid_argument("pipeline: run_async needs at least one mini-batch");
  if (!optimizer_step_)
    throw std::invalid_argument("pipeline: under pipedream each stage updates its own weights: call set_optimizer_step first");
  const int per_update = options_.micro_batches;
  const int micro_batches = static_cast<int>(mini_batches.size()) * per_update;
  if (schedule_.micro_batches != micro_batches) {
    schedule_ = make_pipedream_schedule(plan_, options_, micro_batches);
    validate(schedule_);
  }
  std::vector<WorkUnit> units;
  for (size_t i = 0; i < mini_batches.size(); ++i) add_micro_batches(mini_batches[i], first_step + i, units);
  return run_units(units);
}

void Pipeline::check_token_slices_fit(const std::vector<WorkUnit>& units) const {
  if (options_.token_slices.empty()) return;
  for (const WorkUnit& unit : units) {
    const Tensor& inputs = unit.data.inputs;
    if (inputs.dim() != 2 || unit.data.targets.shape() != inputs.shape())
      throw std::invalid_argument("pipeline: token slices cut sequences, so inputs and targets must both be [batch, tokens]; "
                                  "got inputs " + shape_str(inputs.shape()) + " and targets " +
                                  shape_str(unit.data.targets.shape()) + " (train without --token-slices)");
    check_token_slices(options_.token_slices, inputs.shape()[1]);
  }
}

void Pipeline::add_micro_batches(const datasets::Batch& batch, uint64_t step, std::vector<WorkUnit>& units) const {
  const float batch_size = static_cast<float>(batch.inputs.shape()[0]);
  for (datasets::Batch& micro_batch : datasets::split_into_micro_batches(batch, options_.micro_batches)) {
    const float share = static_cast<float>(micro_batch.inputs.shape()[0]) / batch_size;
    units.push_back({std::move(micro_batch), step, share});
  }
}

StepResult Pipeline::run_units(const std::vector<WorkUnit>& units) {
  if (!tied_.empty() && optimizer_step_)
    throw std::invalid_argument("pipeline: " + tied_[0].name + " is tied across stages, and its gradient is complete only "
                                "when run() returns: step the optimizer after run(), not through set_optimizer_step");
  RunState state;
  // A channel each way between every worker of a piece's stage and every worker of the next
  // piece's stage (under interleaving, the last stage also feeds stage 0's next chunk).
  // With stages in other processes, only the local stage's channels, and those to its
  // neighbours go to their processes.
  const int local = options_.remote_stages ? options_.remote_stages->local_stage() : -1;
  for (int piece = 0; piece + 1 < schedule_.pieces(); ++piece) {
    const int s = schedule_.stage_of_piece(piece), next = schedule_.stage_of_piece(piece + 1);
    for (int r = 0; r < replicas(s); ++r)
      for (int q = 0; q < replicas(next); ++q) {
        const int from = schedule_.first_worker(s) + r, to = schedule_.first_worker(next) + q;
        if (state.channels.count({false, from, to})) continue;
        if (local >= 0 && s != local && next != local) continue;
        for (bool gradient : {false, true}) {
          const auto key = gradient ? std::tuple{true, to, from} : std::tuple{false, from, to};
          std::unique_ptr<Channel> channel = local >= 0 ? options_.remote_stages->channel(gradient, gradient ? next : s, gradient ? s : next)
                                                        : std::make_unique<QueueChannel>();
          if (options_.link.slows()) channel = std::make_unique<LinkChannel>(std::move(channel), options_.link);
          state.channels[key] = std::move(channel);
        }
      }
  }
  for (int w = 0; w < workers(); ++w) {
    trackers_[w]->reset_peak();
    state.progress.push_back(std::make_unique<WorkerProgress>());
  }
  for (int s = 0; s < stages(); ++s) {
    state.all_reduces.push_back(replicas(s) > 1 ? std::make_unique<ReplicaAllReduce>(replicas(s)) : nullptr);
    // Every replica starts from the model's values (a checkpoint may have been loaded into
    // it); buffers such as running statistics are the model's too.
    for (int r = 1; r < replicas(s); ++r) {
      replica(s, r)->load_state_dict(stage(s)->state_dict());
      replica(s, r)->train(model_->is_training());
    }
  }
  // The calling thread's GPU work (moving the model, the last optimizer step) must have run
  // before the worker threads, on streams of their own, read the parameters.
  for (int s = 0; s < stages(); ++s) kernels::synchronize(device_of(s));
  std::vector<double> losses(units.size(), 0.0);
  std::vector<StageRecord> records(workers());
  // The watcher: a report when asked (a signal, request_status) or when the run is slow.
  std::mutex watch_mutex;
  std::condition_variable run_over_signal;
  bool run_over = false;
  std::thread watcher([&] {
    const auto start = std::chrono::steady_clock::now();
    uint64_t seen = status_requests();
    bool reported_slow = false;
    std::unique_lock lock(watch_mutex);
    while (!run_over_signal.wait_for(lock, std::chrono::milliseconds(50), [&] { return run_over; })) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const bool asked = status_requests() != seen;
      const bool slow = options_.status_after_seconds > 0 && seconds > options_.status_after_seconds && !reported_slow;
      if (!asked && !slow) continue;
      seen = status_requests();
      reported_slow = reported_slow || slow;
      const std::string report = describe_progress(schedule_, state, seconds);
      if (options_.status_output) options_.status_output(report);
      else std::fputs(report.c_str(), stderr);
    }
  });
  threads_->run([&](int w) {
    if (local >= 0 && w != local) {  // another process runs it
      state.progress[w]->done = true;
      return;
    }
    current_run = &state;
    kernels::cpu::KernelThreads kernel_threads(options_.kernel_threads);
    run_worker(w, units, losses, records[w]);
    state.progress[w]->done = true;
    current_run = nullptr;
  });
  {
    std::lock_guard lock(watch_mutex);
    run_over = true;
  }
  run_over_signal.notify_all();
  watcher.join();
  for (int s = 0; s < stages(); ++s) weight_versions_[s] += records[schedule_.first_worker(s)].updates;
  if (!state.error) add_tied_gradients();
  for (const auto& stand_ins : tied_stand_ins_)
    for (const Tensor& stand_in : stand_ins) stand_in.zero_grad();  // added, or a failed run's
  if (state.error) {
    try {
      std::rethrow_exception(state.error);
    } catch (const std::exception& e) {
      const int s = schedule_.stage_of(state.error_worker);
      throw PipelineError(s, state.error_instruction, e.what(),
                          replicas(s) > 1 ? schedule_.replica_of(state.error_worker) : -1);
    }
  }
  StepResult result;
  result.trace_origin_us = std::chrono::duration<double, std::micro>(state.origin.time_since_epoch()).count();
  for (double l : losses) result.loss += static_cast<float>(l);
  if (schedule_.asynchronous()) {
    // Each mini-batch's loss is the sum of its micro-batches' weighted losses; the run's is
    // their mean.
    result.losses.assign(units.size() / options_.micro_batches, 0.0f);
    for (size_t u = 0; u < units.size(); ++u) result.losses[u / options_.micro_batches] += static_cast<float>(losses[u]);
    result.loss /= static_cast<float>(result.losses.size());
  }
  for (auto& tracker : trackers_) result.peak_bytes.push_back(tracker->peak_bytes.load());
  for (StageRecord& record : records) {
    result.trace.insert(result.trace.end(), record.trace.begin(), record.trace.end());
    result.weight_versions.insert(result.weight_versions.end(), record.versions.begin(), record.versions.end());
    result.peak_weight_versions.push_back(record.peak_versions);
    result.peak_stash_bytes.push_back(record.peak_stash_bytes);
  }
  return result;
}

void Pipeline::run_worker(int w, const std::vector<WorkUnit>& units, std::vector<double>& losses, StageRecord& record) {
  RunState& state = *current_run;
  const int s = schedule_.stage_of(w), replica = schedule_.replica_of(w);
  MemoryTrackerScope memory(trackers_[w]);
  GradModeGuard grad_on(true);
  const Device device = device_of(s);
  // Tied parameters: a later stage's gradients go to its stand-in, never into the .grad the
  // first stage adds to at the same time.
  std::list<GradientRedirect> tied_redirects;
  for (size_t t = 0; t < tied_.size(); ++t)
    for (size_t i = 1; i < tied_[t].stages.size(); ++i)
      if (tied_[t].stages[i] == s) tied_redirects.emplace_back(tied_tensors_[t], tied_stand_ins_[t][i - 1]);
  // The worker's model chunks (one unless interleaved); the first piece of the model reads the
  // data, the last computes the loss, and `except_last` spares the last from recomputing.
  const int chunks = schedule_.virtual_stages;
  auto piece = [&](const Instruction& i) { return schedule_.piece_of(s, i.chunk); };
  auto is_first = [&](const Instruction& i) { return piece(i) == 0; };
  auto is_last = [&](const Instruction& i) { return piece(i) == schedule_.pieces() - 1; };
  auto recomputes = [&](const Instruction& i) {
    return options_.recompute == Recompute::Always || (options_.recompute == Recompute::ExceptLast && !is_last(i));
  };
  // The worker that runs the next (previous) piece for micro-batch m, and that piece's stage.
  auto neighbour = [&](const Instruction& i, bool next) {
    const int other = piece(i) + (next ? 1 : -1);
    return std::pair{schedule_.worker_of_piece(other, i.micro_batch), schedule_.stage_of_piece(other)};
  };
  nn::Sequential& module = *worker_modules_[w][0];  // the asynchronous schedule's (one chunk)
  // Token slices (TeraPipe): where each starts, and the keys and values of each micro-batch's
  // earlier slices, kept from its first slice's forward to its first slice's backward.
  const bool sliced = !options_.token_slices.empty();
  const int slices = schedule_.token_slices;
  const std::vector<int64_t> slice_offsets = token_slice_offsets(options_.token_slices);
  std::map<int, nn::KeyValueCache> caches;
  // Per unit (micro-batch m, slice i, chunk c; key (m * slices + i) * chunks + c): the
  // chunk's input leaf, its output (or weighted loss), the gradient received for the output
  // and the one to send upstream.
  std::map<int, Tensor> inputs, outputs, output_grads, input_grads;
  std::map<int, DeferredWeightGradients> weight_gradients;  // zero-bubble: left by B for W
  // Skip connections into and out of the unit's piece (find_skip_routes): per unit, the
  // tensors received (leaves) and those its layers stashed for a later piece.
  std::map<int, std::map<std::string, Tensor>> skips_in, skips_out;
  auto skip_routes_of = [&](const Instruction& i, bool into) {
    std::vector<const SkipRoute*> routes;
    for (const SkipRoute& r : skip_routes_)
      if ((into ? r.to_piece : r.from_piece) == piece(i)) routes.push_back(&r);
    return routes;
  };
  // The last stage's unit losses stay on its device until the stage is done: reading one on
  // the host would wait for the GPU after every unit.
  std::map<int, Tensor> unit_losses;
  // Weight versions (asynchronous schedules): what the stage holds, the version each
  // micro-batch's forward used here and the one the input stage used (from its message).
  WeightVersionState versions;
  WeightStash stash(module.parameters());
  const int64_t version_base = weight_versions_[s];
  std::map<int, int64_t> forward_version, input_stage_version;
  auto now_us = [&] { return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - state.origin).count(); };

  // The stage's forward of one unit; on the last stage, its loss weighted by the unit's share
  // of the mini-batch (micro-batch share times slice share of the tokens), so the unit losses
  // add up to the mini-batch's mean: the same gradients as one device with the whole batch.
  auto forward_unit = [&](const Instruction& instruction, bool recomputing) {
    const int m = instruction.micro_batch, key = (m * slices + instruction.slice) * chunks + instruction.chunk;
    const WorkUnit& unit = units[m];
    nn::ForwardContext context{options_.seed, unit.step, unit.data.sample_offset, recomputing};
    context.micro_batch = m % options_.micro_batches;
    context.micro_batches = options_.micro_batches;
    context.deferred_batch_norm = options_.deferred_batch_norm;
    int64_t first = 0, length = 0;
    if (sliced) {
      first = slice_offsets[instruction.slice], length = options_.token_slices[instruction.slice];
      context.token_offset = first;
      context.sequence_tokens = unit.data.inputs.shape()[1];
    }
    nn::ForwardContextGuard guard(context);
    std::optional<nn::KeyValueCache::Scope> slice_scope;
    if (sliced) slice_scope.emplace(caches[m], instruction.slice);
    nn::SkipStore skips;  // what earlier pieces stashed for this one; what this one stashes for later ones
    for (const auto& [name, t] : skips_in[key]) skips.stash(name, t);
    const Tensor output = [&] {
      nn::SkipStore::Scope skip_scope(skips);
      return worker_modules_[w][instruction.chunk]->forward(inputs[key]);
    }();
    skips_out[key] = skips.take_all();
    const auto outgoing = skip_routes_of(instruction, false);
    bool as_routed = skips_out[key].size() == outgoing.size();
    for (const SkipRoute* r : outgoing) as_routed = as_routed && skips_out[key].count(r->name);
    if (!as_routed)
      throw std::logic_error("the layers left " + std::to_string(skips_out[key].size()) + " skip tensors for later stages, where " +
                             std::to_string(outgoing.size()) + " were expected: a SkipStash or SkipPop that does not run on "
                             "every forward cannot cross stages");
    if (!is_last(instruction)) return output;
    const Tensor targets = sliced ? unit.data.targets.narrow(1, first, length).contiguous() : unit.data.targets;
    const float share = sliced ? static_cast<float>(length) / static_cast<float>(context.sequence_tokens) : 1.0f;
    return loss_(output, targets.to(device)) * (unit.loss_weight * share);
  };

  WorkerProgress& progress = *state.progress[w];
  // Marks the worker as waiting while a receive or an AllReduce blocks.
  struct Waiting {
    WorkerProgress& progress;
    explicit Waiting(WorkerProgress& p) : progress(p) { progress.waiting = true; }
    ~Waiting() { progress.waiting = false; }
  };
  for (const Instruction& instruction : schedule_.programs[w]) {
    const int m = instruction.micro_batch, key = (m * slices + instruction.slice) * chunks + instruction.chunk;
    progress.position = static_cast<int>(&instruction - schedule_.programs[w].data());
    if (instruction.op == Op::Forward) ++progress.in_flight;
    if (is_backward(instruction.op)) --progress.in_flight;
    const bool first = is_first(instruction), last = is_last(instruction), recompute = recomputes(instruction);
    const double start = options_.trace ? now_us() : 0;
    try {
      const int live_before = versions.live();
      versions.apply(instruction);  // throws if the parameters do not hold the version named
      switch (instruction.op) {
        case Op::ReceiveActivation: {
          const Message message = [&] {
            Waiting waiting(progress);
            return receive(state.channel(false, neighbour(instruction, false).first, w), instruction);
          }();
          Tensor received = message.value;
          if (received.dtype() == DType::Float32) received.set_requires_grad(true);
          inputs[key] = received;
          input_stage_version[m] = message.weight_version;
          break;
        }
        case Op::Forward: {
          for (const SkipRoute* r : skip_routes_of(instruction, true)) {
            Waiting waiting(progress);
            Tensor received = take_over(state.skips.receive({false, r->name, m, instruction.slice})).value;
            if (received.dtype() == DType::Float32) received.set_requires_grad(true);
            skips_in[key][r->name] = received;
          }
          if (first) {
            const Tensor& data = units[m].data.inputs;
            inputs[key] = (sliced ? data.narrow(1, slice_offsets[instruction.slice], options_.token_slices[instruction.slice])
                                  : data).to(device);
          }
          forward_version[m] = version_base + versions.live();
          if (first) input_stage_version[m] = forward_version[m];
          if (schedule_.asynchronous() && schedule_.weights == WeightPolicy::VerticalSync &&
              forward_version[m] != input_stage_version[m])
            throw std::logic_error("vertical sync broken: the forward ran with weight version " +
                                   std::to_string(forward_version[m]) + ", the input stage used " +
                                   std::to_string(input_stage_version[m]));
          // Re-materialisation (GPipe section 2.3): without a graph, keeping only the input;
          // the backward runs the forward again.
          std::optional<NoGradGuard> no_graph;
          if (recompute) no_graph.emplace();
          outputs[key] = forward_unit(instruction, false);
          if (last) unit_losses[key] = outputs[key].detach();
          for (const SkipRoute* r : skip_routes_of(instruction, false)) {
            const Device to = device_of(schedule_.stage_of_piece(r->to_piece));
            state.skips.send({false, r->name, m, instruction.slice},
                             message_for(instruction, 0, skips_out[key].at(r->name).detach().to(to), to));
          }
          if (recompute) skips_out.erase(key);  // the backward stashes them again
          break;
        }
        case Op::SendActivation: {
          const auto [to, stage] = neighbour(instruction, true);
          send(state.channel(false, w, to), instruction, schedule_.chunk_of_piece(piece(instruction) + 1),
               outputs[key].detach().to(device_of(stage)), input_stage_version[m]);
          if (recompute) outputs.erase(key);  // the backward makes it again
          break;
        }
        case Op::ReceiveGradient: {
          Waiting waiting(progress);
          output_grads[key] = receive(state.channel(true, neighbour(instruction, true).first, w), instruction).value;
          break;
        }
        case Op::Backward:
        case Op::BackwardInput: {
          if (schedule_.asynchronous()) {
            // The executor's own check of the policy's promise (DESIGN.md decision 10).
            const int64_t used = version_base + versions.live();
            record.versions.push_back({s, replica, m, forward_version[m], used, input_stage_version[m]});
            if (schedule_.weights != WeightPolicy::None && used != forward_version[m])
              throw std::logic_error(std::string(weight_policy_name(schedule_.weights)) + " broken: the backward ran with weight version " +
                                     std::to_string(used) + ", its forward with " + std::to_string(forward_version[m]));
          }
          // The roots: the output with the gradient from the next stage (the loss on the last
          // stage), and a token slice's keys and values with what later slices gave them.
          std::vector<Tensor> roots{recompute ? forward_unit(instruction, true) : outputs[key]};
          std::vector<Tensor> root_grads{last ? Tensor() : output_grads[key]};
          // Skip connections out of this piece: what was stashed, with the gradient its pop
          // gave it.
          for (const SkipRoute* r : skip_routes_of(instruction, false)) {
            const Tensor gradient = [&] {
              Waiting waiting(progress);
              return take_over(state.skips.receive({true, r->name, m, instruction.slice})).value;
            }();
            const Tensor& stashed = skips_out[key].at(r->name);
            if (gradient.defined() && stashed.requires_grad()) roots.push_back(stashed), root_grads.push_back(gradient);
          }
          if (sliced) caches[m].add_backward_roots(instruction.slice, roots, root_grads);
          if (roots.size() > 1 || roots[0].requires_grad()) {
            if (instruction.op == Op::Backward) {
              backward(roots, root_grads);
            } else {  // zero-bubble's B: the gradients of the input and skips now, the weights' at this unit's W
              std::vector<Tensor> wanted;
              if (!first) wanted.push_back(inputs[key]);
              for (const auto& [name, t] : skips_in[key])
                if (t.requires_grad()) wanted.push_back(t);
              weight_gradients[key] = backward_inputs(roots, root_grads, wanted);
            }
          }
          // Skip connections into this piece: each received tensor's gradient goes straight back.
          for (const SkipRoute* r : skip_routes_of(instruction, true)) {
            const Tensor& received = skips_in[key].at(r->name);
            const Device to = device_of(schedule_.stage_of_piece(r->from_piece));
            Tensor gradient;
            if (received.requires_grad()) gradient = (received.grad().defined() ? received.grad() : zeros_like(received)).to(to);
            state.skips.send({true, r->name, m, instruction.slice}, message_for(instruction, 0, gradient, to));
          }
          skips_in.erase(key);
          skips_out.erase(key);
          if (sliced) {
            caches[m].release(instruction.slice);
            if (instruction.slice == 0) caches.erase(m);
          }
          outputs.erase(key);
          output_grads.erase(key);
          if (!first) {
            const Tensor g = inputs[key].grad();
            input_grads[key] = g.defined() ? g : zeros_like(inputs[key]);
          }
          inputs.erase(key);
          if (instruction.slice == 0) forward_version.erase(m);
          break;
        }
        case Op::BackwardWeight:
          weight_gradients[key].run();
          weight_gradients.erase(key);
          break;
        case Op::SendGradient: {
          const auto [to, stage] = neighbour(instruction, false);
          send(state.channel(true, w, to), instruction, schedule_.chunk_of_piece(piece(instruction) - 1),
               input_grads[key].to(device_of(stage)));
          input_grads.erase(key);
          break;
        }
        case Op::AllReduce: {
          Waiting waiting(progress);
          state.all_reduces[s]->run(replica, module.parameters());
          break;
        }
        case Op::OptimizerStep: {
          // The replicas of a stage take each update together, at the step of the round's
          // last mini-batch, so that a learning-rate schedule gives them all the same rate.
          const int r = replicas(s), per_update = schedule_.micro_batches_per_update;
          const int round_last = r > 1 ? (m / per_update / r + 1) * r * per_update - 1 : m;
          const WorkUnit* unit = m >= 0 ? &units[round_last] : nullptr;
          if (optimizer_step_) optimizer_step_(s, replica, unit ? unit->step : (units.empty() ? 0 : units[0].step));
          if (schedule_.asynchronous()) ++record.updates;
          break;
        }
        case Op::StashWeights:
          stash.stash(instruction.version);
          record.peak_stash_bytes = std::max(record.peak_stash_bytes, stash.bytes());
          break;
        case Op::LoadWeights:
          stash.load(instruction.version, live_before);
          break;
        case Op::DropWeights:
          stash.drop(instruction.version);
          break;
      }
      record.peak_versions = std::max(record.peak_versions, versions.versions_held());
      // A GPU runs kernels after their launch returns: a traced instruction waits for its
      // own, and the stage's last one for all, since the caller's thread reads the gradients.
      const bool stage_done = &instruction == &schedule_.programs[w].back();
      if (options_.trace || stage_done) kernels::synchronize(device);
      if (stage_done)
        for (const auto& [k, loss] : unit_losses) losses[k / (slices * chunks)] += loss.item();
    } catch (const ChannelClosed&) {
      stash.restore_latest(versions);
      return;  // another stage failed; it reports
    } catch (...) {
      stash.restore_latest(versions);  // the run failed, but the parameters keep the newest weights
      state.fail(w, instruction, std::current_exception());
      return;
    }
    if (options_.trace) record.trace.push_back({w, instruction, start, now_us(), trackers_[w]->current_bytes.load()});
  }
}

}  // namespace minipipe::pipeline

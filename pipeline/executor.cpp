#include "pipeline/executor.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "kernels/cpu/threads.h"
#include "kernels/dispatch.h"
#include "nn/skip.h"
#include "pipeline/pipedream.h"
#include "pipeline/run_state.h"
#include "pipeline/schedule_spec.h"
#include "pipeline/stage_worker.h"
#include "pipeline/status.h"
#include "pipeline/token_slices.h"
#include "pipeline/validator.h"
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

PipelineError::PipelineError(const Schedule& schedule, int worker, Instruction instruction_, const std::string& what)
    : std::runtime_error("pipeline " + schedule.worker_name(worker) + ", " + instruction_text(instruction_, schedule) + ": " +
                         what),
      stage(schedule.stage_of(worker)), replica(schedule.replica_of(worker)), instruction(instruction_) {}

namespace {
Schedule synchronous_only(Schedule schedule) {
  if (schedule.asynchronous())
    throw std::invalid_argument("pipeline: schedule '" + schedule.name + "' is asynchronous; build pipedream by name "
                                "(options.schedule), since its programs follow each run_async call's mini-batches");
  return schedule;
}
}  // namespace

ScheduleSpec Pipeline::schedule_spec(const StagePlan& plan, const PipelineOptions& options) {
  const int chunks = options.virtual_stages;
  if (chunks < 1 || plan.stages() % chunks != 0)
    throw std::invalid_argument("pipeline: " + std::to_string(chunks) + " virtual stages per stage need a plan of a multiple of " +
                                std::to_string(chunks) + " pieces; the plan has " + std::to_string(plan.stages()) +
                                " (cut the model into stages x virtual stages)");
  ScheduleSpec spec;
  spec.name = options.schedule;
  spec.stages = plan.stages() / chunks;
  spec.micro_batches = options.micro_batches;
  spec.virtual_stages = chunks;
  spec.token_slices = options.token_slices.empty() ? 1 : static_cast<int>(options.token_slices.size());
  spec.replicas = options.replicas;  // check() refuses them off pipedream
  if (spec.asynchronous()) {
    spec.weights = options.weights;
    spec.mini_batches = round_robin_groups(options.replicas);  // run_async rebuilds it for each call's mini-batches
  }
  return spec;
}

Pipeline::Pipeline(std::shared_ptr<nn::Sequential> model, StagePlan plan, PipelineOptions options, LossFunction loss)
    : Pipeline(Common{}, std::move(model), plan, build_schedule(schedule_spec(plan, options)), options, std::move(loss)) {}

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

// Replica r of every stage with more than r replicas comes from the r-th model that
// model_factory builds, loaded with the model's values.
void Pipeline::make_replicas() {
  if (options_.remote_stages) {  // each process runs one replica, on the layers it holds
    for (int w = 0; w < workers(); ++w) worker_modules_[w] = worker_modules_[schedule_.first_worker(schedule_.stage_of(w))];
    return;
  }
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

int Pipeline::local_worker() const {
  if (!options_.remote_stages) return -1;
  const int stage = options_.remote_stages->local_stage();
  return schedule_.replicated() ? schedule_.first_worker(stage) + options_.remote_stages->local_replica() : stage;
}

void Pipeline::check_remote_stages() const {
  const int local = options_.remote_stages->local_stage();
  auto refuse = [](const std::string& what) {
    throw std::invalid_argument("pipeline: stages in separate processes do not run " + what + " yet");
  };
  if (local < 0 || local >= stages())
    throw std::invalid_argument("pipeline: this process runs stage " + std::to_string(local) + ", but there are " +
                                std::to_string(stages()) + " stages");
  if (schedule_.replicated())
    for (int s = 0; s < stages(); ++s)
      if (replicas(s) != options_.remote_stages->replicas())
        refuse("stages replicated unequally (give every stage as many replicas as there are pipeline replicas)");
  if (!tied_.empty()) refuse("tied weights across stages (" + tied_[0].name + ")");
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
  const RemoteStages* remote = options_.remote_stages.get();
  auto here = [remote](int s) { return !remote || remote->local_stage() == s; };
  Tensor h = x;
  nn::SkipStore skips;  // what the pieces run here stash and pop
  const nn::SkipStore::Scope skip_scope(skips);
  std::vector<std::unique_ptr<Channel>> sending;
  for (int piece = 0; piece < schedule_.pieces(); ++piece) {
    const int s = schedule_.stage_of_piece(piece), c = schedule_.chunk_of_piece(piece);
    if (!here(s)) continue;
    // Across processes, a piece's input comes from the rank before it and its output goes on
    // to the next (the micro-batch field counts nothing here: one tensor at a time), and a
    // skip from another rank's piece straight from there.
    if (piece > 0 && !here(schedule_.stage_of_piece(piece - 1)))
      h = take_over_message(remote->channel(false, schedule_.stage_of_piece(piece - 1), s)->receive(0, 0, c)).value;
    for (size_t i = 0; i < skip_routes_.size(); ++i) {
      const int from = schedule_.stage_of_piece(skip_routes_[i].from_piece);
      if (skip_routes_[i].to_piece == piece && !here(from))
        skips.stash(skip_routes_[i].name,
                    take_over_message(remote->skip_channel(static_cast<int>(i), false, from, s)->receive(0, 0, 0)).value);
    }
    h = chunk(s, c)->forward(h.to(device_of(s)));
    // The output first, then the skips: the ranks receive in that order. The sending channels
    // live to the end, whose sends then complete.
    if (piece + 1 < schedule_.pieces() && !here(schedule_.stage_of_piece(piece + 1))) {
      const int next = schedule_.stage_of_piece(piece + 1);
      sending.push_back(remote->channel(false, s, next));
      sending.back()->send({0, 0, schedule_.chunk_of_piece(piece + 1), h, kernels::WorkMark::of_queued_work(device_of(s))});
      h = Tensor();
    }
    for (size_t i = 0; i < skip_routes_.size(); ++i) {
      const int to = schedule_.stage_of_piece(skip_routes_[i].to_piece);
      if (skip_routes_[i].from_piece != piece || here(to)) continue;
      sending.push_back(remote->skip_channel(static_cast<int>(i), false, s, to));
      sending.back()->send({0, 0, 0, skips.pop(skip_routes_[i].name).to(Device::cpu()), kernels::WorkMark::of_queued_work(Device::cpu())});
    }
  }
  return h;
}

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
    ScheduleSpec spec = schedule_spec(plan_, options_);
    spec.mini_batches = static_cast<int>(mini_batches.size());
    schedule_ = build_schedule(spec);
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

namespace {
// While it lives, a thread that prints a status report (pipeline/status.h) when one is asked
// for, or once when the run has taken longer than PipelineOptions::status_after_seconds.
class StatusWatcher {
 public:
  StatusWatcher(const Schedule& schedule, const RunState& state, const PipelineOptions& options)
      : thread_([this, &schedule, &state, &options] { watch(schedule, state, options); }) {}
  ~StatusWatcher() {
    {
      std::lock_guard lock(mutex_);
      run_over_ = true;
    }
    run_over_signal_.notify_all();
    thread_.join();
  }

 private:
  void watch(const Schedule& schedule, const RunState& state, const PipelineOptions& options) {
    const auto start = std::chrono::steady_clock::now();
    uint64_t seen = status_requests();
    bool reported_slow = false;
    std::unique_lock lock(mutex_);
    while (!run_over_signal_.wait_for(lock, std::chrono::milliseconds(50), [&] { return run_over_; })) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const bool asked = status_requests() != seen;
      const bool slow = options.status_after_seconds > 0 && seconds > options.status_after_seconds && !reported_slow;
      if (!asked && !slow) continue;
      seen = status_requests();
      reported_slow = reported_slow || slow;
      const std::string report = describe_progress(schedule, state, seconds);
      if (options.status_output) options.status_output(report);
      else std::fputs(report.c_str(), stderr);
    }
  }

  std::mutex mutex_;
  std::condition_variable run_over_signal_;
  bool run_over_ = false;
  std::thread thread_;  // last: started once the members above exist
};
}  // namespace

// A channel each way between every worker of a piece's stage and every worker of the next
// piece's stage (under interleaving, the last stage also feeds stage 0's next chunk). With
// stages in other processes, only the local stage's channels, and those to its neighbours go
// to their processes.
void Pipeline::open_channels(RunState& state) const {
  const int local = options_.remote_stages ? options_.remote_stages->local_stage() : -1;
  const int local_replica = options_.remote_stages ? options_.remote_stages->local_replica() : 0;
  for (int piece = 0; piece + 1 < schedule_.pieces(); ++piece) {
    const int s = schedule_.stage_of_piece(piece), next = schedule_.stage_of_piece(piece + 1);
    for (int r = 0; r < replicas(s); ++r)
      for (int q = 0; q < replicas(next); ++q) {
        const int from = schedule_.first_worker(s) + r, to = schedule_.first_worker(next) + q;
        if (state.channels.count({false, from, to})) continue;
        if (local >= 0 && s != local && next != local) continue;
        if (local >= 0 && schedule_.replicated() && (r != local_replica || q != local_replica)) continue;
        for (bool gradient : {false, true}) {
          const Schedule::ChannelKey key = gradient ? Schedule::ChannelKey{true, to, from} : Schedule::ChannelKey{false, from, to};
          std::unique_ptr<Channel> channel = local >= 0 ? options_.remote_stages->channel(gradient, gradient ? next : s, gradient ? s : next)
                                                        : std::make_unique<QueueChannel>();
          if (options_.link.slows()) channel = std::make_unique<LinkChannel>(std::move(channel), options_.link);
          state.channels[key] = std::move(channel);
        }
      }
  }
  if (local < 0) return;
  for (size_t i = 0; i < skip_routes_.size(); ++i) {
    const int from = schedule_.stage_of_piece(skip_routes_[i].from_piece), to = schedule_.stage_of_piece(skip_routes_[i].to_piece);
    if (from == to || (from != local && to != local)) continue;
    for (bool gradient : {false, true})
      state.remote_skips[{static_cast<int>(i), gradient}] =
          options_.remote_stages->skip_channel(static_cast<int>(i), gradient, gradient ? to : from, gradient ? from : to);
  }
}

// Every replica starts from the model's values (a checkpoint may have been loaded into it);
// buffers such as running statistics are the model's too.
void Pipeline::prepare_replicas(RunState& state) const {
  for (int s = 0; s < stages(); ++s) {
    state.all_reduces.push_back(replicas(s) > 1 ? std::make_unique<ReplicaAllReduce>(replicas(s)) : nullptr);
    if (options_.remote_stages) continue;  // one replica here, on the model's own layers
    for (int r = 1; r < replicas(s); ++r) {
      replica(s, r)->load_state_dict(stage(s)->state_dict());
      replica(s, r)->train(model_->is_training());
    }
  }
}

StepResult Pipeline::run_units(const std::vector<WorkUnit>& units) {
  if (!tied_.empty() && optimizer_step_)
    throw std::invalid_argument("pipeline: " + tied_[0].name + " is tied across stages, and its gradient is complete only "
                                "when run() returns: step the optimizer after run(), not through set_optimizer_step");
  RunState state;
  open_channels(state);
  for (int w = 0; w < workers(); ++w) {
    trackers_[w]->reset_peak();
    state.progress.push_back(std::make_unique<WorkerProgress>());
  }
  prepare_replicas(state);
  // The calling thread's GPU work (moving the model, the last optimizer step) must have run
  // before the worker threads, on streams of their own, read the parameters.
  for (int s = 0; s < stages(); ++s) kernels::synchronize(device_of(s));
  std::vector<double> losses(units.size(), 0.0);
  std::vector<StageRecord> records(workers());
  {
    StatusWatcher watcher(schedule_, state, options_);
    const int local = local_worker();
    threads_->run([&](int w) {
      if (local < 0 || w == local) {  // otherwise another process runs it
        kernels::cpu::KernelThreads kernel_threads(options_.kernel_threads);
        StageWorker(*this, w, state, units, records[w]).run(losses);
      }
      state.progress[w]->done = true;
    });
  }
  for (int s = 0; s < stages(); ++s)  // every replica of a stage updates as often: the one that ran here, or replica 0
    weight_versions_[s] += records[local_worker() >= 0 && schedule_.stage_of(local_worker()) == s ? local_worker()
                                                                                                  : schedule_.first_worker(s)]
                               .updates;
  if (!state.error) add_tied_gradients();
  for (const auto& stand_ins : tied_stand_ins_)
    for (const Tensor& stand_in : stand_ins) stand_in.zero_grad();  // added, or a failed run's
  if (state.error) {
    try {
      std::rethrow_exception(state.error);
    } catch (const std::exception& e) {
      throw PipelineError(schedule_, state.error_worker, state.error_instruction, e.what());
    }
  }
  return step_result(units, losses, records, state.origin);
}

StepResult Pipeline::step_result(const std::vector<WorkUnit>& units, const std::vector<double>& losses,
                                 std::vector<StageRecord>& records, std::chrono::steady_clock::time_point origin) const {
  StepResult result;
  result.trace_origin_us = std::chrono::duration<double, std::micro>(origin.time_since_epoch()).count();
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
}  // namespace minipipe::pipeline

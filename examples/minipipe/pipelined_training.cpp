#include "pipelined_training.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>
#include <type_traits>

#include "kernels/cpu/threads.h"
#include "pipeline/pipedream.h"
#include "pipeline/planner.h"
#include "pipeline/simulator.h"
#include "pipeline/status.h"
#include "pipeline/slice_planner.h"
#include "pipeline/token_slices.h"
#include "tensor/allocator.h"

namespace minipipe::cli {

std::string weight_policy_flag(const std::string& schedule, const std::string& weights) {
  if (schedule == "pipedream") return weights.empty() ? "stash" : weights;
  if (!weights.empty())
    throw std::invalid_argument("--weights " + weights + " chooses the weight versions of the asynchronous schedule: add "
                                "--schedule pipedream (" + schedule + " is synchronous and has one version)");
  return weights;
}

namespace {
std::vector<Device> parse_devices(const std::string& list, int stages, Device fallback) {
  std::vector<Device> devices;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) devices.push_back(Device::parse(item));
  if (devices.empty()) devices.assign(stages, fallback);
  if (static_cast<int>(devices.size()) != stages)
    throw std::invalid_argument("--stage-devices names " + std::to_string(devices.size()) + " devices for " +
                                std::to_string(stages) + " stages");
  return devices;
}
}  // namespace

PipelinedTraining::PipelinedTraining(std::shared_ptr<nn::Sequential> model, const PipelineFlags& flags, Device device,
                                     uint64_t seed, pipeline::LossFunction loss, const Tensor& sample,
                                     const OptimizerSetup& optimizer, ModelFactory model_factory)
    : model_(std::move(model)), flags_(flags), optimizer_setup_(optimizer) {
  flags_.weights = weight_policy_flag(flags.schedule, flags.weights);
  if (!flags.replicas.empty() && flags.schedule != "pipedream")
    throw std::invalid_argument("--replicas replicates stages of PipeDream's asynchronous pipeline: add --schedule pipedream");
  replicas_ = parse_replicas(flags.replicas, flags.stages);
  join_process_group(device);
  const bool interleaved = flags.schedule == "interleaved";
  if (interleaved && !flags.plan.empty())
    throw std::invalid_argument("--plan auto chooses stages, not the chunks of the interleaved schedule: use --partition");
  if (!interleaved && flags.virtual_stages != 1)
    throw std::invalid_argument("--virtual-stages cuts each stage into chunks for --schedule interleaved, not " + flags.schedule);
  if (interleaved && flags.virtual_stages < 2)
    throw std::invalid_argument("--schedule interleaved needs --virtual-stages 2 or more (model chunks per stage)");
  if (interleaved && flags.stages * flags.virtual_stages > static_cast<int>(model_->size()))
    throw std::invalid_argument("--stages " + std::to_string(flags.stages) + " x --virtual-stages " +
                                std::to_string(flags.virtual_stages) + " pieces do not fit a model of " +
                                std::to_string(model_->size()) + " layers: lower --stages or --virtual-stages");
  // Interleaved: the model in stages x v pieces, stage s running pieces s, s + K, ...
  pipeline::StagePlan plan = flags.plan.empty() ? pipeline::make_partition(*model_, flags.stages * flags.virtual_stages,
                                                                           flags.partition, sample)
                                                 : planned_partition(sample);  // may choose fewer stages, replicated
  pipeline::PipelineOptions options{flags_.micro_batches, flags_.schedule, pipeline::parse_recompute(flags_.recompute),
                                    parse_devices(flags_.stage_devices, flags_.stages, device), seed, !flags_.untimed,
                                    flags_.threads};
  if (asynchronous()) options.weights = pipeline::parse_weight_policy(flags_.weights);
  token_slices_ = token_slices(plan, sample);
  options.token_slices = token_slices_;
  options.replicas = replicas_;
  options.status_after_seconds = flags.status_after;
  options.deferred_batch_norm = flags.deferred_batch_norm;
  pipeline::install_status_signal(SIGUSR1);  // kill -USR1 <pid>: where is every stage?
  options.virtual_stages = flags.virtual_stages;
  if (group_) options.remote_stages = group_->remote_stages(flags.rank_timeout);
  options.link = {flags.link_gbps * 1e9 / 8, flags.link_latency_us * 1e-6};
  options.model_factory = [model_factory, device] {
    auto copy = model_factory();
    copy->to(device);
    return copy;
  };
  for (const Device& d : options.stage_devices)
    if (std::find(devices_.begin(), devices_.end(), d) == devices_.end()) devices_.push_back(d);
  pipeline_ = std::make_unique<pipeline::Pipeline>(model_, std::move(plan), options, std::move(loss));
  peak_bytes_.assign(pipeline_->workers(), 0);
  peak_weight_versions_.assign(pipeline_->workers(), 1);
  peak_stash_bytes_.assign(pipeline_->workers(), 0);
  if (!asynchronous()) {
    optimizers_.push_back(optimizer.make(model_->named_parameters()));
    return;
  }
  for (int s = 0; s < pipeline_->stages(); ++s)
    for (int r = 0; r < pipeline_->replicas(s); ++r) optimizers_.push_back(optimizer.make(pipeline_->replica(s, r)->named_parameters()));
  pipeline_->set_optimizer_step([this](int s, int r, uint64_t step) {  // on the replica's thread
    nn::Optimizer& own = *optimizers_[pipeline_->schedule().first_worker(s) + r];
    own.set_learning_rate(learning_rate(static_cast<int64_t>(step)));
    if (optimizer_setup_.clip_norm > 0) nn::clip_grad_norm(pipeline_->replica(s, r)->parameters(), optimizer_setup_.clip_norm);
    own.step();
    own.zero_grad();
  });
}

std::vector<int> parse_replicas(const std::string& list, int stages) {
  if (list.empty()) return {};
  std::vector<int> replicas;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int count = 0;
    try {
      count = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || count < 1 || count > 64)
      throw std::invalid_argument("--replicas " + list + ": '" + item +
                                  "' is not a replica count; give one count from 1 to 64 per stage, like 2,1");
    replicas.push_back(count);
  }
  if (static_cast<int>(replicas.size()) != stages)
    throw std::invalid_argument("--replicas " + list + " names " + std::to_string(replicas.size()) + " stages, --stages is " +
                                std::to_string(stages) + ": give one count per stage");
  return replicas;
}

// Multi-process runs: every process builds the same model and plan from the same command
// line, runs its own stage, and then holds every stage's gradient, so that each takes the
// same optimizer step as one process would (the weights and optimizer state stay whole on
// every rank: evaluation, checkpoints and resuming work unchanged).
void PipelinedTraining::join_process_group(Device device) {
  if (!pipeline::launched_by_mpirun()) {
    if (flags_.data_parallel > 1)
      throw std::invalid_argument("--data-parallel " + std::to_string(flags_.data_parallel) + " runs pipeline replicas in "
                                  "separate processes: start with mpirun -np " +
                                  std::to_string(flags_.stages * flags_.data_parallel) + " (stages x replicas)");
    return;
  }
  group_ = std::make_unique<pipeline::ProcessGroup>(flags_.stages, flags_.data_parallel, device);
  group_->check_same_on_every_rank("command line", flags_.command_line);
  rank_map_ = group_->rank_map();
  auto refuse = [](const std::string& what, const std::string& instead) {
    throw std::invalid_argument(what + " is not available across processes yet: " + instead);
  };
  if (flags_.schedule == "pipedream" || flags_.schedule == "interleaved")
    refuse("--schedule " + flags_.schedule, "use gpipe, 1f1b, zb-h1 or zb-h2");
  // Each process would time the layers itself and might choose differently.
  if (!flags_.plan.empty() || flags_.partition == "time" || flags_.token_slices == "auto")
    refuse("planning from measured times (--plan auto, --partition time, --token-slices auto)",
           "give --partition uniform, params or explicit layer counts, and --token-slices N");
  if (!flags_.stage_devices.empty()) refuse("--stage-devices", "each rank runs its stage on --device (cuda: the rank's own GPU)");
}

datasets::Batch PipelinedTraining::data_parallel_shard(const datasets::Batch& batch) const {
  const int64_t size = batch.inputs.shape()[0], replicas = group_->replicas();
  if (size % replicas != 0)
    throw std::invalid_argument("--data-parallel " + std::to_string(replicas) + " shares each mini-batch of " +
                                std::to_string(size) + " samples equally: make --batch-size a multiple of " +
                                std::to_string(replicas));
  const int64_t share = size / replicas, first = group_->replica() * share;
  // The shard keeps its place in the mini-batch, which keys its dropout masks.
  return {batch.inputs.narrow(0, first, share).contiguous(), batch.targets.narrow(0, first, share).contiguous(),
          batch.sample_offset + first};
}

float PipelinedTraining::gather_step(const pipeline::StepResult& result) const {
  group_->average_over_replicas(pipeline_->stage(group_->stage())->parameters());
  for (int s = 0; s < pipeline_->stages(); ++s) group_->share_gradients_from_stage(s, pipeline_->stage(s)->parameters());
  // The last stage of each replica holds its shard's mean loss; the shards are equal.
  const bool last = group_->stage() == pipeline_->stages() - 1;
  return static_cast<float>(group_->sum(last ? result.loss : 0.0) / group_->replicas());
}

pipeline::StagePlan PipelinedTraining::planned_partition(const Tensor& sample) {
  // --stages counts workers: PipeDream's planner chooses the stages among them and, under
  // pipedream with stash or none, how many replicas each gets. Its time is per micro-batch.
  const bool replicas_may_run = asynchronous() && (flags_.weights == "stash" || flags_.weights == "none");
  const pipeline::PipelinePlan chosen = pipeline::plan_pipeline(pipeline::profile_layers(*model_, sample, 5),
                                                                {flags_.stages, {}, 0, replicas_may_run ? 0 : 1});
  planned_seconds_per_mini_batch_ = chosen.seconds_per_mini_batch * flags_.micro_batches;
  pipeline::StagePlan plan = pipeline::partition_explicit(*model_, chosen.balance());
  plan.method = "PipeDream's planner (predicted " + std::to_string(1e3 * planned_seconds_per_mini_batch_) +
                " ms per mini-batch in the steady state; bottleneck: " + chosen.bottleneck + ")";
  if (chosen.replicated()) replicas_ = chosen.replicas();
  if (!flags_.stage_devices.empty() && plan.stages() != flags_.stages)
    throw std::invalid_argument("--plan auto chose " + std::to_string(plan.stages()) + " stages for " +
                                std::to_string(flags_.stages) + " workers, so --stage-devices cannot name one device per "
                                "stage in advance: drop --stage-devices or --plan");
  flags_.stages = plan.stages();
  return plan;
}

std::vector<int64_t> PipelinedTraining::token_slices(const pipeline::StagePlan& plan, const Tensor& sample) {
  if (flags_.token_slices.empty()) return {};
  if (sample.dim() != 2)
    throw std::invalid_argument("--token-slices cuts token sequences: it needs a model fed [batch, tokens] (the gpt)");
  const int64_t tokens = sample.shape()[1];
  if (flags_.token_slices != "auto") {
    const int64_t count = std::stoll(flags_.token_slices);
    if (count > tokens)
      throw std::invalid_argument("--token-slices " + flags_.token_slices + " exceeds the " + std::to_string(tokens) +
                                  " tokens of a sequence: use at most " + std::to_string(tokens));
    return pipeline::uniform_token_slices(tokens, static_cast<int>(count));
  }
  // TeraPipe section 3.3: time slices on the stages as they will run, then plan.
  const pipeline::SliceCostModel cost = pipeline::profile_slice_costs(pipeline::stage_modules(*model_, plan), sample);
  const int64_t batch = sample.shape()[0];
  const pipeline::SlicePlan chosen = pipeline::plan_token_slices(cost, batch, tokens, plan.stages(),
                                                                 pipeline::default_slice_granularity(tokens), flags_.micro_batches);
  const double unsliced = pipeline::slicing_seconds(cost, batch, {tokens}, plan.stages(), flags_.micro_batches);
  planned_seconds_per_mini_batch_ = chosen.seconds;
  char note[256];
  std::snprintf(note, sizeof note, "predicted %.1f ms per mini-batch against %.1f ms unsliced; cost model ",
                1e3 * chosen.seconds, 1e3 * unsliced);
  token_slice_note_ = "token slices by TeraPipe's planner: " + pipeline::format_token_slices(chosen.lengths) + ", " + note +
                      cost.str();
  return chosen.lengths;
}

std::vector<float> PipelinedTraining::train(const std::vector<datasets::Batch>& batches, int64_t first_step) {
  const auto start = std::chrono::steady_clock::now();
  struct AddTime {  // whichever way train() returns
    PipelinedTraining& self;
    std::chrono::steady_clock::time_point start;
    size_t mini_batches;
    ~AddTime() {
      self.training_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      self.mini_batches_trained_ += static_cast<int64_t>(mini_batches);
    }
  } add_time{*this, start, batches.size()};
  std::vector<float> losses;
  auto record = [&](pipeline::StepResult& result) {
    for (size_t s = 0; s < peak_bytes_.size(); ++s) {
      peak_bytes_[s] = std::max(peak_bytes_[s], result.peak_bytes[s]);
      peak_weight_versions_[s] = std::max(peak_weight_versions_[s], result.peak_weight_versions[s]);
      peak_stash_bytes_[s] = std::max(peak_stash_bytes_[s], result.peak_stash_bytes[s]);
    }
    if (measures_bubble()) bubble_sum_ += pipeline::summarize(result.trace, pipeline_->workers()).bubble_fraction;
    ++steps_;
    last_trace_ = std::move(result.trace);
    last_trace_origin_us_ = result.trace_origin_us;
    losses.insert(losses.end(), result.losses.begin(), result.losses.end());
  };
  last_call_mini_batches_ = static_cast<int64_t>(batches.size());
  if (asynchronous()) {
    pipeline::StepResult result = pipeline_->run_async(batches, static_cast<uint64_t>(first_step));
    record(result);
    return losses;
  }
  nn::Optimizer& optimizer = *optimizers_.front();
  for (size_t i = 0; i < batches.size(); ++i) {
    const int64_t step = first_step + static_cast<int64_t>(i);
    optimizer.set_learning_rate(learning_rate(step));
    pipeline::StepResult result = pipeline_->run(group_ ? data_parallel_shard(batches[i]) : batches[i], static_cast<uint64_t>(step));
    if (group_) result.losses = {gather_step(result)};
    record(result);
    if (optimizer_setup_.clip_norm > 0) nn::clip_grad_norm(model_->parameters(), optimizer_setup_.clip_norm);
    optimizer.step();
    optimizer.zero_grad();
  }
  return losses;
}

int64_t PipelinedTraining::round_robin() const { return pipeline::round_robin_groups(replicas_); }

int64_t PipelinedTraining::drain_every() const {
  const int64_t steps = round_robin();
  return (64 + steps - 1) / steps * steps;
}

int64_t PipelinedTraining::steps_per_call(int64_t step, int64_t end_step, int64_t eval_interval) const {
  if (!asynchronous()) return 1;
  auto next_multiple = [step](int64_t n) { return (step / n + 1) * n; };
  const int64_t count = std::min({next_multiple(drain_every()), next_multiple(eval_interval), end_step}) - step;
  if (count % round_robin() != 0)
    throw std::invalid_argument("replicas " + pipeline::format_replicas(replicas_) + " take the mini-batches round-robin, so the " +
                                "pipeline drains only after multiples of " + std::to_string(round_robin()) + " steps; step " +
                                std::to_string(step + count) + " is not one: make --steps, --eval-interval and "
                                "--stop-after (and the step resumed from) multiples of " + std::to_string(round_robin()));
  return count;
}

std::vector<float> PipelinedTraining::learning_rates(int64_t first_step, int64_t count) const {
  std::vector<float> rates;
  for (int64_t i = 0; i < count; ++i) rates.push_back(learning_rate(first_step + i));
  return rates;
}

std::vector<nn::Optimizer*> PipelinedTraining::optimizers() const {
  std::vector<nn::Optimizer*> out;
  for (const auto& o : optimizers_) out.push_back(o.get());
  return out;
}

void PipelinedTraining::reset_peak_memory() const {
  for (const Device& d : devices_) minipipe::reset_peak_memory(d);
}

std::string PipelinedTraining::peak_memory_json() const {
  JsonObject peaks;
  for (const Device& d : devices_) peaks.add(d.str(), memory_stats(d).peak_bytes);
  return peaks.str();
}

std::string PipelinedTraining::peak_memory_text() const {
  std::string out;
  for (size_t i = 0; i < devices_.size(); ++i)
    out += (i ? ", " : "") + std::to_string(memory_stats(devices_[i]).peak_bytes >> 20) + " MiB on " + devices_[i].str();
  return out;
}

std::string PipelinedTraining::plan_text() const {
  std::string tied;
  for (const auto& t : pipeline_->tied_parameters()) {
    tied += "tied across stages";
    for (int s : t.stages) tied += " " + std::to_string(s);
    tied += ": " + t.name + " (gradients summed before each step)\n";
  }
  return pipeline_->plan().str(*model_) + tied +
         (replicas_.empty() ? "" : "replicas per stage " + pipeline::format_replicas(replicas_) + "\n") +
         "schedule " + flags_.schedule +
         (flags_.virtual_stages > 1 ? " (" + std::to_string(flags_.virtual_stages) + " chunks per stage)" : "") + ", " +
         std::to_string(flags_.micro_batches) +
         " micro-batches" + (asynchronous() ? " per update, weights " + flags_.weights : "") +
         (token_slices_.empty() ? "" : ", token slices " + pipeline::format_token_slices(token_slices_)) + ", recompute " +
         flags_.recompute;
}

void PipelinedTraining::log_setup(TrainingLog& log, int64_t end_step, int64_t total_steps, int64_t eval_interval) const {
  if (group_) log.message(std::to_string(group_->size()) + " processes (mpirun): " + std::to_string(group_->stages()) +
                          " stages x " + std::to_string(group_->replicas()) + " data-parallel replicas\n" + rank_map_);
  if (flags_.stages > 1 || !replicas_.empty() || flags_.micro_batches > 1 || !token_slices_.empty()) log.message(plan_text());
  if (!token_slice_note_.empty()) log.message(token_slice_note_);
  const bool drains_at_end = end_step % drain_every() == 0 || end_step % eval_interval == 0;  // an uninterrupted run
  if (asynchronous() && end_step < total_steps && !drains_at_end)
    log.message("note: pipedream drains the pipeline to stop at step " + std::to_string(end_step) +
                ", where an uninterrupted run would not: resumed, this run's losses will differ slightly from one never "
                "stopped (stop at an evaluation step for an exact resume)");
  if (flags_.threads > 1 && !kernels::cpu::kernel_threads_supported())
    log.message("note: this build has no OpenMP, so every stage runs on one thread whatever --threads says");
  int threads = 0;  // a thread per stage, --threads per stage on the CPU
  for (int s = 0; s < pipeline_->stages(); ++s) threads += pipeline_->replicas(s) * (pipeline_->device_of(s).is_cpu() ? flags_.threads : 1);
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores > 0 && threads > static_cast<int>(cores))
    log.message("note: the stages want " + std::to_string(threads) + " threads and this machine has " +
                std::to_string(cores) + " hardware threads: they will take turns, and times will say little (lower " +
                (flags_.threads > 1 ? "--threads or " : "") + "--stages" +
                (flags_.threads > 1 ? "; OMP_WAIT_POLICY=passive keeps waiting kernel threads off the cores" : "") + ")");
}

JsonObject PipelinedTraining::summary() const {
  std::vector<int64_t> layers(pipeline_->plan().layers_per_stage.begin(), pipeline_->plan().layers_per_stage.end());
  return JsonObject()
      .add("stages", static_cast<int64_t>(flags_.stages))
      .add_raw("replicas_per_stage", json_list(std::vector<int64_t>(replicas_.begin(), replicas_.end())))
      .add("micro_batches", static_cast<int64_t>(flags_.micro_batches))
      .add("schedule", flags_.schedule)
      .add("virtual_stages", static_cast<int64_t>(flags_.virtual_stages))
      .add("weights", asynchronous() ? flags_.weights : std::string("synchronous"))
      .add("recompute", flags_.recompute)
      .add_raw("token_slices", json_list(token_slices_))
      .add("threads_per_stage", static_cast<int64_t>(flags_.threads))
      .add_raw("layers_per_stage", json_list(layers))
      .add_raw("measured_bubble_fraction",
               measures_bubble() ? std::to_string(steps_ ? bubble_sum_ / static_cast<double>(steps_) : 0.0) : "null")
      // PipeDream fills and drains once per call of train(), not once per mini-batch; token
      // slices are units of work like micro-batches.
      .add("theoretical_bubble_fraction",
           pipeline::theoretical_bubble_fraction(flags_.stages, flags_.micro_batches * static_cast<int>(last_call_mini_batches_) *
                                                                    std::max<int>(1, static_cast<int>(token_slices_.size())),
                                                 flags_.virtual_stages))
      .add_raw("peak_bytes_per_stage", json_list(peak_bytes_))
      .add_raw("peak_weight_versions_per_stage", json_list(peak_weight_versions_))
      .add_raw("peak_stash_bytes_per_stage", json_list(peak_stash_bytes_))
      .add("measured_seconds_per_mini_batch", mini_batches_trained_ ? training_seconds_ / mini_batches_trained_ : 0.0)
      .add("planned_seconds_per_mini_batch", planned_seconds_per_mini_batch_);
}

// Under mpirun, every rank's events of the last call on rank 0, one row per rank, on rank 0's
// clock (exact on one machine; across machines, as far as their clocks agree).
std::vector<pipeline::TraceEvent> PipelinedTraining::gather_trace(std::vector<std::string>& row_names) const {
  static_assert(std::is_trivially_copyable_v<pipeline::TraceEvent>);
  std::string bytes(sizeof(double) + last_trace_.size() * sizeof(pipeline::TraceEvent), '\0');
  std::memcpy(bytes.data(), &last_trace_origin_us_, sizeof(double));
  if (!last_trace_.empty()) std::memcpy(bytes.data() + sizeof(double), last_trace_.data(), last_trace_.size() * sizeof(pipeline::TraceEvent));
  const std::vector<std::string> ranks = group_->gather_to_rank_zero(bytes);
  std::vector<pipeline::TraceEvent> events;
  for (size_t r = 0; r < ranks.size(); ++r) {
    double origin = 0;
    std::memcpy(&origin, ranks[r].data(), sizeof(double));
    const size_t count = (ranks[r].size() - sizeof(double)) / sizeof(pipeline::TraceEvent);
    for (size_t i = 0; i < count; ++i) {
      pipeline::TraceEvent e;
      std::memcpy(&e, ranks[r].data() + sizeof(double) + i * sizeof(pipeline::TraceEvent), sizeof e);
      e.worker = static_cast<int>(r);
      e.start_us += origin - last_trace_origin_us_;
      e.end_us += origin - last_trace_origin_us_;
      events.push_back(e);
    }
    const int stage = static_cast<int>(r) % group_->stages(), replica = static_cast<int>(r) / group_->stages();
    row_names.push_back("rank " + std::to_string(r) + ": stage " + std::to_string(stage) +
                        (group_->replicas() > 1 ? " replica " + std::to_string(replica) : ""));
  }
  return events;
}

void PipelinedTraining::write_trace_files() const {
  if (flags_.trace.empty() && flags_.timeline.empty()) return;
  std::vector<std::string> rows = pipeline_->schedule().worker_names();
  std::vector<pipeline::TraceEvent> events = last_trace_;
  if (group_) {
    rows.clear();
    events = gather_trace(rows);  // every rank takes part; rank 0 writes
    if (group_->rank() != 0) return;
  }
  if (!flags_.trace.empty()) pipeline::write_chrome_trace(flags_.trace, events);
  if (!flags_.timeline.empty())
    pipeline::write_svg_timeline(flags_.timeline, events, rows,
                                 flags_.schedule + ", " + std::to_string(flags_.stages) + " stages, " +
                                     std::to_string(flags_.micro_batches * last_call_mini_batches_) +
                                     " micro-batches (measured, last call)");
}

}  // namespace minipipe::cli

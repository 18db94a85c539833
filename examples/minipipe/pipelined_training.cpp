#include "pipelined_training.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <thread>

#include "kernels/cpu/threads.h"
#include "kernels/profile.h"
#include "pipeline/pipedream.h"
#include "pipeline/simulator.h"
#include "pipeline/status.h"
#include "pipeline/token_slices.h"
#include "pipeline/trace.h"
#include "schedule_flags.h"
#include "tensor/allocator.h"

namespace minipipe::cli {

namespace {
std::vector<Device> parse_devices(const std::string& list) {
  std::vector<Device> devices;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) devices.push_back(Device::parse(item));
  return devices;
}

pipeline::TrainerOptions trainer_options(const PipelineFlags& flags, Device device, uint64_t seed,
                                         const OptimizerSetup& optimizer) {
  pipeline::TrainerOptions options;
  options.schedule = schedule_spec(flags);
  options.pipeline.recompute = pipeline::parse_recompute(flags.recompute);
  options.pipeline.stage_devices = parse_devices(flags.stage_devices);
  options.pipeline.seed = seed;
  options.pipeline.trace = !flags.untimed;
  options.pipeline.kernel_threads = flags.threads;
  options.pipeline.status_after_seconds = flags.status_after;
  options.pipeline.deferred_batch_norm = flags.deferred_batch_norm;
  options.pipeline.link = {flags.link_gbps * 1e9 / 8, flags.link_latency_us * 1e-6};
  options.partition = flags.partition;
  options.plan_stages = !flags.plan.empty();
  options.plan_token_slices = flags.token_slices == "auto";
  if (flags.token_slices.find('+') != std::string::npos) options.token_slice_lengths = pipeline::parse_token_slices(flags.token_slices);
  options.optimizer = optimizer;
  options.device = device;
  options.data_parallel = flags.data_parallel;
  options.rank_timeout_seconds = flags.rank_timeout;
  options.same_on_every_rank = flags.command_line;
  return options;
}

// A run's stages run on these devices, each once, in stage order.
std::vector<Device> distinct_devices(const pipeline::Pipeline& pipeline) {
  std::vector<Device> devices;
  for (int s = 0; s < pipeline.stages(); ++s)
    if (std::find(devices.begin(), devices.end(), pipeline.device_of(s)) == devices.end()) devices.push_back(pipeline.device_of(s));
  return devices;
}
}  // namespace

PipelinedTraining::PipelinedTraining(const nn::ModelRecipe& layers, const PipelineFlags& flags, Device device, uint64_t seed,
                                     pipeline::LossFunction loss, const Tensor& sample, const OptimizerSetup& optimizer)
    : flags_(flags),
      trainer_(layers, std::move(loss), sample, trainer_options(flags, device, seed, optimizer)),
      model_(trainer_.model()),
      devices_(distinct_devices(trainer_.pipeline())) {
  pipeline::install_status_signal(SIGUSR1);  // kill -USR1 <pid>: where is every stage?
}

int64_t PipelinedTraining::model_parameters() const {
  const pipeline::ProcessGroup* group = trainer_.process_group();
  if (!group) return model_->parameter_count();
  return std::llround(group->sum(static_cast<double>(model_->parameter_count())) / group->replicas());
}

std::vector<float> PipelinedTraining::learning_rates(int64_t first_step, int64_t count) const {
  std::vector<float> rates;
  for (int64_t i = 0; i < count; ++i) rates.push_back(trainer_.learning_rate(first_step + i));
  return rates;
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
  // Each stage's own peak (what the lessons compare across schedules); under mpirun the
  // stages other processes run have none here.
  const std::vector<int64_t>& stages = trainer_.stats().peak_bytes;
  std::string per_stage;
  for (size_t s = 0; s < stages.size(); ++s) {
    if (stages[s] == 0) continue;
    char text[48];
    std::snprintf(text, sizeof text, "%sstage %zu %.1f MiB", per_stage.empty() ? "" : ", ", s,
                  static_cast<double>(stages[s]) / (1 << 20));
    per_stage += text;
  }
  return out + (per_stage.empty() ? "" : " (" + per_stage + ")");
}

std::string PipelinedTraining::plan_text() const {
  const pipeline::Pipeline& pipeline = trainer_.pipeline();
  const pipeline::ScheduleSpec& spec = trainer_.schedule();
  std::string tied;
  for (const auto& t : pipeline.tied_parameters()) {
    tied += "tied across stages";
    for (int s : t.stages) tied += " " + std::to_string(s);
    tied += ": " + t.name + " (gradients summed before each step)\n";
  }
  const std::vector<int64_t>& slices = trainer_.token_slices();
  return pipeline.plan().str(*model_) + tied +
         (spec.replicas.empty() ? "" : "replicas per stage " + pipeline::format_replicas(spec.replicas) + "\n") +
         "schedule " + spec.name +
         (spec.virtual_stages > 1 ? " (" + std::to_string(spec.virtual_stages) + " chunks per stage)" : "") + ", " +
         std::to_string(spec.micro_batches) + " micro-batches" +
         (spec.asynchronous() ? " per update, weights " + weights_text() : "") +
         (slices.empty() ? "" : ", token slices " + pipeline::format_token_slices(slices)) + ", recompute " + flags_.recompute;
}

std::string PipelinedTraining::weights_text() const {
  return trainer_.asynchronous() ? pipeline::weight_policy_name(trainer_.schedule().weights.value_or(pipeline::WeightPolicy::Stash))
                                 : "synchronous";
}

void PipelinedTraining::log_setup(TrainingLog& log, int64_t end_step, int64_t total_steps, int64_t eval_interval) const {
  const pipeline::ScheduleSpec& spec = trainer_.schedule();
  if (const pipeline::ProcessGroup* group = trainer_.process_group())
    log.message(std::to_string(group->size()) + " processes (mpirun): " + std::to_string(group->stages()) + " stages x " +
                std::to_string(group->replicas()) + " data-parallel replicas\n" + group->rank_map());
  else if (trainer_.options().data_parallel > 1 && !trainer_.asynchronous())
    log.message(std::to_string(trainer_.options().data_parallel) + " data-parallel pipeline replicas in this process (" +
                std::to_string(spec.stages * trainer_.options().data_parallel) + " stage threads), each on its share of "
                "every mini-batch");
  if (spec.stages > 1 || !spec.replicas.empty() || spec.micro_batches > 1 || !trainer_.token_slices().empty())
    log.message(plan_text());
  if (!trainer_.planner_note().empty()) log.message(trainer_.planner_note());
  const bool drains_at_end = end_step % trainer_.drain_every() == 0 || end_step % eval_interval == 0;  // an uninterrupted run
  if (trainer_.asynchronous() && end_step < total_steps && !drains_at_end)
    log.message("note: pipedream drains the pipeline to stop at step " + std::to_string(end_step) +
                ", where an uninterrupted run would not: resumed, this run's losses will differ slightly from one never "
                "stopped (stop at an evaluation step for an exact resume)");
  if (flags_.threads > 1 && !kernels::cpu::kernel_threads_supported())
    log.message("note: this build has no OpenMP, so every stage runs on one thread whatever --threads says");
  const pipeline::Pipeline& pipeline = trainer_.pipeline();
  int threads = 0;  // a thread per stage, --threads per stage on the CPU
  for (int s = 0; s < pipeline.stages(); ++s) threads += pipeline.replicas(s) * (pipeline.device_of(s).is_cpu() ? flags_.threads : 1);
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores > 0 && threads > static_cast<int>(cores))
    log.message("note: the stages want " + std::to_string(threads) + " threads and this machine has " +
                std::to_string(cores) + " hardware threads: they will take turns, and times will say little (lower " +
                (flags_.threads > 1 ? "--threads or " : "") + "--stages" +
                (flags_.threads > 1 ? "; OMP_WAIT_POLICY=passive keeps waiting kernel threads off the cores" : "") + ")");
}

std::string PipelinedTraining::ranks_json() const {
  const pipeline::ProcessGroup& group = *trainer_.process_group();
  const pipeline::TrainingStats& stats = trainer_.stats();
  const double steps = static_cast<double>(std::max<int64_t>(1, stats.mini_batches));
  auto per_step = [steps](int64_t bytes) { return static_cast<int64_t>(std::llround(static_cast<double>(bytes) / steps)); };
  const pipeline::Schedule& schedule = trainer_.pipeline().schedule();
  std::vector<int64_t> pieces;
  for (int piece = 0; piece < schedule.pieces(); ++piece)
    if (schedule.stage_of_piece(piece) == group.stage()) pieces.push_back(piece);
  const JsonObject sent = JsonObject()
                              .add("activations", per_step(stats.sent_bytes.activations))
                              .add("gradients", per_step(stats.sent_bytes.gradients))
                              .add("replica_gradients", per_step(stats.sent_bytes.replica_gradients))
                              .add("tied_gradients", per_step(stats.sent_bytes.tied_gradients))
                              .add("scalars", per_step(stats.sent_bytes.scalars));
  const JsonObject mine = JsonObject()
                              .add("rank", static_cast<int64_t>(group.rank()))
                              .add_raw("stages", json_list(pieces))
                              .add("parameters", model_->parameter_count())
                              .add("peak_bytes", memory_stats(devices_.front()).peak_bytes)
                              .add_raw("sent_bytes_per_step", sent.str());
  std::string out = "[";
  for (const std::string& rank : group.gather_to_rank_zero(mine.str())) out += (out.size() > 1 ? "," : "") + rank;
  return out + "]";
}

std::vector<float> PipelinedTraining::train(const std::vector<datasets::Batch>& batches, int64_t first_step) {
  struct Profiling {  // on for the steps only, whichever way train() returns
    explicit Profiling(bool on) { kernels::set_profiling(on); }
    ~Profiling() { kernels::set_profiling(false); }
  } profiling(flags_.profile);
  return trainer_.train(batches, first_step);
}

std::string PipelinedTraining::profile_text() const {
  if (!flags_.profile) return "";
  const std::vector<kernels::KernelTime> times = kernels::kernel_profile();
  const double steps = static_cast<double>(std::max<int64_t>(1, trainer_.stats().mini_batches));
  double total = 0;
  for (const kernels::KernelTime& t : times) total += t.seconds;
  char line[400];
  std::snprintf(line, sizeof line, "kernel profile of %lld steps: %.1f ms of kernels per step (every stage thread's "
                "added up), %.1f ms per step wall time\n  %-12s %-30s %9s %10s %6s",
                static_cast<long long>(steps), 1e3 * total / steps,
                1e3 * trainer_.stats().seconds / steps, "phase", "kernel", "calls/step", "ms/step", "share");
  std::string text = line;
  for (const kernels::KernelTime& t : times) {
    if (1e3 * t.seconds / steps < 0.005) continue;  // bookkeeping entries (synchronize, marks): nothing on the CPU
    std::snprintf(line, sizeof line, "\n  %-12s %-30s %9.1f %10.2f %5.1f%%", t.phase.c_str(), t.kernel.c_str(),
                  static_cast<double>(t.calls) / steps, 1e3 * t.seconds / steps, total > 0 ? 100 * t.seconds / total : 0.0);
    text += line;
  }
  return text;
}

JsonObject PipelinedTraining::summary() const {
  const pipeline::ScheduleSpec& spec = trainer_.schedule();
  const pipeline::TrainingStats& stats = trainer_.stats();
  const std::vector<int64_t>& slices = trainer_.token_slices();
  const auto& per_stage = trainer_.pipeline().plan().layers_per_stage;
  return JsonObject()
      .add("stages", static_cast<int64_t>(spec.stages))
      .add_raw("replicas_per_stage", json_list(std::vector<int64_t>(spec.replicas.begin(), spec.replicas.end())))
      .add("micro_batches", static_cast<int64_t>(spec.micro_batches))
      .add("schedule", spec.name)
      .add("schedule_file", spec.file)
      .add("virtual_stages", static_cast<int64_t>(trainer_.pipeline().schedule().virtual_stages))  // a V's 2 too
      .add("weights", weights_text())
      .add("recompute", flags_.recompute)
      .add_raw("token_slices", json_list(slices))
      .add("threads_per_stage", static_cast<int64_t>(flags_.threads))
      .add_raw("layers_per_stage", json_list(std::vector<int64_t>(per_stage.begin(), per_stage.end())))
      .add_raw("measured_bubble_fraction", trainer_.measures_bubble() ? std::to_string(stats.mean_bubble()) : "null")
      // PipeDream fills and drains once per call of train(), not once per mini-batch; token
      // slices are units of work like micro-batches.
      .add("theoretical_bubble_fraction",
           pipeline::theoretical_bubble_fraction(
               spec.stages,
               spec.micro_batches * static_cast<int>(stats.last_call_mini_batches) * std::max<int>(1, static_cast<int>(slices.size())),
               trainer_.pipeline().schedule().virtual_stages))
      .add_raw("peak_bytes_per_stage", json_list(stats.peak_bytes))
      .add_raw("peak_weight_versions_per_stage", json_list(stats.peak_weight_versions))
      .add_raw("peak_stash_bytes_per_stage", json_list(stats.peak_stash_bytes))
      .add("measured_seconds_per_mini_batch", stats.mini_batches ? stats.seconds / static_cast<double>(stats.mini_batches) : 0.0)
      .add("planned_seconds_per_mini_batch", trainer_.planned_seconds_per_mini_batch())
      .add_raw("kernel_profile", kernel_profile_json());
}

// Under --profile, [{"phase", "kernel", "calls", "seconds"}, ...] of the steps, the largest first; else null.
std::string PipelinedTraining::kernel_profile_json() const {
  if (!flags_.profile) return "null";
  std::string out = "[";
  for (const kernels::KernelTime& t : kernels::kernel_profile())
    out += (out.size() > 1 ? "," : "") + JsonObject().add("phase", t.phase).add("kernel", t.kernel).add("calls", t.calls)
                                              .add("seconds", t.seconds).str();
  return out + "]";
}

void PipelinedTraining::write_trace_files() const {
  if (flags_.trace.empty() && flags_.timeline.empty()) return;
  std::vector<std::string> rows;
  const std::vector<pipeline::TraceEvent> events = trainer_.gathered_trace(rows);  // under mpirun every rank takes part
  if (trainer_.process_group() && trainer_.process_group()->rank() != 0) return;  // and rank 0 writes
  const pipeline::ScheduleSpec& spec = trainer_.schedule();
  if (!flags_.trace.empty()) pipeline::write_chrome_trace(flags_.trace, events);
  if (!flags_.timeline.empty())
    pipeline::write_svg_timeline(flags_.timeline, events, rows,
                                 spec.name + ", " + std::to_string(spec.stages) + " stages, " +
                                     std::to_string(spec.micro_batches * trainer_.stats().last_call_mini_batches) +
                                     " micro-batches (measured, last call)");
}

}  // namespace minipipe::cli

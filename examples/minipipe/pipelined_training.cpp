#include "pipelined_training.h"

#include <algorithm>
#include <sstream>
#include <thread>

#include "kernels/cpu/threads.h"
#include "pipeline/simulator.h"
#include "tensor/allocator.h"

namespace minipipe::cli {

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
                                     uint64_t seed, pipeline::LossFunction loss, const Tensor& sample)
    : model_(std::move(model)), flags_(flags) {
  pipeline::StagePlan plan = pipeline::make_partition(*model_, flags.stages, flags.partition, sample);
  pipeline::PipelineOptions options{flags.micro_batches, flags.schedule, pipeline::parse_recompute(flags.recompute),
                                    parse_devices(flags.stage_devices, flags.stages, device), seed, true,
                                    flags.threads};
  for (const Device& d : options.stage_devices)
    if (std::find(devices_.begin(), devices_.end(), d) == devices_.end()) devices_.push_back(d);
  pipeline_ = std::make_unique<pipeline::Pipeline>(model_, std::move(plan), options, std::move(loss));
  peak_bytes_.assign(flags.stages, 0);
}

float PipelinedTraining::step(const datasets::Batch& batch, int64_t step) {
  pipeline::StepResult result = pipeline_->run(batch, static_cast<uint64_t>(step));
  for (size_t s = 0; s < peak_bytes_.size(); ++s) peak_bytes_[s] = std::max(peak_bytes_[s], result.peak_bytes[s]);
  bubble_sum_ += pipeline::summarize(result.trace, pipeline_->stages()).bubble_fraction;
  ++steps_;
  last_trace_ = std::move(result.trace);
  return result.loss;
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
  return pipeline_->plan().str(*model_) + "schedule " + flags_.schedule + ", " + std::to_string(flags_.micro_batches) +
         " micro-batches, recompute " + flags_.recompute;
}

void PipelinedTraining::log_setup(TrainingLog& log) const {
  if (flags_.stages > 1 || flags_.micro_batches > 1) log.message(plan_text());
  if (flags_.threads > 1 && !kernels::cpu::kernel_threads_supported())
    log.message("note: this build has no OpenMP, so every stage runs on one thread whatever --threads says");
  int threads = 0;  // a thread per stage, --threads per stage on the CPU
  for (int s = 0; s < pipeline_->stages(); ++s) threads += pipeline_->device_of(s).is_cpu() ? flags_.threads : 1;
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
      .add("micro_batches", static_cast<int64_t>(flags_.micro_batches))
      .add("schedule", flags_.schedule)
      .add("recompute", flags_.recompute)
      .add("threads_per_stage", static_cast<int64_t>(flags_.threads))
      .add_raw("layers_per_stage", json_list(layers))
      .add("measured_bubble_fraction", steps_ ? bubble_sum_ / static_cast<double>(steps_) : 0.0)
      .add("theoretical_bubble_fraction", pipeline::theoretical_bubble_fraction(flags_.stages, flags_.micro_batches))
      .add_raw("peak_bytes_per_stage", json_list(peak_bytes_));
}

void PipelinedTraining::write_trace_files() const {
  if (!flags_.trace.empty()) pipeline::write_chrome_trace(flags_.trace, last_trace_);
  if (!flags_.timeline.empty())
    pipeline::write_svg_timeline(flags_.timeline, last_trace_, flags_.stages,
                                 flags_.schedule + ", " + std::to_string(flags_.stages) + " stages, " +
                                     std::to_string(flags_.micro_batches) + " micro-batches (measured, last step)");
}

}  // namespace minipipe::cli

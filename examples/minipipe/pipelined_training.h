#pragma once
// The training commands run every step through a pipeline::Pipeline (one stage and one
// micro-batch by default, which is plain training). This wraps it with what they report:
// measured bubble, per-stage peak bytes, and the trace and timeline of the last step.
#include <memory>

#include "commands.h"
#include "pipeline/executor.h"
#include "training_log.h"

namespace minipipe::cli {

class PipelinedTraining {
 public:
  PipelinedTraining(std::shared_ptr<nn::Sequential> model, const PipelineFlags& flags, Device device, uint64_t seed,
                    pipeline::LossFunction loss, const Tensor& sample_micro_batch);
  float step(const datasets::Batch& batch, int64_t step);  // returns the mini-batch loss
  // The model's forward with the stages on their devices (evaluation, sampling).
  Tensor forward(const Tensor& x) const { return pipeline_->forward(x); }
  std::string plan_text() const;
  // The plan when there is more than one stage or micro-batch, and a note when the stages'
  // threads outnumber the cores (or --threads cannot be honoured).
  void log_setup(TrainingLog& log) const;
  // Memory on every device the stages use (--device, or each of --stage-devices once).
  void reset_peak_memory() const;
  std::string peak_memory_json() const;  // {"cpu": bytes, "cuda:0": bytes}
  std::string peak_memory_text() const;  // "6 MiB on cpu, 3 MiB on cuda:0"
  JsonObject summary() const;  // the "pipeline" object of the summary line
  void write_trace_files() const;

 private:
  std::shared_ptr<nn::Sequential> model_;
  PipelineFlags flags_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
  std::vector<Device> devices_;  // distinct, in stage order
  std::vector<int64_t> peak_bytes_;
  std::vector<pipeline::TraceEvent> last_trace_;
  double bubble_sum_ = 0;
  int64_t steps_ = 0;
};

}  // namespace minipipe::cli

#pragma once
// A run's `--log-json` file read back, for `minipipe explain` and `minipipe report`: the step
// and validation losses, and the summary line's pipeline.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "nn/json_reader.h"
#include "pipeline/schedule_spec.h"

namespace minipipe::cli {

struct RunLog {
  std::vector<std::pair<int64_t, double>> losses;             // (step, training loss)
  std::vector<std::pair<int64_t, double>> validation_losses;  // (step, validation loss)
  std::vector<double> throughputs;  // per step: tokens/s (GPT) or samples/s (CNN)
  std::string throughput_unit;      // "tokens/s" or "samples/s" (empty: the steps logged none)
  nn::JsonValue summary;                                      // the last summary line
  // The pipeline, from the summary (one stage and micro-batch when it has none).
  std::string schedule = "none";
  std::string schedule_file;  // a run of `--schedule-file`: the file
  int stages = 1, micro_batches = 1, virtual_stages = 1, token_slices = 1;
  bool asynchronous = false;
  // The bubble by formula, as the run worked it out: (K-1)/(vMS+K-1) for a synchronous step;
  // PipeDream fills and drains once per streamed call, not once per mini-batch.
  double formula_bubble = 0;
  // The synchronous schedule it ran, for the simulator to replay (not for "none").
  pipeline::ScheduleSpec schedule_spec() const;
};
// The formula behind RunLog::formula_bubble, as explain and report print it.
const char* bubble_formula(const RunLog& run);
// A trace's rows as explain and report name them: "stage s" when there is one per stage,
// else "worker w" (replicated stages).
std::vector<std::string> worker_names(const RunLog& run, int workers);

// Throws, naming the file, when it cannot be read or has no summary line (the run did not finish).
RunLog read_run_log(const std::string& path);

// The summary's value at `key`, then `more` keys down, or null (a JsonValue of kind Null).
const nn::JsonValue& summary_field(const RunLog& log, std::initializer_list<const char*> keys);

}  // namespace minipipe::cli

#pragma once
// A schedule by its parameters: the one description that the command line's train and
// simulate, the run logs that report and explain read, the Trainer and the Pipeline all build
// their schedule from. check() holds every rule on which parameters combine, and
// build_schedule() is the one factory; the generators behind it are in schedule.h and
// pipedream.h.
#include <optional>
#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

struct ScheduleSpec {
  std::string name = "gpipe";  // one of schedule_names()
  int stages = 1;
  int micro_batches = 1;   // per mini-batch; pipedream: per update
  int virtual_stages = 1;  // interleaved: model chunks per stage
  int token_slices = 1;    // TeraPipe: slices per sequence (synchronous schedules)
  // pipedream only: which weights a backward uses (unset: stash), replicas per stage (empty:
  // one each), and how many mini-batches one run streams.
  std::optional<WeightPolicy> weights;
  std::vector<int> replicas;
  int mini_batches = 1;
  // zb-auto (zb_auto.h): each stage's measured costs (forward, backward, and the backward's
  // W part), which the Trainer measures when they are not given, and the most micro-batches in
  // flight per stage (0: K).
  std::optional<CostModel> costs;
  int max_in_flight = 0;
  // A PyTorch schedule file (schedule_csv.h) to run instead of a generated schedule; its rows
  // give the stages, micro-batches, virtual stages and placement (from_file fills them in).
  std::string file;

  static ScheduleSpec from_file(const std::string& path);
  bool asynchronous() const { return name == "pipedream"; }
  // What the plan must cut the model into: the V schedules hold 2 chunks per stage.
  int pieces() const { return stages * (is_v_schedule(name) ? 2 : virtual_stages); }
  // Throws std::invalid_argument naming the parameters that do not combine, by their
  // command-line flags (--schedule, --virtual-stages, ...), and what to change.
  void check() const;
};

// check(), then the schedule from its generator, validated (validator.h).
Schedule build_schedule(const ScheduleSpec& spec);

}  // namespace minipipe::pipeline

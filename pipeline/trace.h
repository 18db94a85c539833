#pragma once
// Timelines of pipeline runs, measured or simulated (DESIGN.md decision 7): per worker (a
// stage, or one replica of a replicated stage) and instruction, when it ran and how many
// bytes the worker held afterwards. Written as
// Chrome-trace JSON (opens in Perfetto or chrome://tracing) and as an SVG picture.
#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

struct TraceEvent {
  int worker;  // the stage, unless stages are replicated (Schedule::stage_of)
  Instruction instruction;
  double start_us, end_us;  // since the start of the run
  int64_t bytes = 0;        // the worker's tracked bytes when the instruction ended
};

struct TraceSummary {
  double makespan_us = 0;
  double bubble_fraction = 0;  // idle time / total worker time: 1 - compute / (workers * makespan)
};
TraceSummary summarize(const std::vector<TraceEvent>& events, int workers);

// Simulated timelines in the same form (one cost unit = one microsecond).
std::vector<TraceEvent> to_trace(const SimulationResult& simulated);

void write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events);
// One row per worker, labelled with its name (Schedule::worker_names).
void write_svg_timeline(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& worker_names, const std::string& title);

}  // namespace minipipe::pipeline

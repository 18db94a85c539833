#pragma once
// Charts of what the simulator computes, as SVG line charts (`minipipe simulate`):
//
// - the bubble against M, schedule by schedule: the picture behind GPipe's (K - 1) / (M + K - 1)
//   and every later schedule's claim to shrink it. Each point is the simulator's bubble for
//   that schedule at that M with the same per-stage costs (a chunk of v costs 1/v of them), so
//   the chart and `minipipe simulate` cannot disagree;
// - per stage over time, what the schedule makes it hold: the activations of micro-batches in
//   flight (GPipe all M, 1F1B K - s) and, under PipeDream, the copies of its weights (section
//   3.3: stage s of K keeps up to K - s).
#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"
#include "pipeline/trace.h"

namespace minipipe::pipeline {

struct BubbleCurve {
  std::string schedule;
  int virtual_stages = 1;
  std::vector<int> micro_batches;  // the M the schedule accepts (interleaved: multiples of K)
  std::vector<double> bubbles;     // simulated bubble fraction at each
};

// M = 1 .. max_micro_batches for each named synchronous schedule (interleaved with 2 chunks).
std::vector<BubbleCurve> bubble_curves(const std::vector<std::string>& schedules, int stages, int max_micro_batches,
                                       double forward_cost, double backward_cost);

// A line chart of the curves (bubble fraction against M), with GPipe's formula dashed under
// them and a legend; each point carries its value in a <title>.
std::string bubble_chart_svg(const std::vector<BubbleCurve>& curves, int stages);

// A value per worker that changes at instants: (time, value from then on).
struct StairStep {
  double time;
  double value;
};
using Staircase = std::vector<StairStep>;

// Weight versions each worker holds, starting at (0, 1) and changing at the end of each
// weight instruction or update, replayed from the timeline with the executor's
// WeightVersionState (several at one instant count as the last of them).
std::vector<Staircase> weight_versions_over_time(const Schedule& schedule, const SimulationResult& result);
// Units (micro-batches, or their chunks or token slices) whose activations each worker holds:
// +1 at the end of a forward, -1 at the end of the backward that frees them (in_flight_change).
std::vector<Staircase> in_flight_over_time(const Schedule& schedule, const SimulationResult& result);

// MiB each worker's thread held over a traced step, as measured: after
// each instruction, from the trace's `bytes`; time in ms from the step's first instruction.
// Each series starts when its worker's first instruction ends.
std::vector<Staircase> memory_over_time(const std::vector<TraceEvent>& events, int workers);

// One staircase per worker over [0, makespan], drawn a little apart so equal ones stay
// visible, with `value_label` on the vertical axis and `time_label` under the horizontal.
std::string staircase_svg(const std::vector<Staircase>& series, const std::vector<std::string>& worker_names,
                          double makespan, const std::string& title, const std::string& value_label,
                          const std::string& time_label = "time (cost units)");

// Writes a chart to `path`; throws naming the path when it cannot.
void write_chart(const std::string& path, const std::string& svg);

}  // namespace minipipe::pipeline

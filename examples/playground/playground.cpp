// The course's playground (docs/course/playground.html): minipipe's own schedule generators,
// validator and simulator compiled to WebAssembly by scripts/build-playground.sh, behind one C
// function that the page's sliders call. It answers what `minipipe simulate` would print for
// the same settings, as JSON, with the pictures the command draws.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "pipeline/charts.h"
#include "pipeline/simulate_spec.h"
#include "pipeline/trace.h"
#include "pipeline/validator.h"

namespace {

using namespace minipipe::pipeline;

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += {'\\', c};
    else if (c == '\n') out += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.10g", value);
  return text;
}

std::string list(const std::vector<int>& values) {
  std::string out = "[";
  for (const int v : values) out += (out.size() > 1 ? "," : "") + std::to_string(v);
  return out + "]";
}

std::string simulate_to_json(const ScheduleSpec& spec, const UniformCosts& costs) {
  const SimulatedSpec run = simulate_spec(spec, costs);
  const Schedule& schedule = run.schedule;
  const std::string shape = std::to_string(spec.stages) + " stages, " + std::to_string(spec.micro_batches) +
                            " micro-batches" +
                            (spec.token_slices > 1 ? " x " + std::to_string(spec.token_slices) + " slices" : "");
  const std::string timeline =
      timeline_svg(to_trace(run.result), schedule.worker_names(), spec.name + ", " + shape, TimeAxis::CostUnits);
  const std::string memory =
      staircase_svg(in_flight_over_time(schedule, run.result), schedule.worker_names(), run.result.makespan,
                    "activations each stage holds", schedule.virtual_stages > 1 ? "chunk units in flight" : "units in flight");
  return "{\"ok\":true,\"bubble_fraction\":" + number(run.result.bubble_fraction) +
         ",\"formula_bubble\":" + number(run.formula_bubble) + ",\"formula\":" + quoted(run.formula) +
         ",\"makespan\":" + number(run.result.makespan) + ",\"peak_in_flight\":" + list(run.result.peak_in_flight) +
         ",\"messages_per_unit\":" + number(messages_per_unit(schedule)) + ",\"grid\":" + quoted(format_grid(schedule)) +
         ",\"timeline_svg\":" + quoted(timeline) + ",\"memory_svg\":" + quoted(memory) + "}";
}

}  // namespace

extern "C" {

// The synchronous schedules' names, comma-separated, in schedule_names()'s order.
const char* playground_schedules() {
  static std::string names;
  if (names.empty())
    for (const ScheduleName& s : schedule_names())
      if (std::string(s.name) != "pipedream") names += (names.empty() ? "" : ",") + std::string(s.name);
  return names.c_str();
}

// One simulation; the text stays valid until the next call. Parameters that do not combine
// answer {"ok":false,"error":...} with the message the command line would give.
const char* playground_simulate(const char* schedule, int stages, int micro_batches, int virtual_stages,
                                int token_slices, double forward, double backward, double weight, double message) {
  static std::string answer;
  try {
    ScheduleSpec spec;
    spec.name = schedule;
    spec.stages = stages;
    spec.micro_batches = micro_batches;
    spec.virtual_stages = virtual_stages;
    spec.token_slices = token_slices;
    answer = simulate_to_json(spec, {.forward = forward, .backward = backward, .weight = weight, .communication = message});
  } catch (const std::exception& e) {
    answer = "{\"ok\":false,\"error\":" + quoted(e.what()) + "}";
  }
  return answer.c_str();
}

}  // extern "C"

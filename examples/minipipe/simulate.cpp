// `minipipe simulate` and `minipipe partition`: schedules and partitions without training.
#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "commands.h"
#include "nn/convolutional.h"
#include "nn/transformer.h"
#include "pipeline/charts.h"
#include "pipeline/partition.h"
#include "pipeline/pipedream.h"
#include "pipeline/planner.h"
#include "pipeline/prediction.h"
#include "pipeline/schedule_csv.h"
#include "pipeline/simulate_spec.h"
#include "pipeline/trace.h"
#include "pipeline/validator.h"
#include "schedule_flags.h"
#include "tensor/factories.h"
#include "training_log.h"

namespace minipipe::cli {

namespace {

// `simulate --compare TRACE`: the schedule costed from the trace's own per-stage medians,
// predicted against measured, step time, bubble and every compute instruction.
int compare_with_trace(const SimulateOptions& o, const pipeline::Schedule& schedule) {
  const std::vector<pipeline::TraceEvent> measured = pipeline::read_chrome_trace(o.compare);
  const pipeline::CostModel costs = pipeline::costs_from_trace(measured, schedule, o.communication_cost);
  const std::vector<pipeline::TraceEvent> predicted = pipeline::to_trace(pipeline::simulate(schedule, costs));
  const std::vector<pipeline::InstructionTimes> times = pipeline::match_instructions(measured, predicted);
  const pipeline::TraceSummary was = pipeline::summarize(measured, schedule.workers()),
                               would = pipeline::summarize(predicted, schedule.workers());
  const double step_error = was.makespan_us > 0 ? would.makespan_us / was.makespan_us - 1 : 0;
  if (!o.timeline.empty())
    pipeline::write_svg_comparison(o.timeline, measured, predicted, schedule.worker_names(),
                                   schedule.name + ", " + std::to_string(schedule.stages) + " stages, " + std::to_string(schedule.micro_batches) +
                                       " micro-batches: measured and predicted");
  if (o.json) {
    std::string instructions = "[";
    for (const pipeline::InstructionTimes& t : times)
      instructions += (instructions.size() > 1 ? "," : "") +
                      JsonObject().add("worker", static_cast<int64_t>(t.worker)).add("op", std::string(pipeline::op_name(t.instruction.op)))
                          .add("micro_batch", static_cast<int64_t>(t.instruction.micro_batch))
                          .add("slice", static_cast<int64_t>(t.instruction.slice))
                          .add("measured_start_ms", t.measured_start_us / 1e3).add("measured_end_ms", t.measured_end_us / 1e3)
                          .add("predicted_start_ms", t.predicted_start_us / 1e3).add("predicted_end_ms", t.predicted_end_us / 1e3)
                          .str();
    std::printf("%s\n", JsonObject().add("schedule", schedule.name).add("stages", static_cast<int64_t>(schedule.stages))
                            .add("micro_batches", static_cast<int64_t>(schedule.micro_batches))
                            .add("measured_step_ms", was.makespan_us / 1e3).add("predicted_step_ms", would.makespan_us / 1e3)
                            .add("measured_bubble_fraction", was.bubble_fraction).add("predicted_bubble_fraction", would.bubble_fraction)
                            .add_raw("instructions", instructions + "]").str().c_str());
    return 0;
  }
  std::printf("%s, %d stages, %d micro-batches, predicted from the trace's per-stage median times:\n", schedule.name.c_str(),
              schedule.stages, schedule.micro_batches);
  for (int s = 0; s < schedule.stages; ++s)
    std::printf("  stage %d: forward %.3f ms, backward %.3f ms\n", s, costs.forward[s] / 1e3, costs.backward[s] / 1e3);
  std::printf("\n%-12s %12s %12s %9s\n", "", "measured", "predicted", "error");
  std::printf("%-12s %9.3f ms %9.3f ms %+8.1f%%\n", "step time", was.makespan_us / 1e3, would.makespan_us / 1e3, 100 * step_error);
  std::printf("%-12s %12.3f %12.3f %+9.3f\n", "bubble", was.bubble_fraction, would.bubble_fraction,
              would.bubble_fraction - was.bubble_fraction);
  std::printf("\nevery compute instruction, in ms from the step's start:\n%-10s %-8s %17s %17s %10s\n", "worker", "", "measured",
              "predicted", "end error");
  for (const pipeline::InstructionTimes& t : times) {
    const pipeline::Instruction& i = t.instruction;
    const std::string name = pipeline::compute_letter(i.op) + pipeline::unit_label(i, schedule);
    std::printf("%-10s %-8s %7.3f - %7.3f %7.3f - %7.3f %+9.3f\n", schedule.worker_name(t.worker).c_str(), name.c_str(),
                t.measured_start_us / 1e3, t.measured_end_us / 1e3, t.predicted_start_us / 1e3, t.predicted_end_us / 1e3,
                (t.predicted_end_us - t.measured_end_us) / 1e3);
  }
  return 0;
}

// The bubble against M for the synchronous schedules, as a table and a chart.
int bubble_chart(const SimulateOptions& o) {
  const std::vector<std::string> names{"gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2", "zb-v"};
  const std::vector<pipeline::BubbleCurve> curves =
      pipeline::bubble_curves(names, o.stages, o.micro_batches, o.forward_cost, o.backward_cost);
  std::printf("bubble fraction, K = %d, F = %g, B = %g (interleaved and zb-v: 2 chunks per stage)\n%4s", o.stages,
              o.forward_cost, o.backward_cost, "M");
  for (const std::string& name : names) std::printf(" %12s", name.c_str());
  std::printf(" %14s\n", "(K-1)/(M+K-1)");
  for (int m = 1; m <= o.micro_batches; ++m) {
    std::printf("%4d", m);
    for (const pipeline::BubbleCurve& c : curves) {
      const auto at = std::find(c.micro_batches.begin(), c.micro_batches.end(), m);
      if (at == c.micro_batches.end()) std::printf(" %12s", "-");
      else std::printf(" %12.4f", c.bubbles[static_cast<size_t>(at - c.micro_batches.begin())]);
    }
    std::printf(" %14.4f\n", pipeline::theoretical_bubble_fraction(o.stages, m));
  }
  pipeline::write_chart(o.bubble_chart, pipeline::bubble_chart_svg(curves, o.stages));
  std::printf("chart written to %s\n", o.bubble_chart.c_str());
  return 0;
}

// A count per stage over time (weight versions, activations in flight) as an SVG chart.
void write_staircases(const std::string& path, const pipeline::Schedule& schedule, const pipeline::SimulationResult& result,
                      const std::vector<pipeline::Staircase>& series, const std::string& title, const std::string& label) {
  pipeline::write_chart(path, pipeline::staircase_svg(series, schedule.worker_names(), result.makespan,
                                                     title + " (simulated)", label));
}

}  // namespace

int simulate(const SimulateOptions& o) {
  if (!o.bubble_chart.empty()) return bubble_chart(o);
  const pipeline::ScheduleSpec spec = schedule_spec(o);
  const bool zb_auto = spec.name == "zb-auto";
  const bool pipedream = spec.asynchronous();
  if (!o.versions_chart.empty() && !pipedream)
    throw std::invalid_argument("--versions-chart: a synchronous schedule keeps one weight version throughout; "
                                "chart pipedream's (--schedule pipedream)");
  const std::string weights = pipeline::weight_policy_name(spec.weights.value_or(pipeline::WeightPolicy::Stash));
  const pipeline::UniformCosts uniform{.forward = o.forward_cost, .backward = o.backward_cost, .weight = o.weight_cost,
                                       .communication = o.communication_cost};
  if (!o.export_schedule.empty() || !o.compare.empty()) {
    const pipeline::Schedule schedule = pipeline::build_schedule(spec);
    if (!o.export_schedule.empty()) pipeline::write_schedule_file(o.export_schedule, schedule);
    if (!o.compare.empty()) return compare_with_trace(o, schedule);
  }
  const pipeline::SimulatedSpec simulated = pipeline::simulate_spec(spec, uniform);
  const pipeline::Schedule& schedule = simulated.schedule;
  const pipeline::CostModel& costs = simulated.costs;
  const pipeline::SimulationResult& result = simulated.result;
  const double theory = simulated.formula_bubble;
  const std::string shape = std::to_string(spec.micro_batches) + " micro-batches" +
                            (spec.token_slices > 1 ? " x " + std::to_string(spec.token_slices) + " token slices" : "") +
                            (pipedream ? " per mini-batch, " + std::to_string(o.mini_batches) + " mini-batches streamed, weights " +
                                             weights
                                       : "") +
                            (schedule.replicated() ? ", replicas " + pipeline::format_replicas(schedule.replicas) : "");
  const std::string in_flight = json_list(result.peak_in_flight), versions = json_list(result.peak_weight_versions);
  const double messages = pipeline::messages_per_unit(schedule);
  if (o.json) {
    std::printf("%s\n", JsonObject().add("schedule", spec.name).add("stages", static_cast<int64_t>(spec.stages))
                            .add("micro_batches", static_cast<int64_t>(spec.micro_batches))
                            .add("token_slices", static_cast<int64_t>(spec.token_slices))
                            .add("mini_batches", static_cast<int64_t>(pipedream ? o.mini_batches : 1))
                            .add("weights", pipedream ? weights : std::string("synchronous"))
                            .add_raw("replicas", json_list(std::vector<int64_t>(schedule.replicas.begin(), schedule.replicas.end())))
                            .add("forward_cost", o.forward_cost)
                            .add("backward_cost", o.backward_cost).add("weight_cost", uniform.weight_part())
                            .add("communication_cost", o.communication_cost)
                            .add("makespan", result.makespan)
                            .add("bubble_fraction", result.bubble_fraction).add("theoretical_bubble_fraction", theory)
                            .add_raw("peak_in_flight", in_flight).add_raw("peak_weight_versions", versions)
                            .add("messages_per_unit", messages).str().c_str());
  } else {
    if (o.grid) std::printf("%s\n", pipeline::format_grid(schedule).c_str());
    std::printf("%s, %d stages, %s, forward %g, backward %g, message %g\n", spec.name.c_str(), spec.stages, shape.c_str(),
                o.forward_cost, o.backward_cost, o.communication_cost);
    std::printf("  makespan             %g\n", result.makespan);
    std::printf("  bubble fraction      %.4f  (%s = %.4f%s)\n", result.bubble_fraction, simulated.formula.c_str(), theory,
                simulated.formula_terms.c_str());
    const char* per = schedule.replicated() ? "per worker (stage by stage, replica by replica)" : "per stage";
    std::printf("  peak in flight       %s %s %s\n", in_flight.c_str(),
                spec.token_slices > 1        ? "(micro-batch, slice) units"
                : schedule.virtual_stages > 1 ? "(micro-batch, chunk) units, a chunk's share of a stage's activations each"
                                              : "micro-batches",
                per);
    if (pipedream) std::printf("  weight versions held %s %s at most\n", versions.c_str(), per);
    std::printf("  messages             %g per %s (activations and gradients between stages)\n", messages,
                spec.token_slices > 1 ? "(micro-batch, slice) unit" : "micro-batch");
    if (zb_auto) {
      const pipeline::SimulationResult h1 =
          pipeline::simulate(pipeline::make_schedule("zb-h1", spec.stages, spec.micro_batches), costs);
      std::printf("  zb-h1 on these costs makespan %g, bubble fraction %.4f\n", h1.makespan, h1.bubble_fraction);
    }
  }
  const std::vector<pipeline::TraceEvent> events = pipeline::to_trace(result);
  if (!o.trace.empty()) pipeline::write_chrome_trace(o.trace, events);
  if (!o.timeline.empty())
    pipeline::write_svg_timeline(o.timeline, events, schedule.worker_names(),
                                 spec.name + ", " + std::to_string(spec.stages) + " stages, " + shape + " (simulated)",
                                 pipeline::TimeAxis::CostUnits);
  if (!o.versions_chart.empty())
    write_staircases(o.versions_chart, schedule, result, pipeline::weight_versions_over_time(schedule, result),
                     "weight versions each stage holds, " + spec.name + ", weights " + weights, "versions held");
  if (!o.memory_chart.empty())
    write_staircases(o.memory_chart, schedule, result, pipeline::in_flight_over_time(schedule, result),
                     "activations each stage holds, " + spec.name + ", " + std::to_string(spec.stages) + " stages, " + shape,
                     schedule.virtual_stages > 1 ? "chunk units in flight" : "micro-batches in flight");
  return 0;
}

namespace {

// The model `partition` and `plan` cut, with an input of `batch_size` samples to profile.
std::pair<std::shared_ptr<nn::Sequential>, Tensor> example_model(const std::string& name, int64_t batch_size) {
  Generator g(0);
  if (name == "gpt") return {nn::make_gpt({}), randint(0, 256, {batch_size, 128}, g)};
  if (name == "cnn") return {nn::make_resnet({.in_channels = 1, .stages = 2}), rand({batch_size, 1, 8, 8}, g)};
  throw std::invalid_argument("unknown model '" + name + "': use gpt or cnn");
}

}  // namespace

int partition(const PartitionOptions& o) {
  auto [model, sample] = example_model(o.model, o.batch_size);
  std::printf("%s", pipeline::make_partition(*model, o.stages, o.method, sample).str(*model).c_str());
  return 0;
}

int plan(const PlanOptions& o) {
  auto [model, sample] = example_model(o.model, o.batch_size);
  const std::vector<pipeline::LayerProfile> layers = pipeline::profile_layers(*model, sample, 5);
  const pipeline::PlannerOptions options{o.workers, {o.bandwidth_gb_per_second * 1e9, o.latency_us * 1e-6},
                                         o.memory_mib << 20, o.most_replicas};
  const pipeline::PipelinePlan chosen = pipeline::plan_pipeline(layers, options);
  double total = 0;
  for (const pipeline::LayerProfile& l : layers) total += l.forward_seconds + l.backward_seconds;
  std::printf("%s: %zu layers profiled on mini-batches of %lld (forward + backward %.3f ms on one worker); %d workers, "
              "links of %g GB/s and %g us\n%s",
              o.model.c_str(), layers.size(), static_cast<long long>(o.batch_size), 1e3 * total, o.workers,
              o.bandwidth_gb_per_second, o.latency_us, chosen.str(model.get()).c_str());
  std::printf("  predicted speedup over one worker %.2fx (ideal %d)\n", total / chosen.seconds_per_mini_batch, o.workers);
  if (chosen.replicated())
    std::printf("  replicated stages run under `train --schedule pipedream --plan auto` (or --replicas %s)\n",
                pipeline::format_replicas(chosen.replicas()).c_str());
  return 0;
}

}  // namespace minipipe::cli

// `minipipe simulate` and `minipipe partition`: schedules and partitions without training.
#include <cstdio>

#include "commands.h"
#include "nn/convolutional.h"
#include "nn/transformer.h"
#include "pipeline/partition.h"
#include "pipeline/trace.h"
#include "pipeline/validator.h"
#include "tensor/factories.h"
#include "training_log.h"

namespace minipipe::cli {

int simulate(const SimulateOptions& o) {
  const pipeline::Schedule schedule = pipeline::make_schedule(o.schedule, o.stages, o.micro_batches);
  pipeline::validate(schedule);
  const pipeline::SimulationResult result =
      pipeline::simulate(schedule, pipeline::CostModel::uniform(o.stages, o.forward_cost, o.backward_cost));
  const double theory = pipeline::theoretical_bubble_fraction(o.stages, o.micro_batches);
  std::string in_flight = "[";
  for (size_t s = 0; s < result.peak_in_flight.size(); ++s) in_flight += (s ? "," : "") + std::to_string(result.peak_in_flight[s]);
  in_flight += "]";
  if (o.json) {
    std::printf("%s\n", JsonObject().add("schedule", o.schedule).add("stages", static_cast<int64_t>(o.stages))
                            .add("micro_batches", static_cast<int64_t>(o.micro_batches)).add("forward_cost", o.forward_cost)
                            .add("backward_cost", o.backward_cost).add("makespan", result.makespan)
                            .add("bubble_fraction", result.bubble_fraction).add("theoretical_bubble_fraction", theory)
                            .add_raw("peak_in_flight", in_flight).str().c_str());
  } else {
    if (o.grid) std::printf("%s\n", pipeline::format_grid(schedule).c_str());
    std::printf("%s, %d stages, %d micro-batches, forward %g, backward %g\n", o.schedule.c_str(), o.stages, o.micro_batches,
                o.forward_cost, o.backward_cost);
    std::printf("  makespan             %g\n", result.makespan);
    std::printf("  bubble fraction      %.4f  (formula (K-1)/(M+K-1) = %.4f)\n", result.bubble_fraction, theory);
    std::printf("  peak in flight       %s micro-batches per stage\n", in_flight.c_str());
  }
  const std::vector<pipeline::TraceEvent> events = pipeline::to_trace(result);
  if (!o.trace.empty()) pipeline::write_chrome_trace(o.trace, events);
  if (!o.timeline.empty())
    pipeline::write_svg_timeline(o.timeline, events, o.stages,
                                 o.schedule + ", " + std::to_string(o.stages) + " stages, " + std::to_string(o.micro_batches) +
                                     " micro-batches (simulated)");
  return 0;
}

int partition(const PartitionOptions& o) {
  std::shared_ptr<nn::Sequential> model;
  Tensor sample;
  Generator g(0);
  if (o.model == "gpt") {
    model = nn::make_gpt({});
    sample = randint(0, 256, {o.batch_size, 128}, g);
  } else if (o.model == "cnn") {
    model = nn::make_resnet({.in_channels = 1, .stages = 2});
    sample = rand({o.batch_size, 1, 8, 8}, g);
  } else {
    throw std::invalid_argument("unknown model '" + o.model + "': use gpt or cnn");
  }
  std::printf("%s", pipeline::make_partition(*model, o.stages, o.method, sample).str(*model).c_str());
  return 0;
}

}  // namespace minipipe::cli

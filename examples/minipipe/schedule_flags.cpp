#include "schedule_flags.h"

#include <sstream>
#include <stdexcept>

#include "pipeline/token_slices.h"
#include "pipeline/zb_auto.h"

namespace minipipe::cli {

namespace {
pipeline::ScheduleSpec common_spec(const std::string& schedule, int stages, int micro_batches, int virtual_stages,
                                   const std::string& weights, const std::string& replicas) {
  pipeline::ScheduleSpec spec;
  spec.name = schedule;
  spec.stages = stages;
  spec.micro_batches = micro_batches;
  spec.virtual_stages = virtual_stages;
  if (!weights.empty()) spec.weights = pipeline::parse_weight_policy(weights);
  spec.replicas = parse_replicas(replicas);
  return spec;
}
}  // namespace

// --schedule-file: the file's shape, with the flags it cannot take set, for check() to refuse.
pipeline::ScheduleSpec file_spec(const std::string& file, const std::string& weights, const std::string& replicas) {
  pipeline::ScheduleSpec spec = pipeline::ScheduleSpec::from_file(file);
  if (!weights.empty()) spec.weights = pipeline::parse_weight_policy(weights);
  spec.replicas = parse_replicas(replicas);
  return spec;
}

// --costs-from and --max-in-flight, zb-auto's.
void add_zb_auto_costs(pipeline::ScheduleSpec& spec, const std::string& costs_from, int max_in_flight) {
  spec.max_in_flight = max_in_flight;
  if (costs_from.empty()) return;
  if (spec.name != "zb-auto") throw std::invalid_argument("--costs-from gives zb-auto its costs: add --schedule zb-auto");
  spec.costs = pipeline::zb_auto_costs_from_trace(costs_from, spec.stages);
}

pipeline::ScheduleSpec schedule_spec(const PipelineFlags& flags) {
  pipeline::ScheduleSpec spec =
      flags.schedule_file.empty()
          ? common_spec(flags.schedule, flags.stages, flags.micro_batches, flags.virtual_stages, flags.weights, flags.replicas)
          : file_spec(flags.schedule_file, flags.weights, flags.replicas);
  if (flags.token_slices.find('+') != std::string::npos)
    spec.token_slices = static_cast<int>(pipeline::parse_token_slices(flags.token_slices).size());
  else if (!flags.token_slices.empty() && flags.token_slices != "auto")
    spec.token_slices = std::stoi(flags.token_slices);
  add_zb_auto_costs(spec, flags.costs_from, flags.max_in_flight);
  spec.check();
  return spec;
}

pipeline::ScheduleSpec schedule_spec(const SimulateOptions& o) {
  pipeline::ScheduleSpec spec = o.schedule_file.empty()
                                    ? common_spec(o.schedule, o.stages, o.micro_batches, o.virtual_stages, o.weights, o.replicas)
                                    : file_spec(o.schedule_file, o.weights, o.replicas);
  spec.token_slices = o.token_slices;
  if (spec.asynchronous()) spec.mini_batches = o.mini_batches;
  add_zb_auto_costs(spec, o.costs_from, o.max_in_flight);
  spec.check();
  return spec;
}

std::vector<int> parse_replicas(const std::string& list) {
  if (list.empty()) return {};
  std::vector<int> replicas;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int count = 0;
    try {
      count = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || count < 1 || count > 64)
      throw std::invalid_argument("--replicas " + list + ": '" + item +
                                  "' is not a replica count; give one count from 1 to 64 per stage, like 2,1");
    replicas.push_back(count);
  }
  return replicas;
}

}  // namespace minipipe::cli

#include "pipeline/schedule_spec.h"

#include <algorithm>
#include <stdexcept>

#include "pipeline/pipedream.h"
#include "pipeline/schedule_csv.h"
#include "pipeline/validator.h"
#include "pipeline/zb_auto.h"

namespace minipipe::pipeline {

namespace {
void refuse(const std::string& what) { throw std::invalid_argument(what); }
}  // namespace

ScheduleSpec ScheduleSpec::from_file(const std::string& path) {
  const Schedule schedule = read_schedule_file(path);
  ScheduleSpec spec;
  spec.name = schedule.name;
  spec.stages = schedule.stages;
  spec.micro_batches = schedule.micro_batches;
  spec.virtual_stages = schedule.virtual_stages;
  spec.file = path;
  return spec;
}

void ScheduleSpec::check() const {
  const std::vector<std::string> names = schedule_name_list();
  if (!file.empty()) {
    if (weights || !replicas.empty() || token_slices > 1)
      refuse("--schedule-file " + file + " is a synchronous schedule of whole sequences: drop --weights, --replicas and "
             "--token-slices");
  } else if (std::find(names.begin(), names.end(), name) == names.end()) {
    refuse("unknown schedule '" + name + "': use " + schedule_names_text());
  }
  if (stages < 1) refuse("--stages is " + std::to_string(stages) + ": a pipeline needs 1 stage or more");
  if (micro_batches < 1) refuse("--micro-batches is " + std::to_string(micro_batches) + ": give 1 or more");
  if (mini_batches < 1) refuse("a pipedream run streams 1 mini-batch or more, not " + std::to_string(mini_batches));
  if (weights && !asynchronous())
    refuse(std::string("--weights ") + weight_policy_name(*weights) + " chooses the weight versions of the asynchronous "
           "schedule: add --schedule pipedream (" + name + " is synchronous and has one version)");
  if (!replicas.empty() && !asynchronous())
    refuse("--replicas replicates stages of PipeDream's asynchronous pipeline: add --schedule pipedream");
  if (!replicas.empty() && static_cast<int>(replicas.size()) != stages)
    refuse("--replicas " + format_replicas(replicas) + " names " + std::to_string(replicas.size()) + " stages, --stages is " +
           std::to_string(stages) + ": give one count per stage");
  if (!file.empty()) return;  // the file's own shape; build_schedule validates it
  const bool interleaved = name == "interleaved";
  if (is_v_schedule(name) && virtual_stages != 1 && virtual_stages != 2)
    refuse("--schedule " + name + " holds 2 chunks per stage in a V: drop --virtual-stages");
  if (!interleaved && !is_v_schedule(name) && virtual_stages != 1)
    refuse("--virtual-stages cuts each stage into virtual stages (model chunks) for --schedule interleaved, not " + name);
  if (interleaved && virtual_stages < 2)
    refuse("--schedule interleaved needs --virtual-stages 2 or more (model chunks per stage)");
  if (token_slices < 1) refuse("--token-slices is " + std::to_string(token_slices) + ": give 1 slice or more");
  if (token_slices > 1 && asynchronous())
    refuse("--token-slices cuts sequences for the synchronous schedules (gpipe, 1f1b), not pipedream: pipedream is "
           "asynchronous and does not slice");
  if (max_in_flight != 0 && name != "zb-auto")
    refuse("--max-in-flight bounds the micro-batches zb-auto keeps in flight, not " + name + "'s");
  if (max_in_flight < 0) refuse("--max-in-flight is " + std::to_string(max_in_flight) + ": give 1 or more micro-batches");
  if (token_slices > 1 && (interleaved || name == "zb-h1" || name == "zb-h2" || name == "zb-auto" || is_v_schedule(name)))
    refuse("--schedule " + name + ": the " + (interleaved ? "interleaved schedule does" : "zero-bubble schedules do") +
           " not cut sequences into token slices; use gpipe or 1f1b, or drop --token-slices");
}

Schedule build_schedule(const ScheduleSpec& spec) {
  spec.check();
  Schedule schedule;
  if (!spec.file.empty()) {
    schedule = read_schedule_file(spec.file);
    if (schedule.stages != spec.stages || schedule.micro_batches != spec.micro_batches ||
        schedule.virtual_stages != spec.virtual_stages)
      throw std::invalid_argument(spec.file + " has " + std::to_string(schedule.stages) + " ranks, " +
                                  std::to_string(schedule.micro_batches) + " micro-batches and " +
                                  std::to_string(schedule.virtual_stages) + " stages per rank, not the " +
                                  std::to_string(spec.stages) + ", " + std::to_string(spec.micro_batches) + " and " +
                                  std::to_string(spec.virtual_stages) + " asked for");
    return schedule;  // validated by the reader
  }
  if (spec.asynchronous())
    schedule = pipedream_schedule(spec.stages, spec.mini_batches * spec.micro_batches, spec.micro_batches,
                                  spec.weights.value_or(WeightPolicy::Stash), spec.replicas);
  else if (spec.name == "interleaved")
    schedule = interleaved_schedule(spec.stages, spec.micro_batches, spec.virtual_stages);
  else if (spec.name == "zb-h1" || spec.name == "zb-h2")
    schedule = zero_bubble_schedule(spec.name, spec.stages, spec.micro_batches);
  else if (spec.name == "zb-auto") {
    if (!spec.costs)
      throw std::invalid_argument("zb-auto places F, B and W by each stage's measured costs: give them (--costs-from "
                                  "TRACE.json, a trace of the same stages), or let training measure them");
    schedule = zb_auto_schedule(spec.stages, spec.micro_batches, *spec.costs, spec.max_in_flight);
  } else if (spec.name == "dualpipev")
    schedule = dualpipev_schedule(spec.stages, spec.micro_batches);
  else if (is_v_schedule(spec.name))
    schedule = v_schedule(spec.name, spec.stages, spec.micro_batches);
  else if (spec.name == "gpipe")
    schedule = gpipe_schedule(spec.stages, spec.micro_batches, spec.token_slices);
  else
    schedule = one_f_one_b_schedule(spec.stages, spec.micro_batches, spec.token_slices);
  validate(schedule);
  return schedule;
}

}  // namespace minipipe::pipeline

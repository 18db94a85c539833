#include "run_log.h"

#include "pipeline/simulator.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

namespace minipipe::cli {

namespace {
using Kind = nn::JsonValue::Kind;

int positive(const nn::JsonValue& v, int fallback) {
  return v.kind == Kind::Number ? static_cast<int>(std::clamp<int64_t>(v.number, 1, 1 << 20)) : fallback;
}
}  // namespace

const nn::JsonValue& summary_field(const RunLog& log, std::initializer_list<const char*> keys) {
  static const nn::JsonValue null{nn::JsonValue::Kind::Null};
  const nn::JsonValue* v = &log.summary;
  for (const char* key : keys) {
    if (v->kind != Kind::Object) return null;
    const auto it = v->object.find(key);
    if (it == v->object.end()) return null;
    v = &it->second;
  }
  return *v;
}

std::vector<std::string> worker_names(const RunLog& run, int workers) {
  std::vector<std::string> names;
  for (int w = 0; w < workers; ++w) names.push_back((workers == run.stages ? "stage " : "worker ") + std::to_string(w));
  return names;
}

RunLog read_run_log(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the log '" + path + "'");
  RunLog log;
  bool summarized = false;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    nn::JsonValue event;
    try {
      event = nn::parse_json(line, true);
    } catch (const nn::JsonError& e) {
      throw std::runtime_error("'" + path + "' line " + std::to_string(number) + " is not JSON (" + e.what() +
                               "): give the --log-json file of `minipipe train`");
    }
    if (event.kind != Kind::Object) continue;
    const auto kind = event.object.find("event");
    if (kind == event.object.end() || kind->second.kind != Kind::String) continue;
    auto number_at = [&](const char* key) {
      const auto it = event.object.find(key);
      return it != event.object.end() && it->second.kind == Kind::Number ? it->second.real : std::nan("");
    };
    const int64_t step = static_cast<int64_t>(number_at("step"));
    if (kind->second.string == "step" && !std::isnan(number_at("loss"))) log.losses.emplace_back(step, number_at("loss"));
    if (kind->second.string == "step")
      for (const char* unit : {"tokens", "samples"})
        if (const double rate = number_at((std::string(unit) + "_per_second").c_str()); !std::isnan(rate)) {
          log.throughputs.push_back(rate);
          log.throughput_unit = std::string(unit) + "/s";
        }
    if (kind->second.string == "eval" && !std::isnan(number_at("validation_loss")))
      log.validation_losses.emplace_back(step, number_at("validation_loss"));
    if (kind->second.string == "summary") log.summary = std::move(event), summarized = true;
  }
  if (!summarized)
    throw std::runtime_error("'" + path + "' has no summary line: give the --log-json file of a `minipipe train` that finished");
  log.stages = positive(summary_field(log, {"pipeline", "stages"}), 1);
  log.micro_batches = positive(summary_field(log, {"pipeline", "micro_batches"}), 1);
  log.virtual_stages = positive(summary_field(log, {"pipeline", "virtual_stages"}), 1);
  const nn::JsonValue& slices = summary_field(log, {"pipeline", "token_slices"});
  if (slices.kind == Kind::Array) log.token_slices = std::max<int>(1, static_cast<int>(slices.array.size()));
  const nn::JsonValue& schedule = summary_field(log, {"pipeline", "schedule"});
  if (schedule.kind == Kind::String) log.schedule = nn::printable_excerpt(schedule.string, 32);
  const nn::JsonValue& file = summary_field(log, {"pipeline", "schedule_file"});
  if (file.kind == Kind::String) log.schedule_file = file.string;
  const nn::JsonValue& weights = summary_field(log, {"pipeline", "weights"});
  log.asynchronous = weights.kind == Kind::String && weights.string != "synchronous";
  const nn::JsonValue& formula = summary_field(log, {"pipeline", "theoretical_bubble_fraction"});
  log.formula_bubble = formula.kind == Kind::Number ? formula.real
                                                    : pipeline::theoretical_bubble_fraction(log.stages, log.micro_batches * log.token_slices,
                                                                                            log.virtual_stages);
  return log;
}

const char* bubble_formula(const RunLog& run) {
  if (run.asynchronous) return "(K-1)/(all micro-batches of the call + K-1)";
  return run.virtual_stages > 1 ? "(K-1)/(vM+K-1)" : "(K-1)/(M+K-1)";
}

pipeline::ScheduleSpec RunLog::schedule_spec() const {
  pipeline::ScheduleSpec spec;
  spec.name = schedule;
  spec.stages = stages;
  spec.micro_batches = micro_batches;
  spec.virtual_stages = virtual_stages;
  spec.token_slices = token_slices;
  spec.file = schedule_file;
  return spec;
}

}  // namespace minipipe::cli

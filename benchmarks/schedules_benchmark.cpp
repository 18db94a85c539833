// The synchronous schedules on the default GPT, K = 2 CPU stages (one thread each): 1F1B,
// interleaved 1F1B (v = 2), ZB-H1, ZB-H2 and the V schedules (ZB-V, V-Half, V-Min: two chunks
// per stage in a V), at M = 4 and 8. The simulator's costs are per stage, so for the two-chunk
// schedules it averages a stage's two chunks. For each: samples/s and the
// speedup over one stage with the same micro-batches (medians of --repeats steps), the
// measured bubble (from the executor's trace of the median step), and what the simulator
// predicts for the same step from that step's own per-op costs (each stage's mean forward,
// backward, B and W times): makespan and bubble, and how far the prediction is from the
// measurement. Every row trains the same model on the same data, bit for bit the same.
//
//   schedules_benchmark [--micro-batches 4,8] [--partition time] [--steps 6] [--json FILE]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "benchmark_stats.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "pipeline/simulator.h"
#include "pipeline/trace.h"
#include "pipeline/zb_auto.h"
#include "tensor/factories.h"

using namespace minipipe;

namespace {

struct Config {
  std::string schedule;
  int virtual_stages;
  std::string label() const { return schedule == "interleaved" ? schedule + " v=" + std::to_string(virtual_stages) : schedule; }
};

struct Measurement {
  double seconds_per_step = 0;              // median
  std::vector<pipeline::TraceEvent> trace;  // of the median step
  std::vector<int64_t> peak_bytes;          // per stage, the most over all steps
};

struct Workload {
  nn::GPTConfig model;
  int64_t batch;
  std::string partition;
  int steps;
};

// `steps` timed training steps (after one warm-up) of the GPT on `stages` stages: the schedule
// `config` names, or `given`.
Measurement measure(const Config& config, int stages, int micro_batches, const Workload& w,
                    const pipeline::Schedule* given = nullptr) {
  auto model = nn::make_gpt(w.model);
  Generator g(1);
  const Tensor sample = randint(0, static_cast<int32_t>(w.model.vocabulary), {w.batch / micro_batches, w.model.context}, g);
  const pipeline::StagePlan plan = pipeline::make_partition(*model, stages * config.virtual_stages, w.partition, sample);
  pipeline::PipelineOptions options{micro_batches, config.schedule, pipeline::Recompute::Never, {}, 0, true};
  options.virtual_stages = config.virtual_stages;
  const pipeline::LossFunction loss = [](const Tensor& logits, const Tensor& targets) {
    return nn::cross_entropy_loss(logits, targets);
  };
  pipeline::Pipeline pipe = given ? pipeline::Pipeline(model, plan, *given, options, loss) : pipeline::Pipeline(model, plan, options, loss);
  nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-3f});
  std::vector<std::pair<double, std::vector<pipeline::TraceEvent>>> timed;
  std::vector<int64_t> peak_bytes(stages, 0);
  for (int step = 0; step <= w.steps; ++step) {
    const int32_t vocabulary = static_cast<int32_t>(w.model.vocabulary);
    const datasets::Batch batch{randint(0, vocabulary, {w.batch, w.model.context}, g),
                                randint(0, vocabulary, {w.batch, w.model.context}, g), 0};
    const auto start = std::chrono::steady_clock::now();
    pipeline::StepResult result = pipe.run(batch, step);
    optimizer.step();
    optimizer.zero_grad();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (int s = 0; s < stages; ++s) peak_bytes[s] = std::max(peak_bytes[s], result.peak_bytes[s]);
    if (step > 0) timed.push_back({seconds, std::move(result.trace)});  // step 0 warms up
  }
  std::sort(timed.begin(), timed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return {timed[timed.size() / 2].first, std::move(timed[timed.size() / 2].second), peak_bytes};
}

// Each stage's mean time per forward, backward, B and W in `trace`, as a cost model (us).
pipeline::CostModel measured_costs(const std::vector<pipeline::TraceEvent>& trace, int stages) {
  std::map<std::pair<int, pipeline::Op>, std::pair<double, int>> sums;  // (stage, op) -> (total us, count)
  for (const pipeline::TraceEvent& e : trace) {
    if (!pipeline::is_compute(e.instruction.op)) continue;
    auto& [total, count] = sums[{e.worker, e.instruction.op}];
    total += e.end_us - e.start_us;
    ++count;
  }
  auto mean = [&](int s, pipeline::Op op) {
    auto it = sums.find({s, op});
    return it == sums.end() ? 0.0 : it->second.first / it->second.second;
  };
  pipeline::CostModel costs = pipeline::CostModel::uniform(stages, 0, 0);
  for (int s = 0; s < stages; ++s) {
    costs.forward[s] = mean(s, pipeline::Op::Forward);
    const double weight = mean(s, pipeline::Op::BackwardWeight);
    costs.backward[s] = weight > 0 ? mean(s, pipeline::Op::BackwardInput) + weight : mean(s, pipeline::Op::Backward);
    costs.backward_weight.push_back(weight);
  }
  return costs;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minipipe: 1F1B, interleaved 1F1B, the zero-bubble and the V schedules on the default GPT, measured and "
               "simulated"};
  std::string micro_batch_list = "4,8", json_path, only;
  Workload w{{}, 16, "time", 6};
  app.add_option("--micro-batches", micro_batch_list, "M values, like 4,8 (multiples of 2 for interleaved)")->capture_default_str();
  app.add_option("--partition", w.partition, "uniform, params or time (profiled)")->capture_default_str();
  app.add_option("--batch", w.batch, "sequences per mini-batch")->capture_default_str();
  app.add_option("--dim", w.model.dim, "model width")->capture_default_str();
  app.add_option("--layers", w.model.layers, "Transformer blocks")->capture_default_str();
  app.add_option("--context", w.model.context, "tokens per sequence")->capture_default_str();
  app.add_option("--steps", w.steps, "timed steps per row (median reported)")->capture_default_str();
  app.add_option("--json", json_path, "also write the rows as JSON here");
  app.add_option("--schedules", only, "only these rows, like 1f1b,zb-h2 (zb-auto brings zb-h1, whose costs place it)");
  CLI11_PARSE(app, argc, argv);
  std::vector<int> micro_batch_counts;
  {
    std::stringstream in(micro_batch_list);
    std::string item;
    while (std::getline(in, item, ',')) micro_batch_counts.push_back(std::stoi(item));
  }
  constexpr int kStages = 2;
  // zb-auto comes after zb-h1: it is placed by the costs measured in zb-h1's median step, and
  // its prediction is the simulator's on those costs (zb-h1's own prediction beside it).
  const std::vector<Config> all{{"1f1b", 1}, {"interleaved", 2}, {"zb-h1", 1},   {"zb-auto", 1}, {"zb-h2", 1},
                                {"zb-v", 2}, {"v-half", 2},      {"v-min", 2}, {"dualpipev", 2}};
  std::set<std::string> wanted;
  {
    std::stringstream in(only);
    std::string item;
    while (std::getline(in, item, ',')) wanted.insert(item);
    if (wanted.count("zb-auto")) wanted.insert("zb-h1");
  }
  std::vector<Config> configs;
  for (const Config& c : all)
    if (wanted.empty() || wanted.count(c.schedule)) configs.push_back(c);
  if (configs.empty()) {
    std::fprintf(stderr, "--schedules %s names none of the rows (1f1b, interleaved, zb-h1, zb-auto, zb-h2, zb-v, v-half, "
                 "v-min, dualpipev)\n", only.c_str());
    return 2;
  }

  struct Row {
    Config config;
    int micro_batches;
    double samples_per_second, speedup, measured_bubble, predicted_bubble, measured_ms, predicted_ms;
    std::vector<int64_t> peak_bytes;
  };
  std::vector<Row> rows;
  for (int m : micro_batch_counts) {
    const double one_stage = static_cast<double>(w.batch) / measure({"gpipe", 1}, 1, m, w).seconds_per_step;
    pipeline::CostModel zb_h1_costs;
    for (const Config& c : configs) {
      if (c.schedule == "dualpipev" && m < 2 * kStages) continue;
      const bool zb_auto = c.schedule == "zb-auto";
      const pipeline::Schedule schedule = zb_auto ? pipeline::zb_auto_schedule(kStages, m, zb_h1_costs)
                                                  : pipeline::make_schedule(c.schedule, kStages, m, 1, c.virtual_stages);
      const Measurement measured = measure(c, kStages, m, w, &schedule);
      const pipeline::TraceSummary summary = pipeline::summarize(measured.trace, kStages);
      const pipeline::CostModel costs = zb_auto ? zb_h1_costs : measured_costs(measured.trace, kStages);
      if (c.schedule == "zb-h1") zb_h1_costs = costs;
      const pipeline::SimulationResult predicted = pipeline::simulate(schedule, costs);
      const double rate = static_cast<double>(w.batch) / measured.seconds_per_step;
      rows.push_back({c, m, rate, rate / one_stage, summary.bubble_fraction, predicted.bubble_fraction,
                      summary.makespan_us / 1e3, predicted.makespan / 1e3, measured.peak_bytes});
      std::fprintf(stderr, "measured %s at M = %d\n", c.label().c_str(), m);
    }
  }
  std::printf("%-16s %3s %11s %9s %10s %10s %12s %12s %7s %16s\n", "schedule", "M", "samples/s", "speedup", "bubble",
              "predicted", "makespan ms", "predicted ms", "error", "peak MiB s0, s1");
  for (const Row& r : rows)
    std::printf("%-16s %3d %11.1f %8.2fx %10.3f %10.3f %12.1f %12.1f %6.1f%% %8.1f, %5.1f\n", r.config.label().c_str(),
                r.micro_batches, r.samples_per_second, r.speedup, r.measured_bubble, r.predicted_bubble, r.measured_ms,
                r.predicted_ms, 100.0 * (r.predicted_ms - r.measured_ms) / r.measured_ms, r.peak_bytes[0] / 1048576.0,
                r.peak_bytes[1] / 1048576.0);
  std::printf("(GPT dim %lld, %lld blocks, context %lld, batch %lld; K = %d, partition %s; speedup over one stage with the "
              "same M; medians of %d steps; %u hardware threads)\n",
              static_cast<long long>(w.model.dim), static_cast<long long>(w.model.layers),
              static_cast<long long>(w.model.context), static_cast<long long>(w.batch), kStages, w.partition.c_str(), w.steps,
              std::thread::hardware_concurrency());
  if (!json_path.empty()) {
    std::vector<std::string> objects;
    for (const Row& r : rows) {
      char line[512];
      std::snprintf(line, sizeof line,
                    "{\"schedule\": \"%s\", \"virtual_stages\": %d, \"stages\": %d, \"micro_batches\": %d, "
                    "\"samples_per_second\": %.3f, \"speedup\": %.4f, \"measured_bubble\": %.4f, \"predicted_bubble\": %.4f, "
                    "\"measured_makespan_ms\": %.3f, \"predicted_makespan_ms\": %.3f, \"peak_bytes\": [%lld, %lld]}",
                    r.config.schedule.c_str(), r.config.virtual_stages, kStages, r.micro_batches, r.samples_per_second,
                    r.speedup, r.measured_bubble, r.predicted_bubble, r.measured_ms, r.predicted_ms,
                    static_cast<long long>(r.peak_bytes[0]), static_cast<long long>(r.peak_bytes[1]));
      objects.push_back(line);
    }
    if (!benchmarks::write_json_array(json_path, objects)) return 1;
  }
  return 0;
}

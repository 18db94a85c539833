// Communication's share of a step: the default GPT through K = 2 stages (M = 4, 1F1B), with
// a link injected between the stages (pipeline/link.h) of 0, 1 and 10 ms latency, beside what
// the simulator predicts for the same schedule from the stages' measured forward and backward
// times and the same link model. Measured: the median over --repeats steps of one run() call;
// predicted: the simulated makespan.
//
//   link_benchmark [--latencies-us 0,1000,10000] [--gbps 0] [--schedule 1f1b] [--json FILE]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

#include "benchmark_stats.h"
#include "nn/losses.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "pipeline/simulator.h"
#include "tensor/factories.h"

using namespace minipipe;

int main(int argc, char** argv) {
  CLI::App app{"communication's share of a pipeline step: injected links against the simulator"};
  std::string latencies = "0,1000,10000", schedule = "1f1b", json_path;
  double gbps = 0;
  int stages = 2, micro_batches = 4, repeats = 5;
  int64_t dim = 128, layers = 4, context = 128, batch = 16;
  app.add_option("--latencies-us", latencies, "link latencies to try, microseconds");
  app.add_option("--gbps", gbps, "link bandwidth, gigabits/s (0: the machine's)");
  app.add_option("--schedule", schedule, "gpipe or 1f1b")->check(CLI::IsMember({"gpipe", "1f1b"}));
  app.add_option("--stages", stages, "stages K");
  app.add_option("--micro-batches", micro_batches, "micro-batches M");
  app.add_option("--dim", dim, "GPT width");
  app.add_option("--layers", layers, "GPT blocks");
  app.add_option("--context", context, "tokens per sequence");
  app.add_option("--batch", batch, "sequences per mini-batch");
  app.add_option("--repeats", repeats, "steps timed per latency (median reported)");
  app.add_option("--json", json_path, "also write the rows as JSON here");
  CLI11_PARSE(app, argc, argv);

  auto model = nn::make_gpt({.vocabulary = 256, .context = context, .dim = dim, .layers = layers, .heads = 4, .dropout = 0.0f});
  const auto loss = [](const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); };
  Generator g(1);
  const datasets::Batch data{randint(0, 256, {batch, context}, g), randint(0, 256, {batch, context}, g), 0};
  const double message_bytes = 4.0 * static_cast<double>(batch / micro_batches * context * dim);
  const pipeline::StagePlan plan = pipeline::partition_uniform(*model, stages);

  // Timings of `repeats` steps (after one to warm up) with a link; the trace of each.
  auto time_steps = [&](const pipeline::LinkModel& link, std::vector<std::vector<pipeline::TraceEvent>>& traces) {
    pipeline::PipelineOptions options{micro_batches, schedule, pipeline::Recompute::Never, {}, 0, true};
    options.link = link;
    pipeline::Pipeline pipe(model, plan, options, loss);
    std::vector<double> seconds;
    for (int step = 0; step <= repeats; ++step) {
      const auto start = std::chrono::steady_clock::now();
      pipeline::StepResult result = pipe.run(data, static_cast<uint64_t>(step));
      model->zero_grad();
      if (step == 0) continue;
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      traces.push_back(std::move(result.trace));
    }
    return benchmarks::median(seconds);
  };

  std::vector<std::string> rows;
  std::printf("%s, K = %d, M = %d, GPT dim %lld x %lld layers, %lld x %lld tokens; messages of %.0f kB; median of %d steps\n",
              schedule.c_str(), stages, micro_batches, static_cast<long long>(dim), static_cast<long long>(layers),
              static_cast<long long>(batch), static_cast<long long>(context), message_bytes / 1e3, repeats);
  std::printf("%12s %14s %14s %8s\n", "latency us", "measured ms", "predicted ms", "error");
  pipeline::CostModel costs;  // the stages' medians, measured once without a slower link
  std::stringstream in(latencies);
  std::string item;
  while (std::getline(in, item, ',')) {
    const pipeline::LinkModel link{gbps * 1e9 / 8, std::stod(item) * 1e-6};
    std::vector<std::vector<pipeline::TraceEvent>> traces;
    const double measured = time_steps(link, traces);
    if (costs.forward.empty()) {
      std::map<std::pair<int, bool>, std::vector<double>> durations;  // (stage, backward?) -> microseconds
      for (const auto& trace : traces)
        for (const pipeline::TraceEvent& e : trace)
          if (pipeline::is_compute(e.instruction.op))
            durations[{e.worker, e.instruction.op != pipeline::Op::Forward}].push_back(e.end_us - e.start_us);
      for (int s = 0; s < stages; ++s) {
        costs.forward.push_back(benchmarks::median(durations[{s, false}]));
        costs.backward.push_back(benchmarks::median(durations[{s, true}]));
      }
    }
    costs.communication = 1e6 * link.message_seconds(message_bytes);
    const pipeline::Schedule planned = pipeline::make_schedule(schedule, stages, micro_batches);
    const double predicted = pipeline::simulate(planned, costs).makespan * 1e-6;
    const double error = predicted / measured - 1.0;
    std::printf("%12s %14.1f %14.1f %7.1f%%\n", item.c_str(), 1e3 * measured, 1e3 * predicted, 100 * error);
    char json[256];
    std::snprintf(json, sizeof json,
                  "{\"latency_us\": %s, \"gbps\": %g, \"measured_ms\": %.3f, \"predicted_ms\": %.3f, \"error\": %.4f}",
                  item.c_str(), gbps, 1e3 * measured, 1e3 * predicted, error);
    rows.push_back(json);
  }
  if (!json_path.empty() && !benchmarks::write_json_array(json_path, rows)) return 1;
  return 0;
}

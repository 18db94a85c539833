// Pipeline throughput on CPU stages (one thread each): a stack of identical Linear + GELU
// layers (so stages are balanced), trained for a few steps with K stages and M
// micro-batches. For each (K, M): samples/s, the speedup over K = 1 with the same M, and
// the efficiency = speedup / (K M / (M + K - 1)), the speedup GPipe's bubble allows
// (section 2.2). Median of --repeats timings of --steps steps each.
//
//   pipeline_benchmark [--stages 1,2] [--width 512] [--batch 1024] [--schedule 1f1b] [--json FILE]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "nn/layers.h"
#include "nn/losses.h"
#include "pipeline/executor.h"
#include "pipeline/simulator.h"
#include "tensor/factories.h"

using namespace minipipe;

int main(int argc, char** argv) {
  CLI::App app{"minipipe pipeline throughput on CPU stages"};
  std::string stage_list = std::to_string(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
  std::string schedule = "1f1b", json_path;
  int64_t width = 512, batch = 1024;  // micro-batches of 1024 / M rows keep each GEMM efficient
  int layers = 8, steps = 2, repeats = 3;
  app.add_option("--stages", stage_list, "largest K, or a list like 1,2,4 (default: up to the core count)");
  app.add_option("--schedule", schedule, "gpipe or 1f1b")->check(CLI::IsMember({"gpipe", "1f1b"}));
  app.add_option("--width", width, "features per layer");
  app.add_option("--batch", batch, "mini-batch size");
  app.add_option("--layers", layers, "Linear + GELU pairs");
  app.add_option("--steps", steps, "steps per timing");
  app.add_option("--repeats", repeats, "timings per configuration (median reported)");
  app.add_option("--json", json_path, "also write the rows as JSON here");
  CLI11_PARSE(app, argc, argv);

  std::vector<int> stage_counts;
  {
    std::stringstream in(stage_list);
    std::string item;
    while (std::getline(in, item, ',')) stage_counts.push_back(std::stoi(item));
    if (stage_counts.size() == 1)  // "4" means 1, 2, 4
      for (int k = stage_counts[0], v = k / 2; v >= 1; v /= 2) stage_counts.insert(stage_counts.begin(), v);
  }
  Generator g(0);
  auto model = std::make_shared<nn::Sequential>();
  for (int i = 0; i < layers; ++i) {
    model->add(std::make_shared<nn::Linear>(width, width, g));
    model->add(std::make_shared<nn::Activation>(nn::ActivationKind::GELU));
  }
  const datasets::Batch data{randn({batch, width}, g), randn({batch, width}, g), 0};

  // Median samples/s of `steps` training steps (forward + backward) with K stages, M micro-batches.
  auto samples_per_second = [&](int k, int m) {
    pipeline::Pipeline pipe(model, pipeline::partition_uniform(*model, k), {m, schedule, pipeline::Recompute::Never, {}, 0, false},
                            [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
    pipe.run(data, 0);  // warm-up
    std::vector<double> timings;
    for (int r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      for (int s = 0; s < steps; ++s) {
        pipe.run(data, s);
        model->zero_grad();
      }
      timings.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(timings.begin(), timings.end());
    return static_cast<double>(batch * steps) / timings[timings.size() / 2];
  };

  struct Row {
    int stages, micro_batches;
    double samples_per_second, speedup, ideal, efficiency;
  };
  std::vector<Row> rows;
  std::map<int, double> single_stage;  // M -> samples/s with K = 1, the baseline of each speedup
  for (int k : stage_counts) {
    std::set<int> micro_batch_counts;
    for (int m : {1, k, 4 * k, 8 * k})
      if (m <= batch) micro_batch_counts.insert(m);
    for (int m : micro_batch_counts) {
      if (!single_stage.count(m)) single_stage[m] = samples_per_second(1, m);
      const double rate = k == 1 ? single_stage[m] : samples_per_second(k, m);
      const double speedup = rate / single_stage[m], ideal = static_cast<double>(k) * m / (m + k - 1);
      rows.push_back({k, m, rate, speedup, ideal, speedup / ideal});
    }
  }
  std::printf("%-7s %-14s %12s %9s %9s %11s\n", "stages", "micro-batches", "samples/s", "speedup", "ideal", "efficiency");
  for (const Row& r : rows)
    std::printf("%-7d %-14d %12.1f %9.2f %9.2f %11.2f\n", r.stages, r.micro_batches, r.samples_per_second, r.speedup, r.ideal,
                r.efficiency);
  std::printf("(%s; %d x Linear(%lld) + GELU, batch %lld; speedup over K = 1 at the same M; ideal = K M / (M + K - 1); "
              "%u hardware threads)\n",
              schedule.c_str(), layers, static_cast<long long>(width), static_cast<long long>(batch),
              std::thread::hardware_concurrency());
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "[\n";
    for (size_t i = 0; i < rows.size(); ++i)
      out << "  {\"stages\": " << rows[i].stages << ", \"micro_batches\": " << rows[i].micro_batches << ", \"samples_per_second\": "
          << rows[i].samples_per_second << ", \"speedup\": " << rows[i].speedup << ", \"ideal\": " << rows[i].ideal
          << ", \"efficiency\": " << rows[i].efficiency << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    out << "]\n";
  }
  return 0;
}

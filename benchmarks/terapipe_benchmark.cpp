// Token-level pipelining (TeraPipe, Li et al. 2021) on CPU stages, one thread each: a GPT
// trained on ONE sequence per step (batch 1, nothing to cut into micro-batches), at several
// context lengths, with
//   no slicing      the pipeline's stages run one after another: no overlap at all;
//   uniform         the planner's number of slices, of equal length;
//   planner         the slicing chosen by TeraPipe's dynamic program (section 3.3) on a cost
//                   model fitted to slices timed on the stages themselves.
// Every row is timed on 1 stage and on K stages (median of --repeats, alternated). The K-stage
// rate against no slicing is the gain; the 1-stage column separates what slicing saves in
// work (our attention computes the full score matrix of a call, so shorter slices skip most
// of the masked half) from what the pipeline overlaps. Ideal overlap for n equal slices:
// K n / (n + K - 1).
//
// Then the simulator, with the measured cost model for every stage, predicts the gain for
// deeper pipelines (K = 4, 8) and larger batches, against GPipe's micro-batches alone.
//
//   terapipe_benchmark [--contexts 512,1024,2048] [--stages 2] [--dim 128] [--layers 4] [--heads 4]
//                      [--repeats 5] [--simulate-stages 4,8] [--simulate-batches 1,4,16] [--json FILE]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "benchmark_stats.h"
#include "nn/losses.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "pipeline/simulator.h"
#include "pipeline/slice_planner.h"
#include "pipeline/token_slices.h"
#include "tensor/factories.h"

using namespace minipipe;

namespace {

struct GptShape {
  int64_t dim, layers, heads;
};

nn::GPTConfig gpt_config(const GptShape& shape, int64_t context) {
  return {256, context, shape.dim, shape.layers, shape.heads, 0.0f, 0};
}

// Seconds of one training step (forward and backward, TeraPipe's order) of one sequence.
double step_seconds(const GptShape& shape, int64_t context, int stages, const std::vector<int64_t>& slices) {
  auto model = nn::make_gpt(gpt_config(shape, context));
  pipeline::PipelineOptions options{1, "gpipe", pipeline::Recompute::Never, {}, 0};
  if (slices.size() > 1) options.token_slices = slices;
  pipeline::Pipeline pipe(model, pipeline::partition_uniform(*model, stages), options,
                          [](const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); });
  Generator g(1);
  const datasets::Batch batch{randint(0, 256, {1, context}, g), randint(0, 256, {1, context}, g), 0};
  pipe.run(batch, 0);  // warm-up: allocations, first touches
  model->zero_grad();
  const auto start = std::chrono::steady_clock::now();
  pipe.run(batch, 1);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The simulated makespan of TeraPipe's order with M micro-batches of `batch` sequences, each
// cut into `slices`, every one of K stages costing what the cost model says; a slice's
// forward takes a third of its time and its backward the rest.
double simulated_seconds(const pipeline::SliceCostModel& cost, int stages, int micro_batches, int64_t batch,
                         const std::vector<int64_t>& slices) {
  const pipeline::Schedule schedule = pipeline::gpipe_schedule(stages, micro_batches, static_cast<int>(slices.size()));
  pipeline::CostModel costs = pipeline::CostModel::uniform(stages, 1, 1);
  std::vector<double> forward, backward;
  int64_t context = 0;
  for (int64_t length : slices) {
    const double t = cost(batch, length, context);
    forward.push_back(t / 3), backward.push_back(2 * t / 3);
    context += length;
  }
  costs.slice_forward.assign(stages, forward);
  costs.slice_backward.assign(stages, backward);
  return pipeline::simulate(schedule, costs).makespan;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minipipe: TeraPipe's token slices against no slicing and uniform slices, on CPU stages"};
  GptShape shape{128, 4, 4};
  int stages = 2, repeats = 5;
  std::vector<int64_t> contexts{512, 1024, 2048}, simulate_stages{4, 8}, simulate_batches{1, 4, 16};
  std::string json_path;
  app.add_option("--contexts", contexts, "tokens per sequence, comma-separated")->delimiter(',')->capture_default_str();
  app.add_option("--stages", stages, "stages K (a thread each)")->capture_default_str();
  app.add_option("--dim", shape.dim, "model width")->capture_default_str();
  app.add_option("--layers", shape.layers, "Transformer blocks")->capture_default_str();
  app.add_option("--heads", shape.heads, "attention heads")->capture_default_str();
  app.add_option("--repeats", repeats, "timings per row (median reported)")->capture_default_str();
  app.add_option("--simulate-stages", simulate_stages, "deeper pipelines to simulate with the measured cost model")
      ->delimiter(',')->capture_default_str();
  app.add_option("--simulate-batches", simulate_batches, "sequences per step to simulate")->delimiter(',')->capture_default_str();
  app.add_option("--json", json_path, "also write the rows as JSON here");
  CLI11_PARSE(app, argc, argv);
  if (stages < 2 || stages > shape.layers + 2) {
    std::fprintf(stderr, "--stages must be between 2 and --layers + 2\n");
    return 2;
  }

  struct Row {
    int64_t context;
    std::string slicing;
    std::vector<int64_t> slices;
    double one_stage = 0, k_stages = 0;  // tokens per second
  };
  struct Simulated {
    int64_t context, batch;
    int stages;
    double gain;  // best micro-batching alone / planner (micro-batches and slices)
    std::string plan;
  };
  std::vector<Row> rows;
  std::vector<Simulated> simulated;
  for (int64_t context : contexts) {
    auto model = nn::make_gpt(gpt_config(shape, context));
    const pipeline::StagePlan plan = pipeline::partition_uniform(*model, stages);
    Generator g(0);
    const pipeline::SliceCostModel cost = pipeline::profile_slice_costs(pipeline::stage_modules(*model, plan), randint(0, 256, {1, context}, g));
    const pipeline::SlicePlan planned =
        pipeline::plan_token_slices(cost, 1, context, stages, pipeline::default_slice_granularity(context));
    const int count = static_cast<int>(planned.lengths.size());
    std::vector<Row> these{{context, "no slicing", {context}},
                           {context, "uniform", pipeline::uniform_token_slices(context, count)},
                           {context, "planner", planned.lengths}};
    std::vector<std::vector<double>> one(these.size()), many(these.size());
    for (int r = 0; r < repeats; ++r)  // alternated, so that drifts of the machine hit every row alike
      for (size_t i = 0; i < these.size(); ++i) {
        one[i].push_back(step_seconds(shape, context, 1, these[i].slices));
        many[i].push_back(step_seconds(shape, context, stages, these[i].slices));
      }
    for (size_t i = 0; i < these.size(); ++i) {
      these[i].one_stage = static_cast<double>(context) / benchmarks::median(one[i]);
      these[i].k_stages = static_cast<double>(context) / benchmarks::median(many[i]);
      rows.push_back(these[i]);
    }
    std::fprintf(stderr, "measured context %lld (cost model %s)\n", static_cast<long long>(context), cost.str().c_str());
    for (int64_t k : simulate_stages)
      for (int64_t batch : simulate_batches) {
        // GPipe alone: the best count of micro-batches, whole sequences.
        double micro_batching = 1e300;
        for (int64_t m = 1; m <= batch; ++m)
          if (batch % m == 0)
            micro_batching = std::min(micro_batching, simulated_seconds(cost, static_cast<int>(k), static_cast<int>(m), batch / m, {context}));
        const pipeline::SlicePlan best = pipeline::plan_batch_and_token_slices(cost, batch, context, static_cast<int>(k),
                                                                              pipeline::default_slice_granularity(context));
        const double sliced = simulated_seconds(cost, static_cast<int>(k), best.micro_batches, batch / best.micro_batches, best.lengths);
        simulated.push_back({context, batch, static_cast<int>(k), micro_batching / sliced,
                             std::to_string(best.micro_batches) + " x " + std::to_string(best.lengths.size()) + " slices"});
      }
  }

  std::printf("%-8s %-11s %-7s %12s %12s %10s %8s %10s\n", "context", "slicing", "slices", "1 stage t/s", "K stages t/s",
              "vs none", "ideal", "overlap");
  const Row* none = nullptr;
  for (const Row& r : rows) {
    if (r.slicing == "no slicing") none = &r;
    const double n = static_cast<double>(r.slices.size());
    std::printf("%-8lld %-11s %-7zu %12.0f %12.0f %9.2fx %7.2fx %9.2fx\n", static_cast<long long>(r.context), r.slicing.c_str(),
                r.slices.size(), r.one_stage, r.k_stages, r.k_stages / none->k_stages, stages * n / (n + stages - 1),
                r.k_stages / r.one_stage);
  }
  std::printf("(tokens/s, median of %d; K = %d CPU stages; GPT dim %lld, %lld layers, %lld heads; batch 1; 'vs none' = K-stage "
              "rate over no slicing's; 'overlap' = K-stage over 1-stage rate of the same slicing; ideal overlap "
              "K n / (n + K - 1); %u hardware threads)\n",
              repeats, stages, static_cast<long long>(shape.dim), static_cast<long long>(shape.layers),
              static_cast<long long>(shape.heads), std::thread::hardware_concurrency());
  std::printf("\nsimulated with the measured cost model (every stage as measured): planner's micro-batches and slices "
              "against GPipe's best micro-batching alone\n");
  std::printf("%-8s %-7s %-7s %8s  %s\n", "context", "batch", "stages", "gain", "planner");
  for (const Simulated& s : simulated)
    std::printf("%-8lld %-7lld %-7d %7.2fx  %s\n", static_cast<long long>(s.context), static_cast<long long>(s.batch), s.stages,
                s.gain, s.plan.c_str());
  std::printf("(TeraPipe, section 5: the gain grows with the sequence length and shrinks as the batch grows, "
              "since micro-batches then fill the pipeline too)\n");
  if (!json_path.empty()) {
    std::vector<std::string> objects;
    for (const Row& r : rows)
      objects.push_back("{\"context\": " + std::to_string(r.context) + ", \"slicing\": \"" + r.slicing + "\", \"slices\": \"" +
                        pipeline::format_token_slices(r.slices) + "\", \"stages\": " + std::to_string(stages) +
                        ", \"one_stage_tokens_per_second\": " + std::to_string(r.one_stage) +
                        ", \"tokens_per_second\": " + std::to_string(r.k_stages) + "}");
    for (const Simulated& s : simulated)
      objects.push_back("{\"simulated\": true, \"context\": " + std::to_string(s.context) + ", \"batch\": " +
                        std::to_string(s.batch) + ", \"stages\": " + std::to_string(s.stages) + ", \"gain\": " +
                        std::to_string(s.gain) + ", \"plan\": \"" + s.plan + "\"}");
    if (!benchmarks::write_json_array(json_path, objects)) return 1;
  }
  return 0;
}

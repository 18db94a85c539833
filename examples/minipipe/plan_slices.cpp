// `minipipe plan-slices gpt`: TeraPipe's slice planner (section 3.3) on a GPT measured on this
// machine. Prints the cost model fitted to timed slices, the planned slicing and its predicted
// latency beside uniform slicings and no slicing.
#include <cstdio>

#include "commands.h"
#include "memory_budget.h"
#include "nn/transformer.h"
#include "pipeline/partition.h"
#include "pipeline/slice_planner.h"
#include "pipeline/token_slices.h"
#include "tensor/factories.h"
#include "training_log.h"

namespace minipipe::cli {

int plan_slices(const PlanSlicesOptions& o) {
  const int64_t layers = o.layers > 0 ? o.layers : 2 * o.stages;
  const nn::GPTConfig config{256, o.context, o.dim, layers, o.heads, 0.0f, 0};
  check_memory_budget(gpt_training_bytes(config, o.batch_size), o.memory_limit_mib,
                      "timing slices of a GPT of " + std::to_string(layers) + " layers of width " + std::to_string(o.dim) +
                          " on " + std::to_string(o.batch_size) + " x " + std::to_string(o.context) + " tokens",
                      "lower --stages, --layers, --dim, --context or --batch-size");
  auto model = nn::make_gpt(config);
  if (static_cast<int64_t>(model->size()) < o.stages)
    throw std::invalid_argument(std::to_string(o.stages) + " stages need at least " + std::to_string(o.stages - 2) +
                                " layers (the embedding and the head are layers too): raise --layers");
  const pipeline::StagePlan plan = pipeline::partition_uniform(*model, o.stages);
  Generator g(0);
  const int64_t granularity = o.granularity > 0 ? o.granularity : pipeline::default_slice_granularity(o.context);
  if (!o.json)
    std::fprintf(stderr, "timing slices of a %lld-layer GPT (dim %lld) cut into %d stages, %lld x %lld tokens...\n",
                 static_cast<long long>(layers), static_cast<long long>(o.dim), o.stages, static_cast<long long>(o.batch_size),
                 static_cast<long long>(o.context));
  const pipeline::SliceCostModel cost =
      pipeline::profile_slice_costs(pipeline::stage_modules(*model, plan), randint(0, 256, {o.batch_size, o.context}, g), o.repeats);
  const pipeline::SlicePlan chosen =
      pipeline::plan_batch_and_token_slices(cost, o.batch_size, o.context, o.stages, granularity);
  const int64_t micro_batch = o.batch_size / chosen.micro_batches;
  auto latency = [&](const std::vector<int64_t>& lengths) {
    return pipeline::slicing_seconds(cost, micro_batch, lengths, o.stages, chosen.micro_batches);
  };
  const int count = static_cast<int>(chosen.lengths.size());
  const std::vector<int64_t> uniform = pipeline::uniform_token_slices(o.context, count);
  const double unsliced = pipeline::slicing_seconds(cost, o.batch_size, {o.context}, o.stages, 1);
  if (o.json) {
    std::printf("%s\n", JsonObject().add("context", o.context).add("stages", static_cast<int64_t>(o.stages))
                            .add("batch_size", o.batch_size).add("micro_batches", static_cast<int64_t>(chosen.micro_batches))
                            .add("granularity", granularity).add_raw("planned_slices", json_list(chosen.lengths))
                            .add("planned_seconds", chosen.seconds).add("uniform_seconds", latency(uniform))
                            .add("unsliced_seconds", unsliced).add("cost_model", cost.str()).str().c_str());
    return 0;
  }
  std::printf("cost model (forward + backward of a slice on the slowest stage): %s\n", cost.str().c_str());
  std::printf("batch %lld in %d micro-batch%s of %lld, %lld tokens, %d stages, granularity %lld\n",
              static_cast<long long>(o.batch_size), chosen.micro_batches, chosen.micro_batches > 1 ? "es" : "",
              static_cast<long long>(micro_batch), static_cast<long long>(o.context), o.stages,
              static_cast<long long>(granularity));
  std::printf("  %-28s %8s  %s\n", "slicing", "ms", "lengths");
  std::printf("  %-28s %8.2f  %s\n", "planner", 1e3 * chosen.seconds, pipeline::format_token_slices(chosen.lengths).c_str());
  std::printf("  %-28s %8.2f  %s\n", ("uniform, " + std::to_string(count) + " slices").c_str(), 1e3 * latency(uniform),
              pipeline::format_token_slices(uniform).c_str());
  std::printf("  %-28s %8.2f  %lld\n", "no slicing, no micro-batches", 1e3 * unsliced, static_cast<long long>(o.context));
  std::printf("predicted speedup %.2fx over no slicing, %.2fx over uniform slices\n", unsliced / chosen.seconds,
              latency(uniform) / chosen.seconds);
  return 0;
}

}  // namespace minipipe::cli

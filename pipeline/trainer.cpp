#include "pipeline/trainer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>
#include <type_traits>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "kernels/profile.h"
#include "pipeline/data_parallel.h"
#include "pipeline/pipedream.h"
#include "pipeline/planner.h"
#include "pipeline/profile.h"
#include "pipeline/slice_planner.h"
#include "pipeline/token_slices.h"
#include "pipeline/zb_auto.h"

namespace minipipe::pipeline {

Trainer::Trainer(std::shared_ptr<nn::Sequential> model, LossFunction loss, const Tensor& sample, TrainerOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  start(std::move(loss), sample, nullptr);
}

Trainer::Trainer(const nn::ModelRecipe& recipe, LossFunction loss, const Tensor& sample, TrainerOptions options)
    : options_(std::move(options)) {
  start(std::move(loss), sample, &recipe);
}

void Trainer::start(LossFunction loss, const Tensor& sample, const nn::ModelRecipe* recipe) {
  if (!options_.optimizer.make) throw std::invalid_argument("trainer: OptimizerSetup::make must build an optimizer");
  ScheduleSpec& spec = options_.schedule;
  if (options_.data_parallel > 1 && spec.asynchronous()) {  // PipeDream's data parallelism: every stage replicated
    if (!spec.replicas.empty() || options_.plan_stages)
      throw std::invalid_argument("--data-parallel " + std::to_string(options_.data_parallel) + " replicates every stage of "
                                  "pipedream as often: drop --replicas and --plan auto, which choose replicas per stage");
    spec.replicas.assign(spec.stages, options_.data_parallel);
  }
  spec.check();
  join_process_group();
  if (recipe) {
    // Under mpirun the plan is made on a model of absent layers, which know their sizes.
    model_ = group_ ? recipe->skeleton(true) : recipe->build();
    model_->to(options_.device);
  }
  check_options(*model_);
  StagePlan plan = make_plan(sample, recipe);  // the planner may choose fewer stages, replicated
  token_slices_ = plan_token_slices(plan, sample, recipe);
  const bool zb_auto_measured = options_.schedule.name == "zb-auto" && measure_zb_auto_costs(plan, sample, recipe);
  // pipedream's programs follow each call's mini-batches, so it is built by name; every other
  // schedule is built here, once, from its description (a file's included).
  std::optional<Schedule> schedule;
  if (!spec.asynchronous()) schedule = build_schedule(spec);
  if (spec.name == "zb-auto") note_zb_auto(*schedule, zb_auto_measured);
  if (group_) {
    ScheduleSpec layout = spec;  // pipedream's programs, for its layout: one round of mini-batches over the replicas
    if (spec.asynchronous()) layout.mini_batches = round_robin_groups(spec.replicas);
    keep_own_layers(plan, schedule ? *schedule : build_schedule(layout), recipe);
  }
  PipelineOptions p = options_.pipeline;
  p.schedule = spec.name;
  p.micro_batches = spec.micro_batches;
  p.virtual_stages = spec.virtual_stages;
  p.weights = spec.weights.value_or(WeightPolicy::Stash);
  p.replicas = spec.replicas;
  p.token_slices = token_slices_;
  if (p.stage_devices.empty()) p.stage_devices.assign(spec.stages, options_.device);
  if (group_) p.remote_stages = group_->remote_stages(options_.rank_timeout_seconds);
  if (options_.model_factory)
    p.model_factory = [factory = options_.model_factory, device = options_.device] {
      std::shared_ptr<nn::Sequential> copy = factory();
      copy->to(device);
      return copy;
    };
  else if (recipe)
    p.model_factory = [recipe = *recipe, device = options_.device] {
      std::shared_ptr<nn::Sequential> copy = recipe.build();
      copy->to(device);
      return copy;
    };
  if (!group_ && options_.data_parallel > 1 && schedule)  // in one process: replicas 1 .. D-1 beside the trainer's pipeline
    replicas_ = std::make_unique<PipelineReplicas>(options_.data_parallel, p.model_factory, plan, *schedule, p, loss);
  pipeline_ = schedule ? std::make_unique<Pipeline>(model_, std::move(plan), std::move(*schedule), std::move(p), std::move(loss))
                       : std::make_unique<Pipeline>(model_, std::move(plan), std::move(p), std::move(loss));
  stats_.peak_bytes.assign(pipeline_->workers(), 0);
  stats_.peak_weight_versions.assign(pipeline_->workers(), 1);
  stats_.peak_stash_bytes.assign(pipeline_->workers(), 0);
  make_optimizers();
}

// The layers of the pieces this rank's stage runs.
std::vector<bool> Trainer::own_layers(const StagePlan& plan, const Schedule& schedule) const {
  std::vector<bool> own(model_->size(), false);
  for (int piece = 0; piece < schedule.pieces(); ++piece) {
    if (schedule.stage_of_piece(piece) != group_->stage()) continue;
    const int first = plan.first_layer(piece);
    for (int i = first; i < first + plan.layers_per_stage[piece]; ++i) own[i] = true;
  }
  return own;
}

namespace {
// The weights layers of a whole model share: a tensor two layers hold.
std::vector<nn::ModelRecipe::Tie> ties_of(const nn::Sequential& model) {
  std::map<const TensorImpl*, std::vector<std::pair<size_t, std::string>>> holders;
  for (size_t i = 0; i < model.size(); ++i)
    for (const auto& [name, p] : model[i]->named_parameters()) holders[p.impl()].emplace_back(i, model.name_of(i) + "." + name);
  std::vector<nn::ModelRecipe::Tie> ties;
  for (const auto& [impl, held] : holders) {
    if (held.size() < 2) continue;
    if (held.size() > 2)
      throw std::invalid_argument("'" + held[0].second + "' is held by " + std::to_string(held.size()) + " layers; across "
                                  "processes a weight may be tied between two layers only");
    ties.push_back({held[1].first, held[1].second, held[0].first, held[0].second});
  }
  return ties;
}

int stage_of_layer(const StagePlan& plan, const Schedule& schedule, size_t layer) {
  for (int piece = 0; piece < plan.stages(); ++piece)
    if (static_cast<int>(layer) < plan.first_layer(piece) + plan.layers_per_stage[piece]) return schedule.stage_of_piece(piece);
  throw std::logic_error("layer " + std::to_string(layer) + " is past the plan");
}
}  // namespace

// Under mpirun: this rank's layers built (from the recipe) or kept (from a whole model), the
// others absent. A weight tied between a layer held here and one held by another rank is held
// by both (the recipe draws both copies from the earlier layer's streams), and
// add_tied_gradients keeps the copies equal.
void Trainer::keep_own_layers(const StagePlan& plan, const Schedule& schedule, const nn::ModelRecipe* recipe) {
  const std::vector<bool> own = own_layers(plan, schedule);
  const std::vector<nn::ModelRecipe::Tie> ties = recipe ? recipe->ties : ties_of(*model_);
  if (recipe) {  // the skeleton's absent layers, which know their counts and skips, stay for the others' layers
    const std::shared_ptr<nn::Sequential> skeleton = model_;
    model_ = recipe->build(own);
    model_->to(options_.device);
    for (size_t i = 0; i < model_->size(); ++i)
      if (!own[i]) model_->replace(i, (*skeleton)[i]);
  } else {
    for (size_t i = 0; i < model_->size(); ++i)
      if (!own[i]) model_->replace(i, nn::AbsentLayer::standing_for(model_->name_of(i), *(*model_)[i]));
  }
  std::map<std::string, Tensor> held;
  for (const auto& [name, p] : model_->named_parameters()) held[name] = p;
  for (const nn::ModelRecipe::Tie& tie : ties) {
    if (own[tie.layer] == own[tie.earlier_layer]) continue;
    if (options_.schedule.asynchronous())  // as in one process: the stages would update the two copies at different times
      throw std::invalid_argument("tied weight '" + tie.name + " = " + tie.earlier_name + "' is held by two stages, whose "
                                  "weights " + options_.schedule.name + " updates at different times; untie it "
                                  "(drop --tie-embeddings) or use a synchronous schedule");
    const bool later = own[tie.layer];
    const std::string& name = later ? tie.name : tie.earlier_name;
    if (!held.count(name)) throw std::logic_error("tied weight '" + name + "' is not among this rank's parameters");
    const int peer = group_->rank_of(stage_of_layer(plan, schedule, later ? tie.earlier_layer : tie.layer), group_->replica());
    tied_across_ranks_.push_back({held.at(name), name, tie.earlier_name, later, peer});
  }
}

std::map<std::string, std::string> Trainer::tied_copies() const {
  std::map<std::string, std::string> copies;
  for (const TiedAcrossRanks& t : tied_across_ranks_)
    if (t.later) copies[t.name] = t.saved_as;
  return copies;
}

// One process adds a tied weight's gradients in stage order: the earlier layer's, then the
// later's (Pipeline::add_tied_gradients). The two ranks exchange theirs and add them in the
// same order, so both copies get the same gradient, take the same step and stay equal.
void Trainer::add_tied_gradients() const {
  NoGradGuard no_grad;
  for (const TiedAcrossRanks& t : tied_across_ranks_) {
    const Tensor mine = t.tensor.grad().defined() ? t.tensor.grad() : zeros_like(t.tensor);
    const Tensor theirs = group_->exchange_tied(t.peer, mine);
    t.tensor.set_grad(t.later ? add(theirs, mine) : add(mine, theirs));
  }
}

// What the schedule's own check cannot see: the plan and the model.
void Trainer::check_options(const nn::Sequential& model) const {
  const ScheduleSpec& spec = options_.schedule;
  const bool interleaved = spec.name == "interleaved";
  if (interleaved && options_.plan_stages)
    throw std::invalid_argument("--plan auto chooses stages, not the chunks of the interleaved schedule: use --partition");
  if (!spec.file.empty() && (options_.plan_stages || options_.plan_token_slices))
    throw std::invalid_argument("--schedule-file " + spec.file + " fixes the stages and whole sequences: drop --plan auto and "
                                "--token-slices auto");
  if (interleaved && spec.pieces() > static_cast<int>(model.size()))
    throw std::invalid_argument("--stages " + std::to_string(spec.stages) + " x --virtual-stages " +
                                std::to_string(spec.virtual_stages) + " pieces do not fit a model of " +
                                std::to_string(model.size()) + " layers: lower --stages or --virtual-stages");
  if (is_v_schedule(spec.name) && spec.pieces() > static_cast<int>(model.size()))
    throw std::invalid_argument("--schedule " + spec.name + "'s " + std::to_string(spec.pieces()) +
                                " pieces (2 chunks per stage) do not fit a model of " + std::to_string(model.size()) +
                                " layers: lower --stages");
  if (!options_.pipeline.stage_devices.empty() && static_cast<int>(options_.pipeline.stage_devices.size()) != spec.stages)
    throw std::invalid_argument("--stage-devices names " + std::to_string(options_.pipeline.stage_devices.size()) +
                                " devices for " + std::to_string(spec.stages) + " stages");
  if (options_.data_parallel < 1)
    throw std::invalid_argument("--data-parallel is " + std::to_string(options_.data_parallel) + ": give 1 or more replicas");
}

// Multi-process runs: every process makes the same plan and runs its own stage.
void Trainer::join_process_group() {
  const ScheduleSpec& spec = options_.schedule;
  if (!launched_by_mpirun()) return;
  group_ = std::make_unique<ProcessGroup>(spec.stages, options_.data_parallel, options_.device);
  group_->check_same_on_every_rank("command line", options_.same_on_every_rank);
  auto refuse = [](const std::string& what, const std::string& instead) {
    throw std::invalid_argument(what + " is not available across processes yet: " + instead);
  };
  if (spec.asynchronous() && !spec.replicas.empty() && options_.data_parallel == 1)
    refuse("pipedream's --replicas", "give --data-parallel D, which replicates every stage D times, a rank each");
  if (!options_.pipeline.stage_devices.empty())
    refuse("--stage-devices", "each rank runs its stage on --device (cuda: the rank's own GPU)");
}

// Interleaved: the model in stages x v pieces, stage s running pieces s, s + K, ...
StagePlan Trainer::make_plan(const Tensor& sample, const nn::ModelRecipe* recipe) {
  const bool timed = options_.plan_stages || options_.partition == "time";
  if (!timed) return make_partition(*model_, options_.schedule.pieces(), options_.partition, sample);
  auto timed_plan = [&] {
    const int repeats = options_.plan_stages ? 5 : 3;
    const std::vector<LayerProfile> profiles = group_ && recipe ? profile_layers(*recipe, sample, options_.device, repeats)
                                                                : profile_layers(*model_, sample, repeats);
    return options_.plan_stages ? planned_partition(profiles) : partition_by_time(*model_, options_.schedule.pieces(), profiles);
  };
  if (!group_) return timed_plan();
  // Timings differ from process to process, so rank 0 times the layers (one at a time, from a
  // recipe) and plans, and every rank takes its plan: the balance, and the method's words.
  const std::string agreed = decided_on_rank_zero([&] {
    const StagePlan plan = timed_plan();
    if (plan.stages() != options_.schedule.pieces())
      throw std::invalid_argument("--plan auto chose " + std::to_string(plan.stages()) + " stages, but mpirun started " +
                                  std::to_string(group_->size()) + " processes for " +
                                  std::to_string(options_.schedule.pieces()) + ": start mpirun -np " +
                                  std::to_string(plan.stages() * group_->replicas()) + " with --stages " +
                                  std::to_string(plan.stages()) + ", or give --partition");
    std::string text;
    for (int layers : plan.layers_per_stage) text += std::to_string(layers) + " ";
    return text + "\n" + plan.method;
  });
  const size_t newline = agreed.find('\n');
  std::vector<int> balance;
  std::istringstream numbers(agreed.substr(0, newline));
  for (int layers; numbers >> layers;) balance.push_back(layers);
  StagePlan plan = partition_explicit(*model_, balance);
  plan.method = agreed.substr(newline + 1) + " (planned on rank 0)";
  return plan;
}

// Under mpirun: what rank 0 decides, on every rank; a failure there is thrown on every rank.
std::string Trainer::decided_on_rank_zero(const std::function<std::string()>& decide) const {
  std::string text;
  if (group_->rank() == 0) {
    try {
      text = "ok\n" + decide();
    } catch (const std::exception& e) {
      text = std::string("error\n") + e.what();
    }
  }
  text = group_->broadcast_from_rank_zero(text);
  const size_t newline = text.find('\n');
  if (text.compare(0, newline, "error") == 0) throw std::invalid_argument(text.substr(newline + 1));
  return text.substr(newline + 1);
}

StagePlan Trainer::planned_partition(const std::vector<LayerProfile>& profiles) {
  // `stages` counts workers: PipeDream's planner chooses the stages among them and, under
  // pipedream with stash or none, how many replicas each gets. Its time is per micro-batch.
  ScheduleSpec& spec = options_.schedule;
  const WeightPolicy weights = spec.weights.value_or(WeightPolicy::Stash);
  // Replicated stages run in one process only.
  const bool replicas_may_run =
      !group_ && spec.asynchronous() && (weights == WeightPolicy::Stash || weights == WeightPolicy::None);
  PlannerOptions planner;  // field by field: a braced {} would zero the default link
  planner.workers = spec.stages;
  planner.most_replicas = replicas_may_run ? 0 : 1;
  const PipelinePlan chosen = plan_pipeline(profiles, planner);
  planned_seconds_per_mini_batch_ = chosen.seconds_per_mini_batch * spec.micro_batches;
  StagePlan plan = partition_explicit(*model_, chosen.balance());
  plan.method = "PipeDream's planner (predicted " + std::to_string(1e3 * planned_seconds_per_mini_batch_) +
                " ms per mini-batch in the steady state; bottleneck: " + chosen.bottleneck + ")";
  if (chosen.replicated()) spec.replicas = chosen.replicas();
  if (!options_.pipeline.stage_devices.empty() && plan.stages() != spec.stages)
    throw std::invalid_argument("--plan auto chose " + std::to_string(plan.stages()) + " stages for " +
                                std::to_string(spec.stages) + " workers, so --stage-devices cannot name one device per "
                                "stage in advance: drop --stage-devices or --plan");
  spec.stages = plan.stages();
  return plan;
}

std::vector<int64_t> Trainer::plan_token_slices(const StagePlan& plan, const Tensor& sample, const nn::ModelRecipe* recipe) {
  const int count = options_.schedule.token_slices;
  if (count <= 1 && !options_.plan_token_slices && options_.token_slice_lengths.empty()) return {};
  const std::string flag = options_.plan_token_slices ? "auto" : std::to_string(count);
  if (sample.dim() != 2)
    throw std::invalid_argument("--token-slices cuts token sequences: it needs a model fed [batch, tokens] (the gpt)");
  const int64_t tokens = sample.shape()[1];
  if (!options_.token_slice_lengths.empty()) {
    if (options_.plan_token_slices) throw std::invalid_argument("give token slices' lengths or auto, not both");
    check_token_slices(options_.token_slice_lengths, tokens);
    options_.schedule.token_slices = static_cast<int>(options_.token_slice_lengths.size());
    return options_.token_slice_lengths;
  }
  if (!options_.plan_token_slices) {
    if (count > tokens)
      throw std::invalid_argument("--token-slices " + flag + " exceeds the " + std::to_string(tokens) +
                                  " tokens of a sequence: use at most " + std::to_string(tokens));
    return uniform_token_slices(tokens, count);
  }
  // TeraPipe section 3.3: time slices on the stages as they will run, then plan. Under mpirun
  // rank 0 times every stage, each built alone from the recipe in its turn (or cut from the
  // whole model, which the process holds until its plan is made), and every rank takes its plan.
  const int micro_batches = options_.schedule.micro_batches;
  auto decide = [&] {
    const SliceCostModel cost =
        group_ && recipe ? profile_slice_costs(plan.stages(), [&](int piece) { return piece_from_recipe(*recipe, plan, piece); }, sample)
                         : profile_slice_costs(stage_modules(*model_, plan), sample);
    const int64_t batch = sample.shape()[0];
    const SlicePlan chosen =
        pipeline::plan_token_slices(cost, batch, tokens, plan.stages(), default_slice_granularity(tokens), micro_batches);
    const double unsliced = slicing_seconds(cost, batch, {tokens}, plan.stages(), micro_batches);
    char note[256];
    std::snprintf(note, sizeof note, "predicted %.1f ms per mini-batch against %.1f ms unsliced; cost model ",
                  1e3 * chosen.seconds, 1e3 * unsliced);
    char seconds[64];  // exactly, in hexadecimal
    std::snprintf(seconds, sizeof seconds, "%a", chosen.seconds);
    std::string text = seconds;
    for (int64_t length : chosen.lengths) text += " " + std::to_string(length);
    return text + "\ntoken slices by TeraPipe's planner: " + format_token_slices(chosen.lengths) + ", " + note + cost.str() +
           (group_ ? " (planned on rank 0)" : "");
  };
  const std::string decided = group_ ? decided_on_rank_zero(decide) : decide();
  const size_t newline = decided.find('\n');
  std::istringstream numbers(decided.substr(0, newline));
  std::string seconds;
  numbers >> seconds;
  planned_seconds_per_mini_batch_ = std::strtod(seconds.c_str(), nullptr);
  std::vector<int64_t> lengths;
  for (int64_t length; numbers >> length;) lengths.push_back(length);
  planner_note_ = decided.substr(newline + 1);
  options_.schedule.token_slices = static_cast<int>(lengths.size());
  return lengths;
}

// zb-auto's costs, when none were given: each stage's forward, backward and W from its layers'
// timings on one micro-batch. Under mpirun rank 0 times them (each layer built alone) and every
// rank takes its numbers, so that all build the same schedule. Returns whether it measured.
bool Trainer::measure_zb_auto_costs(const StagePlan& plan, const Tensor& sample, const nn::ModelRecipe* recipe) {
  ScheduleSpec& spec = options_.schedule;
  if (spec.costs) return false;
  auto measure = [&] {
    const std::vector<LayerProfile> layers =
        group_ && recipe ? profile_layers(*recipe, sample, options_.device) : profile_layers(*model_, sample);
    return format_costs(zb_auto_costs_from_layers(layers, plan.layers_per_stage));
  };
  spec.costs = parse_costs(group_ ? decided_on_rank_zero(measure) : measure());
  return true;
}

// zb-auto's predicted step beside zb-h1's on the same costs, for the log.
void Trainer::note_zb_auto(const Schedule& schedule, bool measured) {
  const ScheduleSpec& spec = options_.schedule;
  const double predicted = simulate(schedule, *spec.costs).makespan,
               h1 = simulate(make_schedule("zb-h1", spec.stages, spec.micro_batches), *spec.costs).makespan;
  char note[200];
  std::snprintf(note, sizeof note, "zb-auto from each stage's %s F, B and W: predicted %.1f ms per mini-batch, zb-h1 %.1f ms on the same costs",
                measured ? "measured" : "given", 1e3 * predicted, 1e3 * h1);
  planner_note_ += (planner_note_.empty() ? "" : "\n") + std::string(note) + (group_ && measured ? " (measured on rank 0)" : "");
  planned_seconds_per_mini_batch_ = predicted;
}

// Piece `piece` of the plan built alone from the recipe, on the trainer's device.
std::shared_ptr<nn::Sequential> Trainer::piece_from_recipe(const nn::ModelRecipe& recipe, const StagePlan& plan, int piece) const {
  std::vector<bool> wanted(recipe.size(), false);
  const int first = plan.first_layer(piece);
  for (int i = first; i < first + plan.layers_per_stage[piece]; ++i) wanted[i] = true;
  const std::shared_ptr<nn::Sequential> model = recipe.build(wanted);
  model->to(options_.device);
  return stage_modules(*model, plan)[piece];
}

void Trainer::make_optimizers() {
  const OptimizerSetup& setup = options_.optimizer;
  if (!asynchronous()) {
    optimizers_.push_back(setup.make(model_->named_parameters()));
    return;
  }
  // Under mpirun a rank steps its own stage's replica only.
  for (int s = 0; s < pipeline_->stages(); ++s)
    for (int r = 0; r < pipeline_->replicas(s); ++r)
      if (!group_ || (s == group_->stage() && r == group_->replica()))
        optimizers_.push_back(setup.make(pipeline_->replica(s, r)->named_parameters()));
  pipeline_->set_optimizer_step([this](int s, int r, uint64_t step) {  // on the replica's thread
    const kernels::ProfilePhase phase("optimizer");
    nn::Optimizer& own = *optimizers_[group_ ? 0 : pipeline_->schedule().first_worker(s) + r];
    own.set_learning_rate(learning_rate(static_cast<int64_t>(step)));
    const float clip = options_.optimizer.clip_norm;
    own.step(clip > 0 ? nn::clip_factor(nn::squared_gradient_norms(pipeline_->replica(s, r)->parameters()), clip) : 1.0f);
    own.zero_grad();
  });
}

std::vector<float> Trainer::train(const std::vector<datasets::Batch>& batches, int64_t first_step) {
  struct AddTime {  // whichever way train() returns
    TrainingStats& stats;
    size_t mini_batches;
    const ProcessGroup* group;
    SentBytes sent = group ? group->sent_bytes() : SentBytes{};
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    ~AddTime() {
      stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      stats.mini_batches += static_cast<int64_t>(mini_batches);
      if (!group) return;
      const SentBytes now = group->sent_bytes() - sent;
      stats.sent_bytes = stats.sent_bytes + now;
    }
  } add_time{stats_, batches.size(), group_.get()};
  std::vector<float> losses;
  stats_.last_call_mini_batches = static_cast<int64_t>(batches.size());
  if (asynchronous()) {
    StepResult result = pipeline_->run_async(batches, static_cast<uint64_t>(first_step));
    if (group_)  // the rank of the last piece holds the losses
      for (float& loss : result.losses) loss = static_cast<float>(group_->sum(holds_loss() ? loss : 0.0));
    record(result, losses);
    return losses;
  }
  nn::Optimizer& optimizer = *optimizers_.front();  // over the layers this process holds
  for (size_t i = 0; i < batches.size(); ++i) {
    const int64_t step = first_step + static_cast<int64_t>(i);
    optimizer.set_learning_rate(learning_rate(step));
    const uint64_t at = static_cast<uint64_t>(step);
    StepResult result = replicas_ ? replicas_->run(*pipeline_, batches[i], at)
                        : group_  ? pipeline_->run(data_parallel_share(batches[i], group_->replica(), group_->replicas()), at)
                                  : pipeline_->run(batches[i], at);
    if (group_) result.losses = {gather_step(result)};
    record(result, losses);
    const kernels::ProfilePhase phase("optimizer");
    optimizer.step(clip_factor());
    optimizer.zero_grad();
  }
  return losses;
}

void Trainer::record(StepResult& result, std::vector<float>& losses) {
  for (size_t w = 0; w < stats_.peak_bytes.size(); ++w) {
    stats_.peak_bytes[w] = std::max(stats_.peak_bytes[w], result.peak_bytes[w]);
    stats_.peak_weight_versions[w] = std::max(stats_.peak_weight_versions[w], result.peak_weight_versions[w]);
    stats_.peak_stash_bytes[w] = std::max(stats_.peak_stash_bytes[w], result.peak_stash_bytes[w]);
  }
  if (measures_bubble()) stats_.bubble_sum += summarize(result.trace, pipeline_->workers()).bubble_fraction;
  ++stats_.pipeline_runs;
  stats_.last_trace = std::move(result.trace);
  stats_.last_trace_origin_us = result.trace_origin_us;
  losses.insert(losses.end(), result.losses.begin(), result.losses.end());
}

// Under mpirun, after a run: this rank's gradients averaged over its stage's replicas, and
// the mini-batch's loss.
float Trainer::gather_step(const StepResult& result) const {
  add_tied_gradients();
  group_->average_over_replicas(model_->parameters());
  // The last stage of each replica holds its shard's mean loss; the shards are equal.
  return static_cast<float>(group_->sum(holds_loss() ? result.loss : 0.0) / group_->replicas());
}

// By the global norm, scaled as the optimizer reads the gradients. Under mpirun each rank has
// its own parameters' squared norms; every rank adds all of them in model order, as one
// process would: the ranks send (layer, squared norm) pairs, since under interleaving a rank's
// layers are not one run of the model's.
float Trainer::clip_factor() const {
  if (options_.optimizer.clip_norm <= 0) return 1.0f;
  const std::vector<Tensor> parameters = model_->parameters();
  const std::vector<double> own = nn::squared_gradient_norms(parameters);
  if (!group_) return nn::clip_factor(own, options_.optimizer.clip_norm);
  std::map<const TensorImpl*, double> layer_of;  // model_->parameters() lists a tied tensor once, at its first layer
  for (size_t i = model_->size(); i-- > 0;)
    for (const Tensor& p : (*model_)[i]->parameters()) layer_of[p.impl()] = static_cast<double>(i);
  for (const TiedAcrossRanks& t : tied_across_ranks_)
    if (t.later) layer_of.erase(t.tensor.impl());  // one process counts a tied weight once: the earlier side's
  std::vector<double> pairs;
  for (size_t i = 0; i < parameters.size(); ++i)
    if (layer_of.count(parameters[i].impl())) pairs.insert(pairs.end(), {layer_of.at(parameters[i].impl()), own[i]});
  const std::vector<double> all = group_->gather_in_pipeline(pairs);
  std::vector<std::pair<double, double>> by_layer;  // stable: within a layer, its rank's order is the model's
  for (size_t i = 0; i + 1 < all.size(); i += 2) by_layer.emplace_back(all[i], all[i + 1]);
  std::stable_sort(by_layer.begin(), by_layer.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<double> squares;
  for (const auto& [layer, square] : by_layer) squares.push_back(square);
  return nn::clip_factor(squares, options_.optimizer.clip_norm);
}

Tensor Trainer::forward(const Tensor& x) const {
  const Tensor output = pipeline_->forward(x);
  return group_ ? group_->broadcast_from_stage(output, loss_stage()) : output;
}

// The stage running the model's last piece: the last stage, or under the V placement stage 0.
int Trainer::loss_stage() const {
  const Schedule& schedule = pipeline_->schedule();
  return schedule.stage_of_piece(schedule.pieces() - 1);
}

int64_t Trainer::round_robin() const { return round_robin_groups(options_.schedule.replicas); }

int64_t Trainer::drain_every() const {
  const int64_t steps = round_robin();
  return (64 + steps - 1) / steps * steps;
}

int64_t Trainer::steps_per_call(int64_t step, int64_t end_step, int64_t drain_interval) const {
  if (!asynchronous()) return 1;
  auto next_multiple = [step](int64_t n) { return (step / n + 1) * n; };
  const int64_t count = std::min({next_multiple(drain_every()), next_multiple(drain_interval), end_step}) - step;
  if (count % round_robin() != 0)
    throw std::invalid_argument("replicas " + format_replicas(options_.schedule.replicas) + " take the mini-batches " +
                                "round-robin, so the pipeline drains only after multiples of " + std::to_string(round_robin()) +
                                " steps; step " + std::to_string(step + count) + " is not one: make --steps, --eval-interval "
                                "and --stop-after (and the step resumed from) multiples of " + std::to_string(round_robin()));
  return count;
}

std::vector<nn::Optimizer*> Trainer::optimizers() const {
  std::vector<nn::Optimizer*> out;
  for (const auto& o : optimizers_) out.push_back(o.get());
  return out;
}

// Under mpirun, every rank's events of the last call on rank 0, one row per rank, on rank 0's
// clock (exact on one machine; across machines, as far as their clocks agree).
std::vector<TraceEvent> Trainer::gathered_trace(std::vector<std::string>& row_names) const {
  if (!group_) {
    row_names = pipeline_->schedule().worker_names();
    return stats_.last_trace;
  }
  static_assert(std::is_trivially_copyable_v<TraceEvent>);
  const std::vector<TraceEvent>& own = stats_.last_trace;
  std::string bytes(sizeof(double) + own.size() * sizeof(TraceEvent), '\0');
  std::memcpy(bytes.data(), &stats_.last_trace_origin_us, sizeof(double));
  if (!own.empty()) std::memcpy(bytes.data() + sizeof(double), own.data(), own.size() * sizeof(TraceEvent));
  const std::vector<std::string> ranks = group_->gather_to_rank_zero(bytes);
  std::vector<TraceEvent> events;
  row_names.clear();
  for (size_t r = 0; r < ranks.size(); ++r) {
    double origin = 0;
    std::memcpy(&origin, ranks[r].data(), sizeof(double));
    const size_t count = (ranks[r].size() - sizeof(double)) / sizeof(TraceEvent);
    for (size_t i = 0; i < count; ++i) {
      TraceEvent e;
      std::memcpy(&e, ranks[r].data() + sizeof(double) + i * sizeof(TraceEvent), sizeof e);
      e.worker = static_cast<int>(r);
      e.start_us += origin - stats_.last_trace_origin_us;
      e.end_us += origin - stats_.last_trace_origin_us;
      events.push_back(e);
    }
    const int stage = static_cast<int>(r) % group_->stages(), replica = static_cast<int>(r) / group_->stages();
    row_names.push_back("rank " + std::to_string(r) + ": stage " + std::to_string(stage) +
                        (group_->replicas() > 1 ? " replica " + std::to_string(replica) : ""));
  }
  return events;
}

}  // namespace minipipe::pipeline

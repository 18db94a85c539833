#include "pipeline/stage_worker.h"

#include <optional>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "kernels/dispatch.h"
#include "nn/forward_context.h"
#include "nn/skip.h"
#include "pipeline/token_slices.h"
#include "tensor/allocator.h"
#include "tensor/factories.h"

namespace minipipe::pipeline {

namespace {

// `chunk`: the receiver's chunk the message is for. `value` is on the receiver's device, or,
// for a skip connection's gradient that does not exist, undefined.
Message message_for(const Instruction& instruction, int chunk, const Tensor& value, Device device, int64_t weight_version = -1) {
  return {instruction.micro_batch, instruction.slice, chunk, value, kernels::WorkMark::of_queued_work(device), weight_version};
}

// A received activation becomes a leaf of this stage's graph, whose gradient goes back.
Tensor as_leaf(Tensor received) {
  if (received.dtype() == DType::Float32) received.set_requires_grad(true);
  return received;
}

// Marks the worker as waiting while a receive or an AllReduce blocks (the status report).
class Waiting {
 public:
  explicit Waiting(WorkerProgress& progress) : progress_(progress) { progress_.waiting = true; }
  ~Waiting() { progress_.waiting = false; }

 private:
  WorkerProgress& progress_;
};

}  // namespace

StageWorker::StageWorker(const Pipeline& pipeline, int worker, RunState& state, const std::vector<Pipeline::WorkUnit>& units,
                         Pipeline::StageRecord& record)
    : pipeline_(pipeline), schedule_(pipeline.schedule_), options_(pipeline.options_), worker_(worker),
      stage_(schedule_.stage_of(worker)), replica_(schedule_.replica_of(worker)), device_(pipeline.device_of(stage_)),
      state_(state), progress_(*state.progress[worker]), units_(units), record_(record),
      sliced_(!options_.token_slices.empty()), slice_offsets_(token_slice_offsets(options_.token_slices)),
      stash_(pipeline.worker_modules_[worker][0]->parameters()),  // the asynchronous schedule's (one chunk)
      version_base_(pipeline.weight_versions_[stage_]) {
  for (size_t t = 0; t < pipeline.tied_.size(); ++t)
    for (size_t i = 1; i < pipeline.tied_[t].stages.size(); ++i)
      if (pipeline.tied_[t].stages[i] == stage_)
        tied_redirects_.emplace_back(pipeline.tied_tensors_[t], pipeline.tied_stand_ins_[t][i - 1]);
}

void StageWorker::run(std::vector<double>& losses) {
  MemoryTrackerScope memory(pipeline_.trackers_[worker_]);
  GradModeGuard grad_on(true);
  const Program& program = schedule_.programs[worker_];
  for (const Instruction& instruction : program) {
    progress_.position = static_cast<int>(&instruction - program.data());
    progress_.in_flight += in_flight_change(instruction.op);
    const double start = options_.trace ? now_us() : 0;
    try {
      live_before_ = versions_.live();
      versions_.apply(instruction);  // throws if the parameters do not hold the version named
      execute(instruction);
      record_.peak_versions = std::max(record_.peak_versions, versions_.versions_held());
      // A GPU runs kernels after their launch returns: a traced instruction waits for its
      // own, and the stage's last one for all, since the caller's thread reads the gradients.
      const bool stage_done = &instruction == &program.back();
      if (options_.trace || stage_done) kernels::synchronize(device_);
      if (stage_done)
        for (const auto& [key, loss] : unit_losses_) losses[key.micro_batch] += loss.item();
    } catch (const ChannelClosed&) {
      stash_.restore_latest(versions_);
      return;  // another stage failed; it reports
    } catch (...) {
      stash_.restore_latest(versions_);  // the run failed, but the parameters keep the newest weights
      state_.fail(worker_, instruction, std::current_exception());
      return;
    }
    if (options_.trace)
      record_.trace.push_back({worker_, instruction, start, now_us(), pipeline_.trackers_[worker_]->current_bytes.load()});
  }
}

void StageWorker::execute(const Instruction& instruction) {
  switch (instruction.op) {
    case Op::ReceiveActivation: return receive_activation(instruction);
    case Op::Forward: return forward(instruction);
    case Op::SendActivation: return send_activation(instruction);
    case Op::ReceiveGradient: return receive_gradient(instruction);
    case Op::Backward:
    case Op::BackwardInput: return backward(instruction);
    case Op::BackwardWeight: return backward_weight(instruction);
    case Op::SendGradient: return send_gradient(instruction);
    case Op::AllReduce: return all_reduce(instruction);
    case Op::OptimizerStep: return optimizer_step(instruction);
    case Op::StashWeights:
      stash_.stash(instruction.version);
      record_.peak_stash_bytes = std::max(record_.peak_stash_bytes, stash_.bytes());
      return;
    case Op::LoadWeights: return stash_.load(instruction.version, live_before_);
    case Op::DropWeights: return stash_.drop(instruction.version);
  }
}

void StageWorker::receive_activation(const Instruction& instruction) {
  const Message message = [&] {
    Waiting waiting(progress_);
    Channel& channel = *state_.channels.at(schedule_.channel_of(worker_, instruction));
    return take_over_message(channel.receive(instruction.micro_batch, instruction.slice, instruction.chunk));
  }();
  unit_state_[UnitKey::of(instruction)].input = as_leaf(message.value);
  input_stage_version_[instruction.micro_batch] = message.weight_version;
}

void StageWorker::forward(const Instruction& instruction) {
  const int m = instruction.micro_batch;
  UnitState& unit = unit_state_[UnitKey::of(instruction)];
  receive_skips(instruction);
  if (is_first(instruction)) {
    const Tensor& data = units_[m].data.inputs;
    unit.input = (!sliced_
                      ? data
                      : data.narrow(1, slice_offsets_[instruction.slice], options_.token_slices[instruction.slice]))
                     .to(device_);
  }
  check_forward_version(instruction);
  // Re-materialisation (GPipe section 2.3): without a graph, keeping only the input; the
  // backward runs the forward again.
  const bool recompute = recomputes(instruction);
  std::optional<NoGradGuard> no_graph;
  if (recompute) no_graph.emplace();
  unit.output = run_layers(instruction, false);
  if (is_last(instruction)) unit_losses_[UnitKey::of(instruction)] = unit.output.detach();
  send_skips(instruction);
  if (recompute) unit.skips_out.clear();  // the backward stashes them again
}

void StageWorker::send_activation(const Instruction& instruction) {
  UnitState& unit = unit_state_.at(UnitKey::of(instruction));
  const Schedule::Neighbour next = schedule_.neighbour(worker_, instruction, true);
  const Tensor value = unit.output.detach().to(pipeline_.device_of(next.stage));
  state_.channels.at(schedule_.channel_of(worker_, instruction))
      ->send(message_for(instruction, next.chunk, value, value.device(), input_stage_version_[instruction.micro_batch]));
  if (recomputes(instruction)) unit.output = Tensor();  // the backward makes it again
}

void StageWorker::receive_gradient(const Instruction& instruction) {
  Waiting waiting(progress_);
  Channel& channel = *state_.channels.at(schedule_.channel_of(worker_, instruction));
  unit_state_[UnitKey::of(instruction)].output_grad =
      take_over_message(channel.receive(instruction.micro_batch, instruction.slice, instruction.chunk)).value;
}

void StageWorker::backward(const Instruction& instruction) {
  const int m = instruction.micro_batch;
  const UnitKey key = UnitKey::of(instruction);
  check_backward_version(m);
  UnitState& unit = unit_state_[key];
  // The roots: the output with the gradient from the next stage (the loss on the last
  // stage), a skip's stashed tensor with what its pop gave it, and a token slice's keys and
  // values with what later slices gave them.
  std::vector<Tensor> roots{recomputes(instruction) ? run_layers(instruction, true) : unit.output};
  std::vector<Tensor> root_grads{is_last(instruction) ? Tensor() : unit.output_grad};
  add_skip_roots(instruction, roots, root_grads);
  if (sliced_) caches_[m].add_backward_roots(instruction.slice, roots, root_grads);
  if (roots.size() > 1 || roots[0].requires_grad()) {
    if (instruction.op == Op::Backward) {
      minipipe::backward(roots, root_grads);
    } else {  // zero-bubble's B: the gradients of the input and skips now, the weights' at this unit's W
      std::vector<Tensor> wanted;
      if (!is_first(instruction)) wanted.push_back(unit.input);
      for (const auto& [name, t] : unit.skips_in)
        if (t.requires_grad()) wanted.push_back(t);
      unit.weight_gradients = backward_inputs(roots, root_grads, wanted);
    }
  }
  send_skip_gradients(instruction);
  unit.skips_in.clear();
  unit.skips_out.clear();
  if (sliced_) {
    caches_[m].release(instruction.slice);
    if (instruction.slice == 0) caches_.erase(m);
  }
  unit.output = unit.output_grad = Tensor();
  if (!is_first(instruction)) {
    const Tensor g = unit.input.grad();
    unit.input_grad = g.defined() ? g : zeros_like(unit.input);
  }
  unit.input = Tensor();
  if (instruction.slice == 0) forward_version_.erase(m);
  forget_if_done(key);
}

void StageWorker::backward_weight(const Instruction& instruction) {
  const UnitKey key = UnitKey::of(instruction);
  unit_state_[key].weight_gradients.run();
  unit_state_[key].weight_gradients = DeferredWeightGradients();
  forget_if_done(key);
}

void StageWorker::send_gradient(const Instruction& instruction) {
  const UnitKey key = UnitKey::of(instruction);
  UnitState& unit = unit_state_.at(key);
  const Schedule::Neighbour previous = schedule_.neighbour(worker_, instruction, false);
  const Tensor value = unit.input_grad.to(pipeline_.device_of(previous.stage));
  state_.channels.at(schedule_.channel_of(worker_, instruction))
      ->send(message_for(instruction, previous.chunk, value, value.device()));
  unit.input_grad = Tensor();
  forget_if_done(key);
}

void StageWorker::all_reduce(const Instruction&) {
  Waiting waiting(progress_);
  const std::vector<Tensor> parameters = pipeline_.worker_modules_[worker_][0]->parameters();
  if (const RemoteStages* remote = pipeline_.options_.remote_stages.get())
    remote->average_replica_gradients(parameters);  // with the processes running the other replicas
  else
    state_.all_reduces[stage_]->run(replica_, parameters);
}

void StageWorker::optimizer_step(const Instruction& instruction) {
  // The replicas of a stage take each update together, at the step of the round's last
  // mini-batch, so that a learning-rate schedule gives them all the same rate.
  const int m = instruction.micro_batch;
  const int r = schedule_.replicas_of(stage_), per_update = schedule_.micro_batches_per_update;
  const int round_last = r > 1 ? (m / per_update / r + 1) * r * per_update - 1 : m;
  const uint64_t step = m >= 0 ? units_[round_last].step : (units_.empty() ? 0 : units_[0].step);
  if (pipeline_.optimizer_step_) pipeline_.optimizer_step_(stage_, replica_, step);
  if (schedule_.asynchronous()) ++record_.updates;
}

// The stage's forward of one unit; on the last stage, its loss weighted by the unit's share
// of the mini-batch (micro-batch share times slice share of the tokens), so the unit losses
// add up to the mini-batch's mean: the same gradients as one device with the whole batch.
Tensor StageWorker::run_layers(const Instruction& instruction, bool recomputing) {
  const int m = instruction.micro_batch;
  UnitState& state = unit_state_.at(UnitKey::of(instruction));
  const Pipeline::WorkUnit& unit = units_[m];
  nn::ForwardContext context{options_.seed, unit.step, unit.data.sample_offset, recomputing};
  context.micro_batch = m % options_.micro_batches;
  context.micro_batches = options_.micro_batches;
  context.deferred_batch_norm = options_.deferred_batch_norm;
  int64_t first = 0, length = 0;
  if (sliced_) {
    first = slice_offsets_[instruction.slice], length = options_.token_slices[instruction.slice];
    context.token_offset = first;
    context.sequence_tokens = unit.data.inputs.shape()[1];
  }
  nn::ForwardContextGuard guard(context);
  std::optional<nn::KeyValueCache::Scope> slice_scope;
  if (sliced_) slice_scope.emplace(caches_[m], instruction.slice);
  nn::SkipStore skips;  // what earlier pieces stashed for this one; what this one stashes for later ones
  for (const auto& [name, t] : state.skips_in) skips.stash(name, t);
  const Tensor output = [&] {
    nn::SkipStore::Scope skip_scope(skips);
    return pipeline_.worker_modules_[worker_][instruction.chunk]->forward(state.input);
  }();
  state.skips_out = skips.take_all();
  const auto outgoing = skip_routes(instruction, false);
  bool as_routed = state.skips_out.size() == outgoing.size();
  for (const Pipeline::SkipRoute* r : outgoing) as_routed = as_routed && state.skips_out.count(r->name);
  if (!as_routed)
    throw std::logic_error("the layers left " + std::to_string(state.skips_out.size()) + " skip tensors for later stages, where " +
                           std::to_string(outgoing.size()) + " were expected: a SkipStash or SkipPop that does not run on "
                           "every forward cannot cross stages");
  if (!is_last(instruction)) return output;
  const Tensor targets = sliced_ ? unit.data.targets.narrow(1, first, length).contiguous() : unit.data.targets;
  const float share = sliced_ ? static_cast<float>(length) / static_cast<float>(context.sequence_tokens) : 1.0f;
  return pipeline_.loss_(output, targets.to(device_)) * (unit.loss_weight * share);
}

void StageWorker::receive_skips(const Instruction& instruction) {
  UnitState& unit = unit_state_[UnitKey::of(instruction)];
  for (const Pipeline::SkipRoute* r : skip_routes(instruction, true)) {
    Waiting waiting(progress_);
    unit.skips_in[r->name] = as_leaf(receive_skip(*r, false, instruction));
  }
}

void StageWorker::send_skips(const Instruction& instruction) {
  const UnitState& unit = unit_state_.at(UnitKey::of(instruction));
  for (const Pipeline::SkipRoute* r : skip_routes(instruction, false))
    send_skip(*r, false, instruction, unit.skips_out.at(r->name).detach(), schedule_.stage_of_piece(r->to_piece));
}

// Skip connections out of this piece: what was stashed, with the gradient its pop gave it.
void StageWorker::add_skip_roots(const Instruction& instruction, std::vector<Tensor>& roots, std::vector<Tensor>& root_grads) {
  const UnitState& unit = unit_state_.at(UnitKey::of(instruction));
  for (const Pipeline::SkipRoute* r : skip_routes(instruction, false)) {
    const Tensor gradient = [&] {
      Waiting waiting(progress_);
      return receive_skip(*r, true, instruction);
    }();
    const Tensor& stashed = unit.skips_out.at(r->name);
    if (gradient.defined() && stashed.requires_grad()) roots.push_back(stashed), root_grads.push_back(gradient);
  }
}

// Skip connections into this piece: each received tensor's gradient goes straight back.
void StageWorker::send_skip_gradients(const Instruction& instruction) {
  const UnitState& unit = unit_state_.at(UnitKey::of(instruction));
  for (const Pipeline::SkipRoute* r : skip_routes(instruction, true)) {
    const Tensor& received = unit.skips_in.at(r->name);
    Tensor gradient;
    if (received.requires_grad()) gradient = received.grad().defined() ? received.grad() : zeros_like(received);
    send_skip(*r, true, instruction, gradient, schedule_.stage_of_piece(r->from_piece));
  }
}

// A skip's tensor (or its gradient) goes to the stage at the route's other end: through the
// run's mailbox in one process, or on the route's own channel to another process (in the order
// the two ends run their units, which the channels between the stages in between keep alike).
void StageWorker::send_skip(const Pipeline::SkipRoute& route, bool gradient, const Instruction& instruction, const Tensor& value,
                            int to_stage) {
  const auto remote = state_.remote_skips.find({route_index(route), gradient});
  if (remote != state_.remote_skips.end()) {
    const Tensor on_cpu = value.defined() ? value.to(Device::cpu()) : value;
    remote->second->send(message_for(instruction, 0, on_cpu, Device::cpu()));
    return;
  }
  const Device to = pipeline_.device_of(to_stage);
  state_.skips.send({gradient, route.name, instruction.micro_batch, instruction.slice},
                    message_for(instruction, 0, value.defined() ? value.to(to) : value, to));
}

Tensor StageWorker::receive_skip(const Pipeline::SkipRoute& route, bool gradient, const Instruction& instruction) {
  const auto remote = state_.remote_skips.find({route_index(route), gradient});
  Message message = remote != state_.remote_skips.end()
                        ? remote->second->receive(instruction.micro_batch, instruction.slice, 0)
                        : state_.skips.receive({gradient, route.name, instruction.micro_batch, instruction.slice});
  const Tensor value = take_over_message(std::move(message)).value;
  return value.defined() ? value.to(device_) : value;
}

int StageWorker::route_index(const Pipeline::SkipRoute& route) const {
  return static_cast<int>(&route - pipeline_.skip_routes_.data());
}

std::vector<const Pipeline::SkipRoute*> StageWorker::skip_routes(const Instruction& instruction, bool into) const {
  std::vector<const Pipeline::SkipRoute*> routes;
  for (const Pipeline::SkipRoute& r : pipeline_.skip_routes_)
    if ((into ? r.to_piece : r.from_piece) == piece(instruction)) routes.push_back(&r);
  return routes;
}

void StageWorker::check_forward_version(const Instruction& instruction) {
  const int m = instruction.micro_batch;
  forward_version_[m] = version_base_ + versions_.live();
  if (is_first(instruction)) input_stage_version_[m] = forward_version_[m];
  if (schedule_.asynchronous() && schedule_.weights == WeightPolicy::VerticalSync &&
      forward_version_[m] != input_stage_version_[m])
    throw std::logic_error("vertical sync broken: the forward ran with weight version " + std::to_string(forward_version_[m]) +
                           ", the input stage used " + std::to_string(input_stage_version_[m]));
}

void StageWorker::check_backward_version(int m) {
  if (!schedule_.asynchronous()) return;
  const int64_t used = version_base_ + versions_.live();
  record_.versions.push_back({stage_, replica_, m, forward_version_[m], used, input_stage_version_[m]});
  if (schedule_.weights != WeightPolicy::None && used != forward_version_[m])
    throw std::logic_error(std::string(weight_policy_name(schedule_.weights)) + " broken: the backward ran with weight version " +
                           std::to_string(used) + ", its forward with " + std::to_string(forward_version_[m]));
}

void StageWorker::forget_if_done(const UnitKey& key) {
  const auto it = unit_state_.find(key);
  if (it != unit_state_.end() && it->second.empty()) unit_state_.erase(it);
}

bool StageWorker::recomputes(const Instruction& i) const {
  return options_.recompute == Recompute::Always || (options_.recompute == Recompute::ExceptLast && !is_last(i));
}

double StageWorker::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - state_.origin).count();
}

}  // namespace minipipe::pipeline

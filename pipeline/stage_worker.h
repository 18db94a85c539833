#pragma once
// One worker of a running pipeline (a stage, or one replica of a replicated stage): the
// interpreter of its program, with one method per instruction. Pipeline::run starts one per
// worker thread and each runs its program to the end, or until it or another worker fails.
//
// What a worker holds between instructions is per unit of work (a micro-batch, or one token
// slice of it, in one model chunk): UnitState, keyed by UnitKey. Per micro-batch it keeps the
// token slices' keys and values (TeraPipe) and the weight versions its forward used
// (PipeDream). The feature-specific steps (skip connections, weight-version checks,
// recomputation) are the small helpers below the instructions.
#include <list>
#include <map>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "nn/key_value_cache.h"
#include "pipeline/executor.h"
#include "pipeline/run_state.h"
#include "pipeline/weight_stash.h"

namespace minipipe::pipeline {

// What a worker reports of one run.
struct Pipeline::StageRecord {
  int updates = 0;  // asynchronous: OptimizerSteps run
  std::vector<TraceEvent> trace;
  std::vector<WeightVersionRecord> versions;
  int peak_versions = 1;
  int64_t peak_stash_bytes = 0;
};

// One unit of a stage's work: micro-batch m, token slice i, model chunk c ("m.i:c").
struct UnitKey {
  int micro_batch, slice, chunk;
  static UnitKey of(const Instruction& i) { return {i.micro_batch, i.slice, i.chunk}; }
  auto operator<=>(const UnitKey&) const = default;
};

// What a worker holds of one unit between its instructions; each field is released by the
// last instruction that reads it.
struct UnitState {
  Tensor input;        // the chunk's input: a leaf that requires grad (the data on the first piece)
  Tensor output;       // its output, or on the last piece its weighted loss: the backward's root
  Tensor output_grad;  // the gradient received for the output
  Tensor input_grad;   // the input's gradient, to go upstream
  DeferredWeightGradients weight_gradients;  // zero-bubble: what B leaves for W
  // Skip connections across pieces: the tensors received (leaves), and those this piece's
  // layers stashed for later pieces.
  std::map<std::string, Tensor> skips_in, skips_out;
  bool empty() const {
    return !input.defined() && !output.defined() && !output_grad.defined() && !input_grad.defined() &&
           weight_gradients.empty() && skips_in.empty() && skips_out.empty();
  }
};

class StageWorker {
 public:
  // Built on the worker's own thread (tied weights redirect that thread's gradients).
  StageWorker(const Pipeline& pipeline, int worker, RunState& state, const std::vector<Pipeline::WorkUnit>& units,
              Pipeline::StageRecord& record);
  // Runs the program; the last piece adds each unit's loss into losses[micro-batch] at the
  // end. A failure is recorded in `state` (which stops every other worker), not thrown.
  void run(std::vector<double>& losses);

 private:
  void execute(const Instruction& instruction);
  // One method per Op (schedule.h); StashWeights, LoadWeights and DropWeights are one line
  // each in execute().
  void receive_activation(const Instruction& instruction);
  void forward(const Instruction& instruction);
  void send_activation(const Instruction& instruction);
  void receive_gradient(const Instruction& instruction);
  void backward(const Instruction& instruction);  // Backward, or zero-bubble's B (BackwardInput)
  void backward_weight(const Instruction& instruction);
  void send_gradient(const Instruction& instruction);
  void all_reduce(const Instruction& instruction);
  void optimizer_step(const Instruction& instruction);

  // The chunk's layers on the unit's input; on the last piece, the loss weighted by the
  // unit's share of the mini-batch. `recomputing`: GPipe's re-materialisation in backward.
  Tensor run_layers(const Instruction& instruction, bool recomputing);
  // Skip connections (nn/skip.h): into the piece before its forward, out of it after, and
  // the gradients back in the backward.
  void receive_skips(const Instruction& instruction);
  void send_skips(const Instruction& instruction);
  void add_skip_roots(const Instruction& instruction, std::vector<Tensor>& roots, std::vector<Tensor>& root_grads);
  void send_skip_gradients(const Instruction& instruction);
  std::vector<const Pipeline::SkipRoute*> skip_routes(const Instruction& instruction, bool into) const;
  void send_skip(const Pipeline::SkipRoute& route, bool gradient, const Instruction& instruction, const Tensor& value,
                 int to_stage);
  Tensor receive_skip(const Pipeline::SkipRoute& route, bool gradient, const Instruction& instruction);
  int route_index(const Pipeline::SkipRoute& route) const;  // in Pipeline::skip_routes()
  // Weight versions (asynchronous schedules): the executor's own check of the policy's
  // promise (DESIGN.md decision 10).
  void check_forward_version(const Instruction& forward);
  void check_backward_version(int micro_batch);
  void forget_if_done(const UnitKey& key);

  int piece(const Instruction& i) const { return schedule_.piece_of(stage_, i.chunk); }
  bool is_first(const Instruction& i) const { return piece(i) == 0; }
  bool is_last(const Instruction& i) const { return piece(i) == schedule_.pieces() - 1; }
  bool recomputes(const Instruction& i) const;  // PipelineOptions::recompute
  double now_us() const;

  const Pipeline& pipeline_;
  const Schedule& schedule_;
  const PipelineOptions& options_;
  const int worker_, stage_, replica_;
  const Device device_;
  RunState& state_;
  WorkerProgress& progress_;
  const std::vector<Pipeline::WorkUnit>& units_;
  Pipeline::StageRecord& record_;
  std::list<GradientRedirect> tied_redirects_;  // a later stage's share of a tied weight goes to its stand-in
  const bool sliced_;                           // TeraPipe: sequences cut into token slices
  std::vector<int64_t> slice_offsets_;          // where each token slice starts
  std::map<UnitKey, UnitState> unit_state_;
  std::map<int, nn::KeyValueCache> caches_;  // per micro-batch: its earlier slices' keys and values
  // The last piece's unit losses stay on its device until the worker is done: reading one on
  // the host would wait for the GPU after every unit.
  std::map<UnitKey, Tensor> unit_losses_;
  // Asynchronous schedules: what the stage holds, and per micro-batch the version its forward
  // used here and the one the input stage used (carried by its messages).
  WeightVersionState versions_;
  WeightStash stash_;
  int live_before_ = 0;  // the version live before the instruction under way
  const int64_t version_base_;
  std::map<int, int64_t> forward_version_, input_stage_version_;
};

}  // namespace minipipe::pipeline

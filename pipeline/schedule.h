#pragma once
// A schedule is data (DESIGN.md decision 5): one program per stage, a list of instructions
// that one executor runs and one simulator times. Generators (GPipe, 1F1B) only order the
// compute; add_communication() then inserts the sends and receives around it, so every
// schedule gets the same, correct communication.
#include <compare>
#include <stdexcept>
#include <string>
#include <vector>

namespace minipipe::pipeline {

// A schedule that cannot run: its message names the stage, micro-batch and instruction.
class ScheduleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Op {
  Forward,            // run the stage's layers on micro-batch m
  Backward,           // backpropagate micro-batch m through the stage
  BackwardInput,      // zero-bubble's B: only the gradient of m's stage input (and what leads
                      // to it); the weight gradients wait for BackwardWeight
  BackwardWeight,     // zero-bubble's W: m's weight gradients, left by its BackwardInput
  SendActivation,     // stage output of m -> next stage
  ReceiveActivation,  // stage input of m <- previous stage
  SendGradient,       // gradient of the stage input of m -> previous stage
  ReceiveGradient,    // gradient of the stage output of m <- next stage
  OptimizerStep,      // apply the accumulated gradients (asynchronous: the stage's own update,
                      // after the backward of micro-batch m that completes an update's group)
  StashWeights,       // keep a copy of the stage's weights, which are now version v
  LoadWeights,        // exchange the parameters with the stashed copy of version v: the
                      // parameters now hold v, the stash the version they held
  DropWeights,        // free the stashed copy of version v: nothing later reads it
  AllReduce,          // replicated stage (PipeDream section 3.1): replace the gradients of the
                      // update that follows with their mean over the stage's replicas; the
                      // k-th AllReduce of every replica of a stage meets the others' k-th
};

const char* op_name(Op op);
bool is_compute(Op op);   // Forward, Backward, BackwardInput, BackwardWeight
bool is_backward(Op op);  // Backward or BackwardInput: the one that sends the input's gradient
bool is_message(Op op);   // the sends and receives
// What an instruction does to the units a stage holds in flight (forwarded, not yet
// backwarded): +1 for a Forward, -1 for a Backward or BackwardInput, 0 otherwise. The
// executor's status reports and the simulator's peaks count with it.
int in_flight_change(Op op);
const char* compute_letter(Op op);  // F, B or W, as the grids and timelines label compute instructions

struct Instruction {
  Op op;
  int micro_batch = -1;  // -1 for the weight instructions and a synchronous OptimizerStep
                         // (AllReduce: the micro-batch whose backward completed the update)
  // Asynchronous schedules: the weight version a Forward or Backward must run with, the one
  // an OptimizerStep makes, the one a Stash/Load/Drop moves. Versions count the stage's
  // updates since the run began; -1 in synchronous schedules, which have one version.
  int version = -1;
  // TeraPipe: the token slice of the micro-batch's sequences that a Forward, Backward or
  // message carries; always 0 when sequences are not sliced. Micro-batch m, slice i is one
  // unit of work, printed "m.i".
  int slice = 0;
  // Interleaved 1F1B: which of the stage's model chunks (virtual stages) the instruction
  // runs or whose message it carries; always 0 when stages hold one chunk.
  int chunk = 0;
  // DualPipe's F&B (DeepSeek-V3): this Forward and the backward that follows it in the
  // program's compute order are one step, the forward's compute overlapping the backward's
  // communication on a GPU. The pair stays two instructions: the executor runs them in
  // sequence on the stage's thread (on the CPU there is nothing to overlap), and the validator
  // and simulator see the two; grids and schedule files show them as one step.
  bool overlapped = false;
  bool operator==(const Instruction&) const = default;
};

// Which weights a micro-batch's backward uses when updates happen between its forward and
// its backward (PipeDream, section 3.3; PipeDream-2BW, section 3).
enum class WeightPolicy {
  Stash,         // the version its own forward used on this stage
  VerticalSync,  // the version the input stage used for it, forward and backward, on every stage
  None,          // the latest: the naive asynchronous pipeline, whose gradients are wrong
  TwoBuffered,   // as Stash, with updates every m >= K micro-batches, so two versions suffice
};
WeightPolicy parse_weight_policy(const std::string& name);  // stash | vertical-sync | none | 2bw
const char* weight_policy_name(WeightPolicy policy);

using Program = std::vector<Instruction>;

// Which pieces of the model a stage holds when it holds several (virtual stages, chunks):
enum class Placement {
  Looped,  // Megatron's interleaving: chunk c of stage s is piece c K + s
  V,       // the V shape (Qi et al. 2024; DeepSeek-V3): chunk c of stage s is piece c K + s for
           // even c and c K + K - 1 - s for odd c, so a micro-batch goes down the stages and
           // back up, and the first and last pieces sit on stage 0
};
const char* placement_name(Placement placement);  // "looped", "v"

struct Schedule {
  std::string name;
  int stages = 0;
  int micro_batches = 0;
  std::vector<Program> programs;  // one per stage
  // Asynchronous schedules: each stage applies its own update after every
  // `micro_batches_per_update` backwards (0: synchronous, one update at the end).
  int micro_batches_per_update = 0;
  WeightPolicy weights = WeightPolicy::Stash;
  // TeraPipe (Li et al. 2021): each micro-batch's sequences are cut into this many token
  // slices, which flow through the stages like micro-batches. A stage forwards the slices of
  // a micro-batch in order (each attends over the keys and values of the earlier ones) and
  // backwards them in reverse (each hands those keys and values their gradients).
  int token_slices = 1;
  // PipeDream's replicated stages (section 3.1): stage s runs on replicas[s] workers, each
  // with its own copy of the stage's weights. Update group g (micro-batches g * per-update
  // .. (g + 1) * per-update - 1) goes to replica g mod replicas[s], round-robin, and the
  // replicas all-reduce their gradients before each update, so their weights stay equal.
  // Empty: one worker per stage. `programs` holds one program per worker, stage by stage.
  std::vector<int> replicas;
  // Interleaved 1F1B (Narayanan et al. SC 2021): the model is cut into stages x
  // virtual_stages pieces, and stage s holds chunks c = 0 .. virtual_stages - 1, which are
  // the pieces `placement` gives it (looped: c * stages + s). Activations go from piece p to
  // p + 1: to the next stage, and at the end of a chunk to the stage holding the next one
  // (looped: from the last stage back to stage 0; V: to the last stage itself).
  int virtual_stages = 1;

  // Which stage holds which of its chunks (only matters with virtual stages).
  Placement placement = Placement::Looped;

  int pieces() const { return stages * virtual_stages; }
  int piece_of(int stage, int chunk) const { return chunk * stages + (reversed(chunk) ? stages - 1 - stage : stage); }
  int stage_of_piece(int piece) const {
    return reversed(chunk_of_piece(piece)) ? stages - 1 - piece % stages : piece % stages;
  }
  int chunk_of_piece(int piece) const { return piece / stages; }
  bool reversed(int chunk) const { return placement == Placement::V && chunk % 2 == 1; }  // runs back up
  // The worker that runs piece p of the model for micro-batch m (its stage's replica for m).
  int worker_of_piece(int piece, int micro_batch) const { return worker_for(stage_of_piece(piece), micro_batch); }
  bool asynchronous() const { return micro_batches_per_update > 0; }
  bool replicated() const;  // some stage has more than one replica
  int workers() const { return static_cast<int>(programs.size()); }
  int replicas_of(int stage) const { return replicas.empty() ? 1 : replicas.at(stage); }
  int first_worker(int stage) const;  // the worker of the stage's replica 0
  int stage_of(int worker) const;
  int replica_of(int worker) const { return worker - first_worker(stage_of(worker)); }
  // The replica of `stage` that runs micro-batch m (always 0 when the stage has one).
  int replica_for(int stage, int micro_batch) const;
  int worker_for(int stage, int micro_batch) const { return first_worker(stage) + replica_for(stage, micro_batch); }
  // "stage 2", or "stage 2 replica 1" when stage 2 is replicated.
  std::string worker_name(int worker) const;
  std::vector<std::string> worker_names() const;

  // Where an instruction's message goes or comes from: the neighbouring piece of the model
  // (the next or the previous one), its stage and chunk, and the worker that runs it for the
  // instruction's micro-batch. Throws ScheduleError when there is none (a send past the
  // pipeline's ends).
  struct Neighbour {
    int piece, stage, chunk, worker;
  };
  Neighbour neighbour(int worker, const Instruction& instruction, bool next) const;
  // Messages travel on first-in first-out channels, one per kind, sender and receiver
  // worker: activations from a worker of a piece's stage to the worker of the next piece's
  // stage that runs the micro-batch, gradients back.
  struct ChannelKey {
    bool gradient;
    int from, to;
    auto operator<=>(const ChannelKey&) const = default;
  };
  // The channel a send or receive of `worker` uses.
  ChannelKey channel_of(int worker, const Instruction& instruction) const;
};

// "ReceiveActivation of micro-batch 2.1": an instruction and its unit (unit_label), as status
// reports and PipelineError name it.
std::string instruction_text(const Instruction& instruction, const Schedule& schedule);
// "stage 1 ReceiveActivation(micro-batch 2, slice 1)[version 3]": an instruction of a
// worker, compact, as the validator's and the simulator's lists of problems name it.
std::string describe(const Schedule& schedule, int worker, const Instruction& instruction);

// Activation and gradient sends per unit of work (a micro-batch, or a micro-batch's token
// slice): 2 (K - 1) for K pieces in a line, 2 (vK - 1) with v chunks per stage.
double messages_per_unit(const Schedule& schedule);

// "m"; "m.i" when sequences are token-sliced; "m:c" for chunk c when stages hold several.
std::string unit_label(const Instruction& instruction, bool sliced, bool chunked = false);
std::string unit_label(const Instruction& instruction, const Schedule& schedule);

// The units of one stage's work in the order every synchronous schedule forwards them
// (micro-batch by micro-batch, slices in order) and backwards them (micro-batch by
// micro-batch, slices in reverse). Keeping the backward order the same in every schedule
// keeps the order in which gradients accumulate, hence bit-exact results, the same.
std::vector<Instruction> forward_units(int micro_batches, int token_slices);
std::vector<Instruction> backward_units(int micro_batches, int token_slices);

// GPipe (Huang et al. 2019, section 2.2, figure 2c): all forwards, then all backwards.
// With token slices this is TeraPipe's own order (section 3): every slice forward, then
// every slice backward in reverse.
Schedule gpipe_schedule(int stages, int micro_batches, int token_slices = 1);
// 1F1B with a flush per mini-batch (PipeDream-Flush; Narayanan et al. 2021, and the
// steady state of PipeDream, section 3.2): stage s runs K - s - 1 warm-up forwards, then
// alternates one forward and one backward, then drains; at most K - s micro-batches are
// in flight on stage s. With S token slices (which TeraPipe's paper does not combine with
// 1F1B) the first backward needs all S slices of micro-batch 0 forwarded, so the warm-up
// grows by S - 1 units.
Schedule one_f_one_b_schedule(int stages, int micro_batches, int token_slices = 1);
// The compute order of 1F1B on one stage (Forward and Backward only), which PipeDream's
// asynchronous schedule shares.
Program one_f_one_b_order(int stage, int stages, int micro_batches, int token_slices = 1);
// The same order over given units: `warmup` forwards, then one forward and one backward in
// turn, then the remaining backwards.
Program one_f_one_b_order(const std::vector<Instruction>& forwards, const std::vector<Instruction>& backwards, size_t warmup);
// Zero-bubble schedules (Qi et al. ICLR 2024, section 3.1): each backward split into B
// (BackwardInput) and W (BackwardWeight), W filling what would be bubbles. "zb-h1" keeps
// 1F1B's K - s micro-batches in flight until B, "zb-h2" up to 2 (K - s) - 1; both keep at
// most K - 1 waiting for W. With F = B = W the bubble is (K - 1)(F + B - W), a third of
// 1F1B's. Figures in schedule.cpp.
Schedule zero_bubble_schedule(const std::string& name, int stages, int micro_batches);
// The V-shaped schedules (Qi et al. NeurIPS 2024; ZB-V, ICLR 2024): each stage holds two
// chunks in a V (Placement::V), backwards split into B and W. "zb-v" keeps 1F1B's activation
// memory and leaves only the fill as bubble when F = B = W; "v-half" half of it, "v-min" a
// third (up to the papers' rounding). v_schedule_memory is that memory, in whole-stage
// micro-batches. The rule and a figure are in v_schedule.cpp.
Schedule v_schedule(const std::string& name, int stages, int micro_batches);
int v_schedule_memory(const std::string& name, int stages);
// DualPipeV (DeepSeek's DualPipe cut in half onto a V): in the steady state each step pairs a
// forward of one chunk with a backward of the other (Instruction::overlapped); its bubble
// is (K - 1)(F&B + B - 3W) per stage, DualPipe's (PP/2 - 1)(F&B + B - 3W) at PP = 2K. M >= 2K.
Schedule dualpipev_schedule(int stages, int micro_batches);
bool is_v_schedule(const std::string& name);  // zb-v, v-half, v-min or dualpipev: two chunks per stage in a V
// Interleaved 1F1B (Narayanan et al. SC 2021, section 2.2, figure 4): each stage holds v
// chunks; see the figure in schedule.cpp. M must be a multiple of K.
Schedule interleaved_schedule(int stages, int micro_batches, int virtual_stages);
// Every schedule by the name --schedule takes, with what it is in one line: the one list that
// the command line's checks and help and make_schedule's errors read.
struct ScheduleName {
  const char* name;
  const char* summary;
};
const std::vector<ScheduleName>& schedule_names();
std::vector<std::string> schedule_name_list();  // the names alone, in order
std::string schedule_names_text();               // "gpipe, 1f1b, ..., or pipedream"

// By name, for the synchronous schedules' parameters: build_schedule (schedule_spec.h) with
// the other parameters at their defaults.
Schedule make_schedule(const std::string& name, int stages, int micro_batches, int token_slices = 1, int virtual_stages = 1);

// Inserts ReceiveActivation before and SendActivation after each Forward, ReceiveGradient
// before and SendGradient after each Backward or BackwardInput (none across the pipeline's two ends: the
// first piece's input and the last piece's output), and,
// in a synchronous schedule, an OptimizerStep at the end of every program (an asynchronous
// generator places its own).
void add_communication(Schedule& schedule);

}  // namespace minipipe::pipeline

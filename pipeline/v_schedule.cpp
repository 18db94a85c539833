// The V-shaped schedules of Qi et al., "Pipeline Parallelism with Controllable Memory"
// (NeurIPS 2024), and ZB-V of the zero-bubble paper (ICLR 2024, section 6). Each stage holds two
// chunks in a V (Placement::V): a micro-batch goes down the stages through chunk 0 and back
// up through chunk 1, so stage 0 holds the first and the last piece, and each backward is
// split into B and W as in ZB-H1.
//
// The papers build these from repeated building blocks whose lifespan sets the memory. Here
// one greedy rule, run on unit costs (F = B = W per chunk), places the units under a memory
// limit per stage, which is what tells the three apart: a stage that is free does
//   1. a B if one is ready (the critical path; the older micro-batch, chunk 0 on a tie),
//   2. else its oldest W if 3K already wait (a W keeps what its weight gradients need),
//   3. else a chunk-1 F if one is ready (its memory was set aside when its chunk 0 ran here),
//   4. else a chunk-0 F if one is ready and the micro-batch's two chunk units fit under the
//      limit beside those in flight (forwarded, not yet B) and those set aside,
//   5. else its oldest W.
// In units of a whole stage's micro-batch (two chunk units), the limit is the papers'
// activation memory: K for zb-v (1F1B's), (K + 2) / 2 for v-half, (K + 4) / 3 for v-min
// (rounded down); one chunk unit more than twice that lets the schedule use every unit of
// it. With F = B = W, zb-v's bubble is only the fill: K - 1 chunk forwards on the last stage
// before its first unit, against 1F1B's (K - 1)(F + B + W) of whole stages (6 (K - 1) chunk
// units); tests/pipeline_test.cpp asserts it and the memories for K = 2..8. K = 4, M = 8
// (`minipipe simulate --schedule zb-v --stages 4 --micro-batches 8 --backward-cost 2 --grid`).
#include <algorithm>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

#include "pipeline/schedule.h"

namespace minipipe::pipeline {

bool is_v_schedule(const std::string& name) {
  return name == "zb-v" || name == "v-half" || name == "v-min" || name == "dualpipev";
}

int v_schedule_memory(const std::string& name, int stages) {
  if (name == "zb-v") return stages;
  if (name == "v-half") return (stages + 2) / 2;
  if (name == "v-min") return (stages + 4) / 3;
  throw std::invalid_argument("v_schedule_memory: '" + name + "' is not zb-v, v-half or v-min");
}

Schedule v_schedule(const std::string& name, int stages, int micro_batches) {
  if (stages < 1 || micro_batches < 1)
    throw std::invalid_argument(name + ": need at least 1 stage and 1 micro-batch, got " + std::to_string(stages) +
                                " stages and " + std::to_string(micro_batches) + " micro-batches");
  const int limit = 2 * v_schedule_memory(name, stages) + 1;  // chunk units
  const int weights_due = 3 * stages, pieces = 2 * stages, never = -1;
  Schedule s{name, stages, micro_batches, std::vector<Program>(stages)};
  s.virtual_stages = 2;
  s.placement = Placement::V;
  // When each micro-batch's F and B ended on each piece (never: not yet).
  std::vector<std::vector<int>> forward_done(pieces, std::vector<int>(micro_batches, never)),
      input_done(pieces, std::vector<int>(micro_batches, never));
  struct StageState {
    int forward[2] = {0, 0}, backward[2] = {0, 0};  // the next micro-batch of each chunk
    std::deque<Instruction> weights;                // Ws waiting, oldest first
    int weights_done = 0;
  };
  std::vector<StageState> state(stages);
  auto ready = [](int done, int step) { return done != never && done <= step; };
  for (int step = 0, finished = 0; finished < stages; ++step) {
    for (int stage = 0; stage < stages; ++stage) {
      StageState& st = state[stage];
      if (st.weights_done == 2 * micro_batches) continue;
      Program& program = s.programs[stage];
      auto forward_ready = [&](int chunk) {
        const int m = st.forward[chunk], piece = s.piece_of(stage, chunk);
        return m < micro_batches && (piece == 0 || ready(forward_done[piece - 1][m], step));
      };
      auto backward_ready = [&](int chunk) {
        const int m = st.backward[chunk], piece = s.piece_of(stage, chunk);
        if (m >= st.forward[chunk]) return false;
        return piece + 1 == pieces ? ready(forward_done[piece][m], step) : ready(input_done[piece + 1][m], step);
      };
      auto run_weight = [&] {
        program.push_back(st.weights.front());
        st.weights.pop_front();
        if (++st.weights_done == 2 * micro_batches) ++finished;
      };
      auto run_forward = [&](int chunk) {
        const int m = st.forward[chunk]++;
        program.push_back({Op::Forward, m, -1, 0, chunk});
        forward_done[s.piece_of(stage, chunk)][m] = step + 1;
      };
      const int in_flight = st.forward[0] - st.backward[0] + st.forward[1] - st.backward[1];
      const int set_aside = st.forward[0] - st.forward[1];  // past chunk 0 here, chunk 1 still to come
      int chunk = -1;  // the B to run: the older micro-batch's, chunk 0 on a tie
      for (int c : {0, 1})
        if (backward_ready(c) && (chunk < 0 || st.backward[c] < st.backward[chunk])) chunk = c;
      if (chunk >= 0) {
        const int m = st.backward[chunk]++;
        program.push_back({Op::BackwardInput, m, -1, 0, chunk});
        input_done[s.piece_of(stage, chunk)][m] = step + 1;
        st.weights.push_back({Op::BackwardWeight, m, -1, 0, chunk});
      } else if (static_cast<int>(st.weights.size()) >= weights_due) {
        run_weight();
      } else if (forward_ready(1)) {
        run_forward(1);
      } else if (forward_ready(0) && in_flight + set_aside + 2 <= limit) {
        run_forward(0);
      } else if (!st.weights.empty()) {
        run_weight();
      }
    }
  }
  add_communication(s);
  return s;
}

// DualPipeV, as DeepSeek's dualpipev orders it, in eight phases per stage s of K (M >= 2K
// micro-batches; F0 is a forward on chunk 0, B1 a backward on chunk 1, I a zero-bubble B whose
// W comes later, oldest first, and F&B an overlapped pair):
//   1. F0 x 2 (K - s - 1)            warm-up down the V
//   2. (F0, F1) x (s + 1)            the first micro-batches turn at the bottom
//   3. (I1, W, F1) x (K - s - 1)
//   4. (F0&B1, F1&B0) x (M - 2K + s + 1)   the steady state (the last stage's first F0, B1 apart)
//   5. (B1, F1&B0) x (K - s - 1)
//   6. (B1, B0) x (s + 1)            from half-way on as I, their Ws left for later
//   7. (W, I0) x (K - s - 1)
//   8. W x (s + 1)
Schedule dualpipev_schedule(int stages, int micro_batches) {
  if (stages < 1 || micro_batches < 2 * stages)
    throw std::invalid_argument("dualpipev: needs at least 2 micro-batches per stage (M >= 2K = " +
                                std::to_string(2 * stages) + "), got " + std::to_string(micro_batches) + " for " +
                                std::to_string(stages) + " stages");
  Schedule s{"dualpipev", stages, micro_batches, std::vector<Program>(stages)};
  s.virtual_stages = 2;
  s.placement = Placement::V;
  for (int stage = 0; stage < stages; ++stage) {
    Program& program = s.programs[stage];
    int forward[2] = {0, 0}, backward[2] = {0, 0};
    std::deque<Instruction> weights;
    auto run_forward = [&](int chunk, bool overlapped = false) {
      Instruction f{Op::Forward, forward[chunk]++, -1, 0, chunk};
      f.overlapped = overlapped;
      program.push_back(f);
    };
    auto run_backward = [&](int chunk, bool weights_later) {
      const int m = backward[chunk]++;
      program.push_back({weights_later ? Op::BackwardInput : Op::Backward, m, -1, 0, chunk});
      if (weights_later) weights.push_back({Op::BackwardWeight, m, -1, 0, chunk});
    };
    auto run_weight = [&] {
      program.push_back(weights.front());
      weights.pop_front();
    };
    const int below = stages - stage - 1;  // stages after this one
    for (int i = 0; i < 2 * below; ++i) run_forward(0);
    for (int i = 0; i <= stage; ++i) run_forward(0), run_forward(1);
    for (int i = 0; i < below; ++i) run_backward(1, true), run_weight(), run_forward(1);
    for (int i = 0; i < micro_batches - 2 * stages + stage + 1; ++i) {
      run_forward(0, !(i == 0 && stage == stages - 1)), run_backward(1, false);
      run_forward(1, true), run_backward(0, false);
    }
    for (int i = 0; i < below; ++i) run_backward(1, false), run_forward(1, true), run_backward(0, false);
    bool weights_later = false;  // from the middle of phase 6 on: the odd stages before a B1, the even before a B0
    for (int i = 0; i <= stage; ++i) {
      if (i == (stage + 1) / 2 && stage % 2 == 1) weights_later = true;
      run_backward(1, weights_later);
      if (i == (stage + 1) / 2 && stage % 2 == 0) weights_later = true;
      run_backward(0, weights_later);
    }
    for (int i = 0; i < below; ++i) run_weight(), run_backward(0, true);
    while (!weights.empty()) run_weight();
  }
  add_communication(s);
  return s;
}

}  // namespace minipipe::pipeline

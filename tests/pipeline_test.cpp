// pipeline/: schedules as data, the validator, the simulator.
#include <gtest/gtest.h>

#include "pipeline/validator.h"
#include "test_helpers.h"

namespace minipipe::pipeline {
namespace {

TEST(Schedules, GridsReadLikeThePapersFigures) {
  EXPECT_EQ(format_grid(gpipe_schedule(3, 4)),
            "gpipe, 3 stages, 4 micro-batches (unit forward and backward costs)\n"
            "stage 0 | F0 F1 F2 F3 .  .  .  .  B0 B1 B2 B3\n"
            "stage 1 | .  F0 F1 F2 F3 .  .  B0 B1 B2 B3 .\n"
            "stage 2 | .  .  F0 F1 F2 F3 B0 B1 B2 B3 .  .\n");
  EXPECT_EQ(format_grid(one_f_one_b_schedule(3, 4)),
            "1f1b, 3 stages, 4 micro-batches (unit forward and backward costs)\n"
            "stage 0 | F0 F1 F2 .  .  B0 F3 B1 .  B2 .  B3\n"
            "stage 1 | .  F0 F1 .  B0 F2 B1 F3 B2 .  B3 .\n"
            "stage 2 | .  .  F0 B0 F1 B1 F2 B2 F3 B3 .  .\n");
}

TEST(Schedules, CommunicationIsInsertedAroundCompute) {
  const Schedule s = gpipe_schedule(2, 1);
  EXPECT_EQ(s.programs[0], (Program{{Op::Forward, 0}, {Op::SendActivation, 0}, {Op::ReceiveGradient, 0},
                                    {Op::Backward, 0}, {Op::OptimizerStep, -1}}));
  EXPECT_EQ(s.programs[1], (Program{{Op::ReceiveActivation, 0}, {Op::Forward, 0}, {Op::Backward, 0},
                                    {Op::SendGradient, 0}, {Op::OptimizerStep, -1}}));
  EXPECT_THROW_WITH(make_schedule("zigzag", 2, 2), "'zigzag'", "gpipe, 1f1b or pipedream");
  EXPECT_THROW_WITH(gpipe_schedule(0, 2), "at least 1 stage");
}

TEST(Schedules, OneFOneBKeepsAtMostKMinusStageMicroBatchesInFlight) {
  for (int k = 1; k <= 6; ++k)
    for (int m = 1; m <= 12; ++m) {
      const ValidationReport gpipe = validate(gpipe_schedule(k, m)), one_f_one_b = validate(one_f_one_b_schedule(k, m));
      for (int s = 0; s < k; ++s) {
        EXPECT_EQ(gpipe.peak_in_flight[s], m) << "K=" << k << " M=" << m << " stage " << s;
        EXPECT_EQ(one_f_one_b.peak_in_flight[s], std::min(k - s, m)) << "K=" << k << " M=" << m << " stage " << s;
      }
    }
}

TEST(Simulator, BubbleMatchesTheFormulaForUniformCosts) {
  // GPipe section 2.2: (K - 1) / (M + K - 1), for any forward/backward cost ratio.
  for (const char* name : {"gpipe", "1f1b"})
    for (int k = 1; k <= 8; ++k)
      for (int m = 1; m <= 32; ++m)
        for (double backward : {1.0, 2.0}) {
          const SimulationResult r = simulate(make_schedule(name, k, m), CostModel::uniform(k, 1.0, backward));
          ASSERT_NEAR(r.bubble_fraction, theoretical_bubble_fraction(k, m), 1e-12) << name << " K=" << k << " M=" << m;
          ASSERT_NEAR(r.makespan, (m + k - 1) * (1.0 + backward), 1e-9);
        }
}

TEST(Validator, RejectsBrokenPrograms) {
  Schedule backward_first = gpipe_schedule(1, 2);
  std::swap(backward_first.programs[0][0], backward_first.programs[0][2]);  // B0 before F0
  EXPECT_THROW_WITH(validate(backward_first), "stage 0", "backward of micro-batch 0 before its forward");

  Schedule lost_send = gpipe_schedule(2, 2);
  lost_send.programs[0].erase(lost_send.programs[0].begin() + 1);  // stage 0 never sends activation 0
  EXPECT_THROW_WITH(validate(lost_send), "stage 0", "0 SendActivation of micro-batch 0, needs 1");

  Schedule repeated = gpipe_schedule(2, 2);
  repeated.programs[1].insert(repeated.programs[1].begin(), {Op::Forward, 1});
  EXPECT_THROW_WITH(validate(repeated), "stage 1", "forward of micro-batch 1 2 times");

  // Stage 0 waits for micro-batch 0's gradient before sending its activation; stage 1 waits
  // for that activation: a cycle.
  Schedule cycle = gpipe_schedule(2, 1);
  cycle.programs[0] = {{Op::Forward, 0}, {Op::ReceiveGradient, 0}, {Op::SendActivation, 0}, {Op::Backward, 0}, {Op::OptimizerStep, -1}};
  EXPECT_THROW_WITH(validate(cycle), "deadlock", "stage 0 ReceiveGradient(micro-batch 0)", "stage 1 ReceiveActivation(micro-batch 0)");

  // Stage 0 sends micro-batches in the order 1, 0 while stage 1 receives 0 first.
  Schedule crossed = gpipe_schedule(2, 2);
  std::swap(crossed.programs[0][0], crossed.programs[0][2]);
  std::swap(crossed.programs[0][1], crossed.programs[0][3]);
  EXPECT_THROW_WITH(validate(crossed), "stage 1 ReceiveActivation(micro-batch 0)", "micro-batch 1", "different orders");
}

}  // namespace
}  // namespace minipipe::pipeline

// pipeline/: schedules as data, the validator, the simulator.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <random>
#include <tuple>

#include "pipeline/charts.h"
#include "pipeline/pipedream.h"
#include "pipeline/planner.h"
#include "pipeline/schedule_csv.h"
#include "pipeline/simulate_spec.h"
#include "pipeline/validator.h"
#include "pipeline/weight_versions.h"
#include "pipeline/zb_auto.h"
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
  EXPECT_THROW_WITH(make_schedule("zigzag", 2, 2), "'zigzag'", "gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, v-half, v-min, zb-auto, dualpipev or pipedream");
  EXPECT_THROW_WITH(gpipe_schedule(0, 2), "at least 1 stage");
}

// Every boundary between consecutive pieces costs an activation forward and a gradient back:
// 2 (K - 1) per micro-batch in a line of K stages, 2 (vK - 1) with v chunks per stage (the V's
// turn included, a hand-over on the last stage), per token slice with slices.
TEST(Schedules, MessagesPerMicroBatchAreTwoPerBoundaryBetweenPieces) {
  for (int k = 2; k <= 6; ++k) {
    for (const char* name : {"gpipe", "1f1b", "zb-h1", "zb-h2"})
      EXPECT_EQ(messages_per_unit(make_schedule(name, k, 2 * k)), 2 * (k - 1)) << name << " K = " << k;
    EXPECT_EQ(messages_per_unit(make_schedule("interleaved", k, 2 * k, 1, 3)), 2 * (3 * k - 1)) << "K = " << k;
    for (const char* name : {"zb-v", "v-half", "v-min", "dualpipev"})
      EXPECT_EQ(messages_per_unit(make_schedule(name, k, 2 * k, 1, 2)), 2 * (2 * k - 1)) << name << " K = " << k;
    EXPECT_EQ(messages_per_unit(make_schedule("gpipe", k, 3, 4)), 2 * (k - 1)) << "sliced, K = " << k;
  }
}

// The bubble-against-M chart's points, against the papers' formulas with F = 1, B = 2:
// GPipe and 1F1B (K-1)/(M+K-1); interleaved with v chunks (K-1)/(vM+K-1), at multiples of K
// only; ZB-H1, whose idle time per stage is (K-1)(F + B/2 - B/2), (K-1)/(3M + K-1) once M >= K.
TEST(Schedules, BubbleChartPointsFollowThePapersFormulas) {
  const int k = 3;
  const std::vector<BubbleCurve> curves = bubble_curves({"gpipe", "1f1b", "interleaved", "zb-h1"}, k, 9, 1.0, 2.0);
  ASSERT_EQ(curves.size(), 4u);
  for (const BubbleCurve& c : curves) {
    SCOPED_TRACE(c.schedule);
    const bool interleaved = c.schedule == "interleaved";
    const std::vector<int> expected_ms = interleaved ? std::vector<int>{3, 6, 9} : std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9};
    EXPECT_EQ(c.micro_batches, expected_ms);
    for (size_t i = 0; i < c.micro_batches.size(); ++i) {
      const double m = c.micro_batches[i];
      if (c.schedule == "zb-h1" && m < k) {  // too few micro-batches for every gap to get a W
        EXPECT_LT(c.bubbles[i], (k - 1) / (m + k - 1)) << "M = " << m;
        continue;
      }
      const double expected = c.schedule == "zb-h1" ? (k - 1) / (3 * m + k - 1)
                              : interleaved         ? (k - 1) / (2 * m + k - 1)
                                                    : (k - 1) / (m + k - 1);
      EXPECT_NEAR(c.bubbles[i], expected, 1e-9) << "M = " << m;
    }
  }
  const std::string svg = bubble_chart_svg(curves, k);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  EXPECT_EQ(polylines, 5u);  // a curve per schedule and GPipe's formula
  EXPECT_NE(svg.find("<title>interleaved M = 6: "), std::string::npos);
  EXPECT_NE(svg.find("interleaved (2 chunks)"), std::string::npos);
  EXPECT_THROW_WITH(bubble_curves({"gpipe"}, 0, 4, 1.0, 2.0), "at least one stage");
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

TEST(Interleaved, BubbleIsKMinusOneOverVMOfTheIdealTime) {
  // Narayanan et al. SC 2021, section 2.2: each of the v chunks does 1/v of a stage's work
  // (costs 1 and 2 per chunk here), and the fill and drain shrink to K - 1 chunk steps.
  for (int k = 2; k <= 8; ++k)
    for (int v = 2; v <= 4; ++v)
      for (int m = k; m <= 32; m += k) {
        const Schedule schedule = interleaved_schedule(k, m, v);
        validate(schedule);  // no deadlock, every (micro-batch, chunk) once, messages in order
        const SimulationResult r = simulate(schedule, CostModel::uniform(k, 1.0, 2.0));
        const double ideal = m * v * 3.0;
        ASSERT_NEAR(r.makespan, ideal + (k - 1) * 3.0, 1e-9) << "K=" << k << " v=" << v << " M=" << m;
        ASSERT_NEAR(r.bubble_fraction, theoretical_bubble_fraction(k, m, v), 1e-12) << "K=" << k << " v=" << v << " M=" << m;
      }
  EXPECT_THROW_WITH(interleaved_schedule(4, 6, 2), "multiple of 4", "use 8");
  EXPECT_THROW_WITH(interleaved_schedule(1, 4, 2), "at least 2 stages");
  EXPECT_THROW_WITH(make_schedule("1f1b", 2, 4, 1, 2), "virtual stages", "interleaved");
  EXPECT_THROW_WITH(make_schedule("interleaved", 2, 4, 2, 2), "token slices");
}

TEST(ZeroBubble, BubbleIsKMinusOneTimesFPlusBMinusW) {
  // Qi et al. 2024, section 3.1, with F = B = W = 1 (backward = B + W = 2): 1F1B's bubble
  // is (K - 1)(F + B + W) per stage; ZB-H1's, (K - 1)(F + B - W). ZB-H2 also fills the
  // middle but, with a flush at the end of every step (no overlap with the next step's
  // forwards, as the paper's section 5 allows), keeps the fill and drain, (K - 1) F: the
  // same with these costs.
  for (const char* name : {"zb-h1", "zb-h2"})
    for (int k = 2; k <= 8; ++k)
      for (int m = 1; m <= 32; ++m) {
        const Schedule schedule = make_schedule(name, k, m);
        validate(schedule);
        const SimulationResult r = simulate(schedule, CostModel::uniform(k, 1.0, 2.0));
        const double one_f_one_b = 3.0 * (m + k - 1);
        if (m < k) {  // no steady state: the papers' forms do not apply; never worse than 1F1B
          EXPECT_LE(r.makespan, one_f_one_b) << name << " K=" << k << " M=" << m;
          continue;
        }
        EXPECT_NEAR(r.makespan, 3.0 * m + (k - 1), 1e-9) << name << " K=" << k << " M=" << m;
        EXPECT_NEAR(r.bubble_fraction, (k - 1) / (3.0 * m + k - 1), 1e-12) << name << " K=" << k << " M=" << m;
      }
}

// The V schedules' figures (Qi et al. NeurIPS 2024, table of V-Min, V-Half and V-ZB; ZB-V, ICLR
// 2024), through the simulator, with F = B = W per chunk and a chunk half of a stage (chunk
// costs F = 1, B + W = 2; a whole stage's micro-batch is two chunk units, so 1F1B on the same
// work costs F = 2, B + W = 4 per stage):
// - activation memory, the most (micro-batch, chunk) units in flight on a stage over two, is
//   at most the papers' K (zb-v, 1F1B's), (K + 2) / 2 (v-half) and (K + 4) / 3 (v-min);
// - zb-v's bubble is only its fill, K - 1 chunk forwards: (K - 1) / (6 M + K - 1), zero in
//   the steady state (1F1B's: (K - 1) / (M + K - 1));
// - v-half's bubble is at most 1F1B's, and v-min's within a quarter of it (the paper:
//   "comparable"; measured worst 1.24x at K = 7, M = 28, the only case above 1F1B's).
TEST(VSchedules, MemoryAndBubbleAsThePapersStateThem) {
  for (int k = 2; k <= 8; ++k)
    for (int m : {k, 2 * k, 3 * k, 4 * k}) {
      const double one_f_one_b = static_cast<double>(k - 1) / (m + k - 1);
      for (const char* name : {"zb-v", "v-half", "v-min"}) {
        const Schedule schedule = make_schedule(name, k, m);
        validate(schedule);
        ASSERT_EQ(schedule.placement, Placement::V);
        const SimulationResult r = simulate(schedule, CostModel::uniform(k, 1.0, 2.0));
        const std::string what = std::string(name) + " K=" + std::to_string(k) + " M=" + std::to_string(m);
        const int most = *std::max_element(r.peak_in_flight.begin(), r.peak_in_flight.end());
        EXPECT_LE(most, 2 * v_schedule_memory(name, k)) << what;
        if (std::string(name) == "zb-v") {
          EXPECT_EQ(most, 2 * k) << what;  // 1F1B's, no less
          EXPECT_NEAR(r.bubble_fraction, (k - 1) / (6.0 * m + k - 1), 1e-12) << what;
        } else if (std::string(name) == "v-half") {
          EXPECT_LE(r.bubble_fraction, one_f_one_b + 1e-12) << what;
        } else {
          EXPECT_LE(r.bubble_fraction, 1.25 * one_f_one_b) << what;
        }
      }
      EXPECT_EQ(v_schedule_memory("v-half", k), (k + 2) / 2);
      EXPECT_EQ(v_schedule_memory("v-min", k), (k + 4) / 3);
    }
}

// DualPipeV (DeepSeek-V3, DualPipe cut in half): in DualPipe's notation, with F, B and W a
// chunk's forward, whole backward and weight backward and F&B a forward overlapped with a
// backward, the bubble is (PP/2 - 1)(F&B + B - 3W), PP = 2K here. It does not grow or shrink
// with M, and the stages hold 2K + 1 chunk units (DualPipe's PP + 1). The formula takes a pair's
// outputs to leave at its end; minipipe runs the pair in sequence on the CPU, the forward's
// activation leaving before the backward runs, so the simulated bubble is at most the formula
// (half of it when F = B = W).
TEST(VSchedules, DualPipeVBubbleIsWithinItsFormulaAndConstantInM) {
  for (int k = 2; k <= 8; ++k)
    for (const auto& [f, b] : std::vector<std::pair<double, double>>{{1, 2}, {1, 3}, {1, 4}, {2, 3}}) {
      const double w = b / 2, formula = (k - 1) * ((f + b) + b - 3 * w);  // F&B = F + B, run in sequence
      double first_idle = -1;
      for (int m : {2 * k, 3 * k, 4 * k}) {
        const Schedule schedule = make_schedule("dualpipev", k, m);
        validate(schedule);
        const SimulationResult r = simulate(schedule, CostModel::uniform(k, f, b));
        const double idle = r.makespan - m * 2 * (f + b);  // per stage: every stage does 2M chunks' work
        const std::string what = "K=" + std::to_string(k) + " M=" + std::to_string(m) + " F=" + std::to_string(f) +
                                 " B=" + std::to_string(b);
        EXPECT_LE(idle, formula + 1e-9) << what;
        if (f * 2 == b) {
          EXPECT_NEAR(idle, formula / 2, 1e-9) << what;
        }
        if (first_idle < 0) first_idle = idle;
        EXPECT_NEAR(idle, first_idle, 1e-9) << what;
        EXPECT_EQ(*std::max_element(r.peak_in_flight.begin(), r.peak_in_flight.end()), 2 * k + 1) << what;
      }
    }
  EXPECT_THROW_WITH(make_schedule("dualpipev", 4, 7), "M >= 2K = 8");
}

// zb-auto (the ZB paper's automatic scheduler, its greedy part): on measured-like costs where W
// is not B and stages differ, its predicted step is never longer than zb-h1's (zb-h1 is among
// its candidates) and shorter where unit costs mislead zb-h1; it keeps within --max-in-flight.
TEST(ZbAuto, NeverSlowerThanZbH1OnTheSameCostsAndWithinItsMemory) {
  struct Case {
    std::vector<double> forward, backward, weight;
  };
  const std::vector<Case> cases{{{1, 1, 1, 1}, {2, 2, 2, 2}, {1, 1, 1, 1}},            // the unit costs zb-h1 assumes
                                {{1, 1, 1, 1}, {2, 2, 2, 2}, {0.4, 0.4, 0.4, 0.4}},    // W smaller than B (the GPT)
                                {{1, 1.5, 1, 2}, {2, 3, 2, 4}, {0.8, 1.2, 0.8, 1.6}},  // unequal stages
                                {{2, 1, 1, 1}, {3, 2, 2, 3}, {1, 1, 1, 1}}};
  bool faster_somewhere = false;
  for (const Case& c : cases)
    for (int m : {4, 8, 16}) {
      CostModel costs = CostModel::uniform(4, 1, 1);
      costs.forward = c.forward, costs.backward = c.backward, costs.backward_weight = c.weight;
      const Schedule h1 = make_schedule("zb-h1", 4, m);
      for (int max_in_flight : {0, 2}) {
        const Schedule chosen = zb_auto_schedule(4, m, costs, max_in_flight);
        validate(chosen);
        const SimulationResult r = simulate(chosen, costs), base = simulate(h1, costs);
        const std::string what = "M=" + std::to_string(m) + " max in flight " + std::to_string(max_in_flight) +
                                 " W " + std::to_string(c.weight[0]);
        EXPECT_EQ(chosen.name, "zb-auto");
        EXPECT_LE(*std::max_element(r.peak_in_flight.begin(), r.peak_in_flight.end()), max_in_flight ? max_in_flight : 4)
            << what;
        if (max_in_flight == 0) {
          EXPECT_LE(r.makespan, base.makespan + 1e-9) << what;
          faster_somewhere = faster_somewhere || r.makespan < base.makespan - 1e-9;
        }
      }
    }
  EXPECT_TRUE(faster_somewhere);
  EXPECT_THROW_WITH(make_schedule("zb-auto", 2, 4), "measured costs");
  // What rank 0 sends the other ranks: every number back exactly.
  CostModel costs = CostModel::uniform(3, 0.1, 0.30000000000000004);
  costs.backward_weight = {1.0 / 3, 2e-7, 0.125};
  const CostModel back = parse_costs(format_costs(costs));
  EXPECT_EQ(back.forward, costs.forward);
  EXPECT_EQ(back.backward, costs.backward);
  EXPECT_EQ(back.backward_weight, costs.backward_weight);
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

TEST(PipeDream, GridShowsEachComputesWeightVersionAndTheUpdates) {
  EXPECT_EQ(format_grid(pipedream_schedule(3, 6, 1, WeightPolicy::Stash)),
            "pipedream, 3 stages, 6 micro-batches (unit forward and backward costs; weights stash, an update per 1 "
            "micro-batch, [version], U = update)\n"
            "stage 0 | F0[0]  F1[0]  F2[0]  .      .      B0[0]U F3[1]  B1[0]U F4[2]  B2[0]U F5[3]  B3[1]U .      B4[2]U .      "
            "B5[3]U\n"
            "stage 1 | .      F0[0]  F1[0]  .      B0[0]U F2[1]  B1[0]U F3[2]  B2[1]U F4[3]  B3[2]U F5[4]  B4[3]U .      B5[4]U .\n"
            "stage 2 | .      .      F0[0]  B0[0]U F1[1]  B1[1]U F2[2]  B2[2]U F3[3]  B3[3]U F4[4]  B4[4]U F5[5]  B5[5]U .      .\n");
}

TEST(PipeDream, VersionsHeldFollowThePolicy) {
  auto held = [](WeightPolicy weights, int per_update) {
    return simulate(pipedream_schedule(4, 12 * per_update, per_update, weights), CostModel::uniform(4, 1, 2)).peak_weight_versions;
  };
  EXPECT_EQ(held(WeightPolicy::Stash, 1), (std::vector<int>{4, 3, 2, 1}));  // K - s (section 3.3)
  EXPECT_EQ(held(WeightPolicy::None, 1), (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(held(WeightPolicy::TwoBuffered, 4), (std::vector<int>{2, 2, 2, 1}));
  EXPECT_EQ(held(WeightPolicy::VerticalSync, 1), (std::vector<int>{4, 4, 4, 4}));  // later stages go back further
}

// The chart's staircase replays the weight instructions on its own: its highest step per
// stage is the policy's count (the test above), and in the steady state of stashing stage s
// holds K - s versions for a while, not only at an instant.
TEST(PipeDream, VersionsOverTimeReachEachPolicysCount) {
  for (const auto& [weights, per_update, expected] :
       {std::tuple{WeightPolicy::Stash, 1, std::vector<int>{4, 3, 2, 1}},
        std::tuple{WeightPolicy::TwoBuffered, 4, std::vector<int>{2, 2, 2, 1}},
        std::tuple{WeightPolicy::None, 1, std::vector<int>{1, 1, 1, 1}}}) {
    const Schedule schedule = pipedream_schedule(4, 12 * per_update, per_update, weights);
    const SimulationResult result = simulate(schedule, CostModel::uniform(4, 1, 2));
    const std::vector<Staircase> series = weight_versions_over_time(schedule, result);
    ASSERT_EQ(series.size(), 4u);
    for (int s = 0; s < 4; ++s) {
      int most = 0;
      double longest_at_most = 0;
      for (size_t i = 0; i < series[s].size(); ++i) {
        const double until = i + 1 < series[s].size() ? series[s][i + 1].time : result.makespan;
        const int held = static_cast<int>(series[s][i].value);
        if (held > most) longest_at_most = 0;
        most = std::max(most, held);
        if (series[s][i].value == most) longest_at_most = std::max(longest_at_most, until - series[s][i].time);
      }
      EXPECT_EQ(most, expected[s]) << weight_policy_name(weights) << ", stage " << s;
      EXPECT_GT(longest_at_most, 1.0) << weight_policy_name(weights) << ", stage " << s;
    }
  }
  const Schedule stash = pipedream_schedule(3, 6, 1, WeightPolicy::Stash);
  const SimulationResult result = simulate(stash, CostModel::uniform(3, 1, 2));
  const std::string svg = staircase_svg(weight_versions_over_time(stash, result), stash.worker_names(),
                                        result.makespan, "stash", "versions held");
  EXPECT_NE(svg.find("stage 2"), std::string::npos);
  size_t staircases = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++staircases;
  EXPECT_EQ(staircases, 3u);  // one per stage
}

// Activations over time: GPipe's stages all climb to M before the first backward, 1F1B's
// stage s never holds more than K - s (PipeDream-Flush, section 3.2), and both end empty.
// What `simulate` and the playground print: each schedule's formula, worked by hand here,
// beside the simulation; with equal costs the simulated bubble meets it.
TEST(Schedules, SimulateSpecPutsEachFormulaBesideTheSimulation) {
  auto spec = [](const std::string& name, int k, int m, int v = 1, int slices = 1) {
    ScheduleSpec s;
    s.name = name, s.stages = k, s.micro_batches = m, s.virtual_stages = v, s.token_slices = slices;
    return s;
  };
  const SimulatedSpec gpipe = simulate_spec(spec("gpipe", 4, 8), {});
  EXPECT_DOUBLE_EQ(gpipe.formula_bubble, 3.0 / 11);  // (K-1)/(M+K-1)
  EXPECT_NEAR(gpipe.result.bubble_fraction, gpipe.formula_bubble, 1e-12);
  const SimulatedSpec sliced = simulate_spec(spec("1f1b", 3, 2, 1, 4), {});
  EXPECT_DOUBLE_EQ(sliced.formula_bubble, 2.0 / 10);  // M S = 8 units
  EXPECT_EQ(sliced.formula_terms, ", M = 8 units in all");
  const SimulatedSpec interleaved = simulate_spec(spec("interleaved", 4, 8, 2), {});
  EXPECT_DOUBLE_EQ(interleaved.formula_bubble, 3.0 / 19);  // (K-1)/(vM+K-1)
  EXPECT_DOUBLE_EQ(interleaved.costs.forward[0], 0.5);    // a chunk does half its stage's work
  // Zero bubble with W = 0.5 of a backward of 2.5 (B = 2): idle (K-1)(F+B-W) = 2 x 2.5.
  const SimulatedSpec zb = simulate_spec(spec("zb-h1", 3, 6), {.forward = 1, .backward = 2.5, .weight = 0.5});
  EXPECT_DOUBLE_EQ(zb.formula_bubble, 5.0 / (6 * 3.5 + 5.0));
  EXPECT_DOUBLE_EQ(zb.costs.backward_weight[0], 0.5);
  EXPECT_NEAR(zb.result.bubble_fraction, zb.formula_bubble, 1e-12);
  EXPECT_EQ(zb.formula_terms, ", W = 0.5");
  // With W = 1.5 (B = 1) the W's outlast the gaps: only the fill (K-1)F = 2 x 1 is left, which
  // the simulated schedule meets (the paper's expression would give 2 x 0.5).
  const SimulatedSpec long_w = simulate_spec(spec("zb-h1", 3, 6), {.forward = 1, .backward = 2.5, .weight = 1.5});
  EXPECT_DOUBLE_EQ(long_w.formula_bubble, 2.0 / (6 * 3.5 + 2.0));
  EXPECT_NEAR(long_w.result.bubble_fraction, long_w.formula_bubble, 1e-12);
  EXPECT_NE(long_w.formula.find("W > B"), std::string::npos);
  EXPECT_THROW_WITH(simulate_spec(spec("zb-h1", 3, 6), {.forward = 1, .backward = 2, .weight = 3}), "W (3)",
                    "at most the backward's");
  EXPECT_THROW_WITH(simulate_spec(spec("interleaved", 4, 6, 2), {}), "multiple of 4");
}

TEST(Schedules, InFlightOverTimeClimbsToEachSchedulesLimit) {
  const int k = 4, m = 8;
  for (const char* name : {"gpipe", "1f1b"}) {
    const Schedule schedule = make_schedule(name, k, m);
    const std::vector<Staircase> series = in_flight_over_time(schedule, simulate(schedule, CostModel::uniform(k, 1, 2)));
    for (int s = 0; s < k; ++s) {
      int most = 0;
      for (const StairStep& step : series[s]) most = std::max(most, static_cast<int>(step.value));
      EXPECT_EQ(most, std::string(name) == "gpipe" ? m : k - s) << name << ", stage " << s;
      EXPECT_EQ(series[s].back().value, 0) << name << ", stage " << s;
    }
  }
}

TEST(PipeDream, ValidatorRejectsBrokenWeightBookkeeping) {
  const Schedule good = pipedream_schedule(3, 6, 1, WeightPolicy::Stash);
  validate(good);
  auto first = [](Program& p, Op op, int version = -2) {
    for (Instruction& i : p)
      if (i.op == op && (version == -2 || i.version == version)) return &i;
    throw std::logic_error("no such instruction");
  };
  Schedule stale = good;  // a backward that does not use its forward's version
  Instruction* backward = first(stale.programs[0], Op::Backward, 0);
  for (Instruction& i : stale.programs[0])
    if (i.op == Op::Backward && i.micro_batch == 1) backward = &i;
  backward->version = 1;
  EXPECT_THROW_WITH(validate(stale), "stage 0", "parameters hold version 0");
  Schedule unloaded = good;  // the version a backward needs is never put back
  Program& p = unloaded.programs[0];
  p.erase(std::find(p.begin(), p.end(), *first(p, Op::LoadWeights)));
  EXPECT_THROW_WITH(validate(unloaded), "stage 0", "must run with weight version");
  Schedule early_update = good;  // a later forward finds weights one update older than promised
  Program& q = early_update.programs[1];
  q.erase(std::find(q.begin(), q.end(), *first(q, Op::OptimizerStep)));
  EXPECT_THROW_WITH(validate(early_update), "stage 1", "must run with weight version 1");
  Schedule no_final_update = good;
  Program& last = no_final_update.programs[1];
  last.erase(std::find(last.rbegin(), last.rend(), Instruction{Op::OptimizerStep, 5, 6}).base() - 1);
  EXPECT_THROW_WITH(validate(no_final_update), "stage 1", "needs an OptimizerStep after the backward of micro-batch 5");
  Schedule leaky = good;  // a stashed copy that is never dropped
  Program& r = leaky.programs[0];
  r.erase(std::find(r.begin(), r.end(), *first(r, Op::DropWeights)));
  EXPECT_THROW_WITH(validate(leaky), "stage 0", "stashed copies");
  EXPECT_THROW_WITH(pipedream_schedule(4, 8, 2, WeightPolicy::TwoBuffered), "2bw", "use at least 4");
  EXPECT_THROW_WITH(pipedream_schedule(2, 5, 2, WeightPolicy::Stash), "whole updates");
}

TEST(PipeDream, ReplicatedStagesShareTheWorkRoundRobinAndAllReduceBeforeEachUpdate) {
  // Stage 0 on two replicas (PipeDream section 3.1, figure 8's configuration 2-1).
  EXPECT_EQ(format_grid(pipedream_schedule(2, 6, 1, WeightPolicy::Stash, {2, 1})),
            "pipedream, 2 stages, 6 micro-batches, replicas 2,1 (unit forward and backward costs; weights stash, an update "
            "per 1 micro-batch, [version], U = update)\n"
            "stage 0 replica 0 | F0[0]  F2[0]  .      B0[0]U .      .      F4[1]  B2[0]U .      .      .      B4[1]U .      .\n"
            "stage 0 replica 1 | F1[0]  F3[0]  .      .      .      B1[0]U F5[1]  .      .      B3[0]U .      .      .      "
            "B5[1]U\n"
            "stage 1           | .      F0[0]  B0[0]U F1[1]  B1[1]U F2[2]  B2[2]U F3[3]  B3[3]U F4[4]  B4[4]U F5[5]  B5[5]U .\n");
  // Every configuration of up to 5 workers on up to 3 stages validates (no deadlock, each
  // micro-batch on the one replica that owns it), keeps ceil(W_s / r_s) micro-batches in
  // flight per replica (NOAM = ceil(workers / r_0) on the input stage) and, under stash, at
  // most that many weight versions.
  const std::vector<std::vector<int>> configurations = {{2, 1}, {1, 2}, {2, 2}, {3, 1}, {1, 3}, {2, 1, 1}, {1, 2, 1},
                                                        {1, 1, 2}, {2, 2, 1}, {1, 2, 2}, {3, 1, 1}, {4, 1}, {2, 3}};
  for (const std::vector<int>& replicas : configurations) {
    for (int per_update : {1, 2}) {
      const int stages = static_cast<int>(replicas.size());
      const Schedule schedule = pipedream_schedule(stages, 24 * per_update, per_update, WeightPolicy::Stash, replicas);
      const std::string what = "replicas " + format_replicas(replicas) + ", m=" + std::to_string(per_update);
      const ValidationReport report = validate(schedule);
      const SimulationResult simulated = simulate(schedule, CostModel::uniform(stages, 1, 2));
      int workers_downstream = 0;
      for (int r : replicas) workers_downstream += r;
      for (int s = 0; s < stages; ++s) {
        const int r = replicas[s], in_flight = (workers_downstream + r - 1) / r;
        for (int k = 0; k < r; ++k) {
          const int w = schedule.first_worker(s) + k;
          EXPECT_EQ(report.peak_in_flight[w], in_flight) << what << ", " << schedule.worker_name(w);
          EXPECT_LE(simulated.peak_weight_versions[w], in_flight) << what << ", " << schedule.worker_name(w);
          int all_reduces = 0, updates = 0;
          for (const Instruction& i : schedule.programs[w]) {
            all_reduces += i.op == Op::AllReduce;
            updates += i.op == Op::OptimizerStep;
            if (i.op == Op::Forward) {
              EXPECT_EQ(i.micro_batch / per_update % r, k) << what;
            }
          }
          EXPECT_EQ(updates, 24 / r) << what;
          EXPECT_EQ(all_reduces, r > 1 ? updates : 0) << what;
        }
        workers_downstream -= r;
      }
    }
  }
}

TEST(PipeDream, ValidatorRejectsBrokenReplication) {
  const Schedule good = pipedream_schedule(2, 8, 1, WeightPolicy::Stash, {2, 1});
  validate(good);
  Schedule no_all_reduce = good;
  Program& p = no_all_reduce.programs[1];
  p.erase(std::find(p.begin(), p.end(), Instruction{Op::AllReduce, 3}));
  EXPECT_THROW_WITH(validate(no_all_reduce), "stage 0 replica 1", "without an AllReduce", "drift apart");
  Schedule stolen = good;  // replica 0 also forwards micro-batch 1, which replica 1 owns
  stolen.programs[0].insert(stolen.programs[0].begin(), Instruction{Op::Forward, 1});
  EXPECT_THROW_WITH(validate(stolen), "stage 0 replica 0", "runs micro-batch 1, which belongs to stage 0 replica 1");
  Schedule missing_program = good;
  missing_program.programs.pop_back();
  EXPECT_THROW_WITH(validate(missing_program), "2 programs for 3 workers");
  Schedule synchronous = one_f_one_b_schedule(2, 4);
  synchronous.replicas = {2, 1};
  synchronous.programs.insert(synchronous.programs.begin(), synchronous.programs[0]);
  EXPECT_THROW_WITH(validate(synchronous), "only the asynchronous schedule");
  EXPECT_THROW_WITH(pipedream_schedule(2, 6, 1, WeightPolicy::Stash, {4, 1}), "multiple of 4");
  EXPECT_THROW_WITH(pipedream_schedule(2, 6, 1, WeightPolicy::Stash, {1}), "1 replica counts for 2 stages");
  EXPECT_THROW_WITH(pipedream_schedule(2, 6, 1, WeightPolicy::Stash, {0, 1}), "at least 1");
}

// Every way to cut the layers into contiguous stages and share the workers among them
// (each stage at least one), scored as section 3.1 scores a pipeline: its slowest stage or
// boundary.
double best_by_brute_force(const std::vector<LayerProfile>& layers, const PlannerOptions& options) {
  const int n = static_cast<int>(layers.size());
  const double infinity = std::numeric_limits<double>::infinity();
  const int most = options.most_replicas > 0 ? options.most_replicas : options.workers;
  std::function<double(int, int)> best_from = [&](int first, int workers_left) {
    if (first == n) return workers_left == 0 ? 0.0 : infinity;
    double best = infinity;
    for (int end = first + 1; end <= n; ++end) {
      if (options.memory_per_worker > 0 &&
          stage_memory_bytes(layers, first, end - first, options.workers) > options.memory_per_worker)
        continue;
      for (int replicas = 1; replicas <= std::min(workers_left, most); ++replicas) {
        double worst = std::max(stage_seconds(layers, first, end - first, replicas, options.link), best_from(end, workers_left - replicas));
        if (first > 0) worst = std::max(worst, 2 * boundary_seconds(layers, first - 1, options.link));
        best = std::min(best, worst);
      }
    }
    return best;
  };
  return best_from(0, options.workers);
}

TEST(Planner, EqualsBruteForceOnSmallRandomInstances) {
  std::mt19937 random(5);
  std::uniform_real_distribution<double> seconds(0.1, 2.0);
  std::uniform_int_distribution<int64_t> bytes(1, 4000);
  int compared = 0, replicated = 0, infeasible = 0;
  for (int instance = 0; instance < 400; ++instance) {
    std::vector<LayerProfile> layers(1 + instance % 6);
    for (LayerProfile& l : layers)
      l = {.forward_seconds = seconds(random), .backward_seconds = seconds(random), .output_bytes = bytes(random),
           .parameter_bytes = bytes(random)};
    PlannerOptions options{1 + (instance / 6) % 5, {std::uniform_real_distribution<double>(500, 20000)(random), 0.01 * (instance % 3)}};
    if (instance % 4 == 0) options.memory_per_worker = 12000 + bytes(random) * 8;
    if (instance % 7 == 0) options.most_replicas = 1;
    const double brute_force = best_by_brute_force(layers, options);
    if (brute_force == std::numeric_limits<double>::infinity()) {
      EXPECT_THROW_WITH(plan_pipeline(layers, options), "no way to place");
      ++infeasible;
      continue;
    }
    const PipelinePlan plan = plan_pipeline(layers, options);
    EXPECT_NEAR(plan.seconds_per_mini_batch, brute_force, 1e-12 * brute_force) << "instance " << instance;
    // The plan is what it claims: all workers and layers used, its time its slowest part.
    int workers = 0, covered = 0;
    double slowest = 0;
    for (size_t s = 0; s < plan.stages.size(); ++s) {
      const PlannedStage& stage = plan.stages[s];
      EXPECT_EQ(stage.first_layer, covered);
      covered += stage.layers;
      workers += stage.replicas;
      slowest = std::max(slowest, stage_seconds(layers, stage.first_layer, stage.layers, stage.replicas, options.link));
      if (s > 0) slowest = std::max(slowest, 2 * boundary_seconds(layers, stage.first_layer - 1, options.link));
    }
    EXPECT_EQ(covered, static_cast<int>(layers.size()));
    EXPECT_EQ(workers, options.workers);
    EXPECT_DOUBLE_EQ(slowest, plan.seconds_per_mini_batch);
    EXPECT_FALSE(plan.bottleneck.empty());
    replicated += plan.replicated();
    ++compared;
  }
  EXPECT_GT(compared, 300);
  EXPECT_GT(replicated, 20);  // the instances exercise replication too
  EXPECT_GT(infeasible, 0);   // and the memory limit
}

TEST(Planner, ReplicatesWhenWeightsAreCheapToSyncAndPipelinesWhenTheyAreNot) {
  // Four equal layers of 1 s each, small activations.
  std::vector<LayerProfile> layers(4, {.forward_seconds = 0.4, .backward_seconds = 0.6, .output_bytes = 1000});
  for (LayerProfile& l : layers) l.parameter_bytes = 1000;
  PlannerOptions cheap_sync{4, {1e9, 0}};  // syncing 4 KB takes microseconds: pure data parallelism
  const PipelinePlan data_parallel = plan_pipeline(layers, cheap_sync);
  EXPECT_EQ(data_parallel.replicas(), std::vector<int>{4});
  EXPECT_NEAR(data_parallel.seconds_per_mini_batch, 1.0, 1e-3);  // 4 s of work on 4 replicas
  for (LayerProfile& l : layers) l.parameter_bytes = 1'000'000'000;  // syncing now takes seconds
  const PipelinePlan pipelined = plan_pipeline(layers, cheap_sync);
  EXPECT_EQ(pipelined.balance(), (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(pipelined.replicas(), (std::vector<int>{1, 1, 1, 1}));
  EXPECT_NE(pipelined.bottleneck.find("compute"), std::string::npos) << pipelined.bottleneck;
}


// PyTorch's schedule files: every generated synchronous schedule, written and read back, is the
// same schedule (the file holds the compute; the messages and the step come back the same).
TEST(ScheduleFile, EveryGeneratedScheduleRoundTrips) {
  for (int k : {2, 3, 4})
    for (int m : {k, 2 * k, 8}) {
      std::vector<Schedule> schedules;
      for (const char* name : {"gpipe", "1f1b", "zb-h1", "zb-h2", "zb-v", "v-half", "v-min"})
        schedules.push_back(make_schedule(name, k, m));
      if (m >= 2 * k) schedules.push_back(make_schedule("dualpipev", k, m));
      if (m % k == 0) schedules.push_back(make_schedule("interleaved", k, m, 1, 2));
      for (const Schedule& s : schedules) {
        const std::string text = schedule_to_csv(s);
        const Schedule back = schedule_from_csv(text, s.name);
        const std::string what = s.name + " K=" + std::to_string(k) + " M=" + std::to_string(m) + ":\n" + text;
        EXPECT_EQ(back.stages, s.stages) << what;
        EXPECT_EQ(back.micro_batches, s.micro_batches) << what;
        EXPECT_EQ(back.virtual_stages, s.virtual_stages) << what;
        EXPECT_EQ(back.placement, s.placement) << what;
        EXPECT_EQ(back.programs, s.programs) << what;
      }
    }
  EXPECT_EQ(schedule_to_csv(make_schedule("1f1b", 2, 2)), "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  EXPECT_THROW_WITH(schedule_to_csv(make_schedule("gpipe", 2, 2, 2)), "token slices");
}

// The V placement: rank r holds pieces r and 2K - 1 - r; messages go down the stages, turn on
// the last one (a message to itself) and come back up.
TEST(ScheduleFile, AVShapedFileIsPlacedInAV) {
  const Schedule s = schedule_from_csv("0F0,3F0,3B0,0B0\n1F0,2F0,2B0,1B0\n", "v");
  EXPECT_EQ(s.placement, Placement::V);
  EXPECT_EQ(s.piece_of(0, 1), 3);
  EXPECT_EQ(s.piece_of(1, 1), 2);
  EXPECT_EQ(s.stage_of_piece(3), 0);
  EXPECT_EQ(s.neighbour(1, {Op::SendActivation, 0, -1, 0, 0}, true).worker, 1);  // piece 1 -> 2, both on rank 1
  EXPECT_EQ(s.neighbour(0, {Op::ReceiveActivation, 0, -1, 0, 1}, false).worker, 1);  // piece 3 <- 2
  // F, B = 1 each: rank 1's two forwards wait for rank 0's first, rank 0's backwards for rank 1's.
  EXPECT_DOUBLE_EQ(simulate(s, CostModel::uniform(2, 1, 1)).makespan, 8);
}

TEST(ScheduleFile, BrokenFilesAreRefusedWithRankColumnAndReason) {
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0X0\n", "f"), "rank 0, column 2", "unknown type X");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,F0\n", "f"), "rank 0, column 2", "is not an action");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0SEND_F0,0B0\n", "f"), "column 2", "compute-only");
  EXPECT_THROW_WITH(schedule_from_csv("(0F0;1F0)OVERLAP_F_B\n", "f"), "rank 0, column 1", "not a forward (F) and a backward");
  EXPECT_THROW_WITH(schedule_from_csv("0F0;1B0)OVERLAP_F_B\n", "f"), "not an overlapped pair");
  // A pair whose backward's gradient needs the pair's own forward on another rank first: the
  // backward of micro-batch 0 on stage 1 waits for nothing here, so the file is fine, and
  // read back it is a forward marked overlapped followed by its backward.
  const Schedule pair = schedule_from_csv("0F0,0F1,0B0,0B1\n1F0,(1F1;1B0)OVERLAP_F_B,1B1\n", "f");
  EXPECT_TRUE(std::any_of(pair.programs[1].begin(), pair.programs[1].end(), [](const Instruction& i) { return i.overlapped; }));
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0B0\n1F0,0F1,1B0,0B1\n", "f"), "rank 1, column 2", "stage 0 is on rank 0 too");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0F1,0B1,0B0\n1B0,1F0,1F1,1B1\n", "f"), "rank 1, column 1", "1B0",
                    "comes before the forward");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0I0,0W0\n1F0,1W0,1I0\n", "f"), "rank 1, column 2", "W uses what I leaves");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0B0\n1F0,1B0\n2F0,2B0\n0F1,4F0\n", "f"), "stage 0 is on rank 0 too");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,1F0,1B0,0B0\n2F0,3F0,3B0,2B0\n", "f"), "rank 0: 0 1", "looped", "in a V");
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0F1,0B0\n1F0,1F1,1B0,1B1\n", "f"), "stage 0", "backward", "micro-batch 1");
  // The messages cross: rank 0 waits for micro-batch 1's gradient, rank 1 sends micro-batch 0's first.
  EXPECT_THROW_WITH(schedule_from_csv("0F0,0F1,0B1,0B0\n1F0,1F1,1B0,1B1\n", "f"), "different orders");
  EXPECT_THROW_WITH(schedule_from_csv("\n", "f"), "no rows");
}
}  // namespace
}  // namespace minipipe::pipeline

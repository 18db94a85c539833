// Traces read back, where a stage's time went, and predictions costed from a trace: checked
// on hand-made timelines and on simulated ones whose costs are known.
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>
#include <string>

#include "nn/json_reader.h"
#include "pipeline/charts.h"
#include "pipeline/pipedream.h"
#include "pipeline/prediction.h"
#include "pipeline/schedule.h"
#include "pipeline/trace.h"
#include "test_helpers.h"

namespace minipipe::pipeline {
namespace {

TEST(JsonReader, ReadsFractionsAndLiteralsOnlyWhenAskedTo) {
  EXPECT_THROW(nn::parse_json("[1.5]"), nn::JsonError);  // a safetensors header holds whole numbers
  EXPECT_THROW(nn::parse_json("[true]"), nn::JsonError);
  EXPECT_THROW(nn::parse_json("[null]"), nn::JsonError);
  const nn::JsonValue v = nn::parse_json(R"([1.5e3, -0.25, 7, true, false, null, 123456789012345678901234])", true);
  ASSERT_EQ(v.array.size(), 7u);
  EXPECT_EQ(v.array[0].real, 1500.0);
  EXPECT_EQ(v.array[1].real, -0.25);
  EXPECT_EQ(v.array[2].number, 7);
  EXPECT_EQ(v.array[2].real, 7.0);
  EXPECT_TRUE(v.array[3].boolean);
  EXPECT_EQ(v.array[4].kind, nn::JsonValue::Kind::Boolean);
  EXPECT_FALSE(v.array[4].boolean);
  EXPECT_EQ(v.array[5].kind, nn::JsonValue::Kind::Null);
  EXPECT_DOUBLE_EQ(v.array[6].real, 1.23456789012345678901234e23);
  for (const char* bad : {"[1.]", "[1e]", "[.5]", "[tru]", "[nul]", "[1.5.2]"})
    EXPECT_THROW(nn::parse_json(bad, true), nn::JsonError) << bad;
}

std::string temporary(const std::string& name) { return ::testing::TempDir() + name; }

TEST(Trace, ReadsBackWhatItWrote) {
  const Schedule schedule = make_schedule("1f1b", 3, 4, 2);  // token slices: the slice survives too
  std::vector<TraceEvent> events = to_trace(simulate(schedule, CostModel::uniform(3, 1.25, 2.5)));
  for (TraceEvent& e : events) e.start_us += 12345678.0, e.end_us += 12345678.0, e.bytes = 1000 + e.worker;
  write_chrome_trace(temporary("trace.json"), events);
  const std::vector<TraceEvent> read = read_chrome_trace(temporary("trace.json"));
  ASSERT_EQ(read.size(), events.size());
  for (size_t i = 0; i < read.size(); ++i) {
    EXPECT_EQ(read[i].worker, events[i].worker);
    EXPECT_EQ(read[i].instruction.op, events[i].instruction.op);
    EXPECT_EQ(read[i].instruction.micro_batch, events[i].instruction.micro_batch);
    EXPECT_EQ(read[i].instruction.slice, events[i].instruction.slice);
    EXPECT_NEAR(read[i].start_us, events[i].start_us, 1e-3);
    EXPECT_NEAR(read[i].end_us, events[i].end_us, 2e-3);
    EXPECT_EQ(read[i].bytes, events[i].bytes);
  }
}

TEST(Trace, RefusesFilesThatAreNotTraces) {
  const std::string path = temporary("not_a_trace.json");
  for (const char* text : {"", "[]", R"({"traceEvents":[]})", R"({"traceEvents":[{"cat":"Jump"}]})",
                           R"({"traceEvents":[{"name":"F","cat":"Forward","tid":0,"ts":1,"dur":-1,"args":{"micro_batch":0,"slice":0,"bytes":0}}]})"}) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(text, f);
    std::fclose(f);
    try {
      read_chrome_trace(path);
      ADD_FAILURE() << "read: " << text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

// Two stages, one micro-batch, worked out by hand.
TEST(Trace, WhereTimeWentAddsUpToTheStep) {
  auto event = [](int worker, Op op, double start, double end) { return TraceEvent{worker, Instruction{op, 0}, start, end, 0}; };
  const std::vector<TraceEvent> events{
      event(0, Op::Forward, 0, 1),           event(0, Op::SendActivation, 1, 1.5), event(0, Op::ReceiveGradient, 1.5, 4),
      event(0, Op::Backward, 4, 6),          event(1, Op::ReceiveActivation, 0, 1.5), event(1, Op::Forward, 1.5, 2.5),
      event(1, Op::Backward, 2.5, 3.5),      event(1, Op::SendGradient, 3.5, 4)};
  const std::vector<WorkerTime> t = where_time_went(events, 2);
  EXPECT_EQ(t[0].compute_us, 3);
  EXPECT_EQ(t[0].waiting_gradient_us, 2.5);
  EXPECT_EQ(t[0].waiting_activation_us, 0);
  EXPECT_EQ(t[0].idle_at_flush_us, 0);
  EXPECT_EQ(t[0].other_us, 0.5);  // the send
  EXPECT_EQ(t[1].compute_us, 2);
  EXPECT_EQ(t[1].waiting_activation_us, 1.5);
  EXPECT_EQ(t[1].idle_at_flush_us, 2);  // from its last instruction's end (4) to the step's (6)
  EXPECT_EQ(t[1].other_us, 0.5);
  EXPECT_THROW(where_time_went(events, 1), std::invalid_argument);
}

// A trace simulated with known per-stage costs gives those costs back, and the prediction
// from them is that trace again, instruction by instruction.
// Every label the timeline draws fits its box (at 6.7 pixels a character, font-size 11
// monospace), the axis counts up in round steps in the right unit, and the legend names the
// colours the picture uses, later chunks included.
// Measured memory over time: a step per change of a worker's bytes, at the end of the
// instruction that left them, in MiB and ms from the step's first instruction.
TEST(Trace, MemoryOverTimeStepsWhereTheBytesChange) {
  auto event = [](int worker, Op op, double start, double end, int64_t bytes) {
    return TraceEvent{worker, Instruction{op, 0}, start, end, bytes};
  };
  const std::vector<TraceEvent> events{event(1, Op::Forward, 1005, 1015, 2 << 20), event(0, Op::Forward, 1000, 1010, 1 << 20),
                                       event(0, Op::Backward, 1010, 1020, 3 << 20),
                                       event(1, Op::Backward, 1015, 1030, 2 << 20)};
  const std::vector<Staircase> series = memory_over_time(events, 2);
  ASSERT_EQ(series.size(), 2u);
  ASSERT_EQ(series[0].size(), 2u);
  EXPECT_DOUBLE_EQ(series[0][0].time, 0.010);
  EXPECT_DOUBLE_EQ(series[0][0].value, 1.0);
  EXPECT_DOUBLE_EQ(series[0][1].time, 0.020);
  EXPECT_DOUBLE_EQ(series[0][1].value, 3.0);
  ASSERT_EQ(series[1].size(), 1u);  // the unchanged bytes add no step
  EXPECT_DOUBLE_EQ(series[1][0].time, 0.015);
  EXPECT_DOUBLE_EQ(series[1][0].value, 2.0);
  const std::string svg = staircase_svg(series, {"stage 0", "stage 1"}, 0.030, "measured", "MiB held", "time (ms)");
  EXPECT_NE(svg.find(">time (ms)</text>"), std::string::npos);
  EXPECT_NE(svg.find(">3</text>"), std::string::npos);  // the top grid line at the largest value
}

TEST(Trace, TimelineLabelsFitTheirBoxesUnderATimeAxisAndALegend) {
  const std::regex box(R"re(<rect x="([0-9.e+-]+)" y="[^"]*" width="([0-9.e+-]+)"[^>]*/>\n<text x="([0-9.e+-]+)"[^>]*>([^<]*)</text>)re");
  const auto labels_that_fit = [&](const std::string& picture) {  // counts them; fails on one that does not fit
    int labels = 0;
    for (auto it = std::sregex_iterator(picture.begin(), picture.end(), box); it != std::sregex_iterator(); ++it) {
      const double x = std::stod((*it)[1]), width = std::stod((*it)[2]), text_x = std::stod((*it)[3]);
      const std::string label = (*it)[4];
      if (text_x != x + 3) continue;  // a legend entry: its text beside the swatch
      ++labels;
      EXPECT_LE(6 + 6.7 * static_cast<double>(label.size()), width) << label;
    }
    return labels;
  };
  const CostModel costs = CostModel::uniform(2, 1000, 2000);  // microseconds: a forward takes 1 ms
  const Schedule interleaved = make_schedule("interleaved", 2, 4, 1, 2);
  const std::string picture = timeline_svg(to_trace(simulate(interleaved, costs)), interleaved.worker_names(), "t");
  EXPECT_GT(labels_that_fit(picture), 0) << picture;
  for (const char* wanted : {">0 ms</text>", ">time (ms)</text>", ">F forward<", ">B backward<", ">darker: later chunks<",
                             ">white: idle (the bubble)<"})
    EXPECT_NE(picture.find(wanted), std::string::npos) << wanted;
  // At M = 20 a forward's box is 16 pixels wide: F7 (20 pixels) would overflow, so no label.
  const Schedule crowded = make_schedule("1f1b", 2, 20);
  const std::string narrow = timeline_svg(to_trace(simulate(crowded, costs)), crowded.worker_names(), "t",
                                          TimeAxis::CostUnits);
  labels_that_fit(narrow);
  EXPECT_EQ(narrow.find(">F7<"), std::string::npos);
  EXPECT_NE(narrow.find(">time (cost units)</text>"), std::string::npos);
  EXPECT_EQ(narrow.find(" ms<"), std::string::npos);
  // PipeDream: each box names the weight version it ran with, which a written trace keeps.
  const Schedule stash = pipedream_schedule(3, 6, 1, WeightPolicy::Stash);
  std::vector<TraceEvent> streamed = to_trace(simulate(stash, CostModel::uniform(3, 1000, 2000)));
  const std::string versions = timeline_svg(streamed, stash.worker_names(), "t");
  EXPECT_GT(labels_that_fit(versions), 0);
  for (const char* wanted : {">F0/v0<", ">B3/v1<", "weight version 2<"})
    EXPECT_NE(versions.find(wanted), std::string::npos) << wanted;
  write_chrome_trace(temporary("versions.json"), streamed);
  const std::vector<TraceEvent> read = read_chrome_trace(temporary("versions.json"));
  ASSERT_EQ(read.size(), streamed.size());
  for (size_t i = 0; i < read.size(); ++i) EXPECT_EQ(read[i].instruction.version, streamed[i].instruction.version);
}

TEST(Prediction, RecoversTheCostsOfASimulatedTraceAndPredictsItExactly) {
  for (const std::string name : {"gpipe", "1f1b", "zb-h1"}) {
    const Schedule schedule = make_schedule(name, 3, 6);
    CostModel costs;
    costs.forward = {10, 20, 30};
    costs.backward = {20, 40, 60};
    costs.backward_weight = {5, 10, 15};
    const std::vector<TraceEvent> measured = to_trace(simulate(schedule, costs));
    const CostModel recovered = costs_from_trace(measured, schedule);
    EXPECT_EQ(recovered.forward, costs.forward) << name;
    EXPECT_EQ(recovered.backward, costs.backward) << name;
    if (name == "zb-h1") {
      EXPECT_EQ(recovered.backward_weight, costs.backward_weight);
    }
    const std::vector<InstructionTimes> times = match_instructions(measured, to_trace(simulate(schedule, recovered)));
    ASSERT_FALSE(times.empty());
    for (const InstructionTimes& t : times) {
      EXPECT_EQ(t.predicted_start_us, t.measured_start_us) << name;
      EXPECT_EQ(t.predicted_end_us, t.measured_end_us) << name;
    }
  }
}

TEST(Prediction, RefusesATraceOfAnotherSchedule) {
  const std::vector<TraceEvent> gpipe = to_trace(simulate(make_schedule("gpipe", 2, 4), CostModel::uniform(2, 1, 2)));
  EXPECT_THROW(costs_from_trace(gpipe, make_schedule("gpipe", 1, 4)), std::invalid_argument);  // worker 1 unknown
  const Schedule more = make_schedule("gpipe", 2, 8);
  const std::vector<TraceEvent> eight = to_trace(simulate(more, CostModel::uniform(2, 1, 2)));
  EXPECT_THROW(match_instructions(eight, gpipe), std::invalid_argument);  // micro-batches 4..7 not simulated
  EXPECT_THROW(match_instructions(gpipe, eight), std::invalid_argument);  // simulated, never measured
}

}  // namespace
}  // namespace minipipe::pipeline

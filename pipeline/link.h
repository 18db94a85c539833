#pragma once
// The link between two workers: every message takes `latency_seconds`, plus its bytes at
// `bytes_per_second` (0: no limit). PipeDream's planner estimates communication with one
// (section 3.1), a running pipeline can be slowed by one (LinkChannel, channel.h) to show
// communication's share of a step, and the simulator's per-message cost is one message's.
#include <cstdint>

namespace minipipe::pipeline {

struct LinkModel {
  double bytes_per_second = 0;
  double latency_seconds = 0;
  bool slows() const { return bytes_per_second > 0 || latency_seconds > 0; }
  double transfer_seconds(double bytes) const { return bytes_per_second > 0 ? bytes / bytes_per_second : 0.0; }
  double message_seconds(double bytes) const { return latency_seconds + transfer_seconds(bytes); }
};

}  // namespace minipipe::pipeline

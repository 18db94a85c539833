#include "kernels/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace minipipe::kernels {

namespace {

std::atomic<bool> enabled{false};
thread_local const char* current_phase = "forward";

// One thread's tallies, keyed by the (phase, kernel) names' addresses: string literals, so
// comparing pointers is enough and costs nothing.
struct Tally {
  std::mutex mutex;  // the owner adds, a reader adds up; rarely both at once
  std::map<std::pair<const char*, const char*>, std::pair<int64_t, int64_t>> calls_and_ns;
};

struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<Tally>> tallies;  // every thread's that ever timed a kernel
};

Registry& registry() {
  static Registry r;
  return r;
}

Tally& this_thread_tally() {
  thread_local std::shared_ptr<Tally> tally = [] {
    auto t = std::make_shared<Tally>();
    std::lock_guard lock(registry().mutex);
    registry().tallies.push_back(t);
    return t;
  }();
  return *tally;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void set_profiling(bool on) { enabled.store(on, std::memory_order_relaxed); }
bool profiling() { return enabled.load(std::memory_order_relaxed); }

std::vector<KernelTime> kernel_profile() {
  std::map<std::pair<std::string, std::string>, KernelTime> merged;
  std::lock_guard lock(registry().mutex);
  for (const auto& tally : registry().tallies) {
    std::lock_guard tally_lock(tally->mutex);
    for (const auto& [key, value] : tally->calls_and_ns) {
      KernelTime& t = merged[{key.first, key.second}];
      t.phase = key.first, t.kernel = key.second;
      t.calls += value.first;
      t.seconds += static_cast<double>(value.second) * 1e-9;
    }
  }
  std::vector<KernelTime> out;
  for (auto& [key, t] : merged) out.push_back(std::move(t));
  std::sort(out.begin(), out.end(), [](const KernelTime& a, const KernelTime& b) { return a.seconds > b.seconds; });
  return out;
}

void reset_kernel_profile() {
  std::lock_guard lock(registry().mutex);
  for (const auto& tally : registry().tallies) {
    std::lock_guard tally_lock(tally->mutex);
    tally->calls_and_ns.clear();
  }
}

ProfilePhase::ProfilePhase(const char* phase) : previous_(current_phase) { current_phase = phase; }
ProfilePhase::~ProfilePhase() { current_phase = previous_; }

KernelTimer::KernelTimer(const char* kernel) : kernel_(kernel) {
  if (profiling()) start_ns_ = now_ns();
}

KernelTimer::~KernelTimer() {
  if (start_ns_ < 0) return;
  const int64_t took = now_ns() - start_ns_;
  Tally& tally = this_thread_tally();
  std::lock_guard lock(tally.mutex);
  auto& [calls, ns] = tally.calls_and_ns[{current_phase, kernel_}];
  ++calls, ns += took;
}

}  // namespace minipipe::kernels

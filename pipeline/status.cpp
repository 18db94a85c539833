#include "pipeline/status.h"

#include <atomic>

namespace minipipe::pipeline {

namespace {
std::atomic<uint64_t> requests{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "the signal handler may only touch a lock-free atomic");
extern "C" void on_status_signal(int) { requests.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

void install_status_signal(int signal) {
  struct sigaction action {};
  action.sa_handler = on_status_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls in other threads go on after the handler
  sigaction(signal, &action, nullptr);
}

void request_status() { requests.fetch_add(1, std::memory_order_relaxed); }

uint64_t status_requests() { return requests.load(std::memory_order_relaxed); }

}  // namespace minipipe::pipeline

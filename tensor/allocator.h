#pragma once
// Every device has an allocator that counts current and peak bytes (DESIGN.md decision 3).
// Pipeline memory figures come from these counters, so they work on CPU too.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/device.h"

namespace minipipe {

struct MemoryStats {
  int64_t current_bytes = 0;     // bytes held by live tensors now
  int64_t peak_bytes = 0;        // the most current_bytes has been since the last reset
  int64_t allocation_count = 0;  // number of allocate() calls, ever
  int64_t reserved_bytes = 0;    // bytes taken from the system: live tensors' blocks and the cache
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* pointer, std::size_t bytes) = 0;
  // The calling thread's stream takes over a block that another thread's stream wrote and
  // has finished with (see tensor/cuda_allocator.cpp); nothing to do where work is not queued.
  virtual void hand_over_to_current_stream(void* /*pointer*/) {}

  MemoryStats stats() const;
  void reset_peak();  // peak := current

 protected:
  void count_allocation(std::size_t bytes);
  void count_deallocation(std::size_t bytes);
  void count_reserved(int64_t bytes);  // + after a block is taken from the system, - after it is returned

 private:
  std::atomic<int64_t> current_{0}, peak_{0}, count_{0}, reserved_{0};
};

// The allocator of `device`. Throws for a device this build cannot serve.
Allocator& allocator_for(Device device);
// Lets a backend (CUDA) install the allocator of one of its devices.
void register_allocator(Device device, Allocator* allocator);

MemoryStats memory_stats(Device device);

// Memory charged to whoever allocated it: a pipeline stage thread installs a tracker, and
// every tensor it allocates is counted there (and uncounted when freed, on any thread), so
// per-stage peaks can be measured even when all stages share one device.
struct MemoryTracker {
  std::atomic<int64_t> current_bytes{0}, peak_bytes{0};
  void add(int64_t bytes);
  void reset_peak() { peak_bytes.store(current_bytes.load()); }
};
// The tracker of this thread (null when none is installed). Storage keeps a reference to
// the tracker it charged, so a tensor may outlive the pipeline that allocated it.
const std::shared_ptr<MemoryTracker>& current_memory_tracker();
class MemoryTrackerScope {
 public:
  explicit MemoryTrackerScope(std::shared_ptr<MemoryTracker> tracker);
  ~MemoryTrackerScope();
  MemoryTrackerScope(const MemoryTrackerScope&) = delete;
  MemoryTrackerScope& operator=(const MemoryTrackerScope&) = delete;

 private:
  std::shared_ptr<MemoryTracker> previous_;
};
void reset_peak_memory(Device device);

namespace detail {
// The block size the caching allocators keep for a request: 64-byte steps up to 4 KiB, then
// four classes per power of two (at most 25% slack).
std::size_t allocation_size_class(std::size_t bytes);
}  // namespace detail
// Returns the blocks an allocator keeps for reuse to the system.
void empty_cache(Device device);

}  // namespace minipipe

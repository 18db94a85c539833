#pragma once
// Every device has an allocator that counts current and peak bytes (DESIGN.md decision 3).
// Pipeline memory figures come from these counters, so they work on CPU too.
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "tensor/device.h"

namespace minipipe {

struct MemoryStats {
  int64_t current_bytes = 0;     // bytes held by live tensors now
  int64_t peak_bytes = 0;        // the most current_bytes has been since the last reset
  int64_t allocation_count = 0;  // number of allocate() calls, ever
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* pointer, std::size_t bytes) = 0;

  MemoryStats stats() const;
  void reset_peak();  // peak := current

 protected:
  void count_allocation(std::size_t bytes);
  void count_deallocation(std::size_t bytes);

 private:
  std::atomic<int64_t> current_{0}, peak_{0}, count_{0};
};

// The allocator of `device`. Throws for a device this build cannot serve.
Allocator& allocator_for(Device device);
// Lets a backend (CUDA) install the allocator of one of its devices.
void register_allocator(Device device, Allocator* allocator);

MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);
// Returns the blocks an allocator keeps for reuse to the system.
void empty_cache(Device device);

}  // namespace minipipe

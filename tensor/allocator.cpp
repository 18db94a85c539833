#include "tensor/allocator.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace minipipe {

MemoryStats Allocator::stats() const {
  return {current_.load(), peak_.load(), count_.load()};
}

void Allocator::reset_peak() { peak_.store(current_.load()); }

void Allocator::count_allocation(std::size_t bytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  count_.fetch_add(1);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

void Allocator::count_deallocation(std::size_t bytes) {
  current_.fetch_sub(static_cast<int64_t>(bytes));
}

namespace {

// 64-byte alignment: a cache line, and enough for any SIMD load Eigen issues.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    const std::size_t rounded = (bytes + 63) / 64 * 64;
    void* pointer = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!pointer)
      throw std::bad_alloc();
    count_allocation(bytes);
    return pointer;
  }
  void deallocate(void* pointer, std::size_t bytes) override {
    std::free(pointer);
    count_deallocation(bytes);
  }
};

struct Registry {
  std::mutex mutex;
  std::vector<Allocator*> cuda;  // index = GPU ordinal
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    static CpuAllocator cpu;
    return cpu;
  }
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (device.index < 0 || static_cast<size_t>(device.index) >= r.cuda.size() ||
      !r.cuda[device.index])
    throw std::runtime_error("device " + device.str() +
                             " is not available: this build of minipipe has no CUDA backend "
                             "for it (rebuild with -Dcuda=enabled on a machine with a GPU), "
                             "or use device 'cpu'");
  return *r.cuda[device.index];
}

void register_allocator(Device device, Allocator* allocator) {
  if (device.is_cpu()) throw std::invalid_argument("the CPU allocator is built in");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (static_cast<size_t>(device.index) >= r.cuda.size()) r.cuda.resize(device.index + 1);
  r.cuda[device.index] = allocator;
}

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }

}  // namespace minipipe

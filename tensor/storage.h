#pragma once
// A block of device memory owned by one allocator; tensors share it through shared_ptr.
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <utility>

#include "tensor/allocator.h"
#include "tensor/device.h"

namespace minipipe {

class Storage {
 public:
  Storage(std::size_t bytes, Device device)
      : allocator_(&allocator_for(device)), data_(allocator_->allocate(bytes)),
        bytes_(bytes), device_(device), tracker_(current_memory_tracker()) {
    if (tracker_) tracker_->add(static_cast<int64_t>(bytes_));
  }
  ~Storage() {
    if (tracker_) tracker_->add(-static_cast<int64_t>(bytes_));
    allocator_->deallocate(data_, bytes_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // Exchanges the memory of two storages of the same size on the same device, so that every
  // tensor viewing one sees the other's values, without a copy (PipeDream's weight stash
  // swaps a stashed version into the parameters). Each keeps its memory tracker: the bytes
  // charged do not change.
  void swap_memory(Storage& other) {
    if (other.bytes_ != bytes_ || !(other.device_ == device_) || other.allocator_ != allocator_)
      throw std::invalid_argument("Storage::swap_memory: the storages differ in size or device");
    std::swap(data_, other.data_);
  }
  // See Allocator::hand_over_to_current_stream.
  void hand_over_to_current_stream() const { allocator_->hand_over_to_current_stream(data_); }

 private:
  Allocator* allocator_;
  void* data_;
  std::size_t bytes_;
  Device device_;
  std::shared_ptr<MemoryTracker> tracker_;  // charged with these bytes (see MemoryTracker), or null
};

}  // namespace minipipe

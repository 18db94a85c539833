#pragma once
// Devices, streams, events and copies: the thin layer over the CUDA runtime that tensor/ and
// the pipeline use. Every function throws (see check.h) instead of returning an error code.
//
// Streams: each host thread has a current stream, by default CUDA's per-thread default
// stream, so that pipeline stages on their own threads overlap on one GPU without asking.
// StreamGuard makes another stream current for a scope. Kernels and copies go to the
// current stream; copies to host wait for it.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace minipipe::kernels::cuda {

// GPUs visible to this process. 0 when there is no GPU or no driver; then *why_not (if
// given) says which, in the runtime's words.
int device_count(std::string* why_not = nullptr);
// "NVIDIA H100 80GB HBM3, 79 GiB, sm_90" for GPU `index`.
std::string describe_device(int index);
// Throws, naming the devices that exist, unless 0 <= index < device_count().
void check_device(int index);
// Makes `index` the current device of this thread for the scope; restores the old one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

cudaStream_t current_stream();

// A stream of its own on one device (non-blocking with respect to the legacy default stream).
class Stream {
 public:
  explicit Stream(int device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t handle() const { return stream_; }
  int device() const { return device_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t previous_;
};

// A point in a stream's work: another stream can wait for it, the host can wait for it, and
// two events bracket a time interval.
class Event {
 public:
  explicit Event(bool timing = true);  // without timing, a record and a wait cost less
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream);
  void wait_on(cudaStream_t stream) const;  // work queued on `stream` later waits for this event
  void synchronize() const;
  bool done() const;  // whether the work before its latest record has run; the host does not wait
  static float elapsed_ms(const Event& start, const Event& end);

 private:
  cudaEvent_t event_ = nullptr;
};

// Copies on the current stream. To-host copies return once the data is on the host; the
// others are stream-ordered. Peer copies go directly between GPUs where the hardware allows.
// A peer copy is queued on the destination device after this thread's work on the source
// device, and that device's later work (which may reuse the source's memory) waits for it:
// events order the two streams, and the host does not wait.
void copy_host_to_device(void* device_dst, const void* host_src, std::size_t bytes);
void copy_device_to_host(void* host_dst, const void* device_src, std::size_t bytes);
void copy_device_to_device(void* dst, int dst_device, const void* src, int src_device, std::size_t bytes);

// Raw device memory for the caching allocator (tensor/), on `device`; malloc returns null when
// the device is out of memory and throws for any other failure.
void* device_malloc(int device, std::size_t bytes);
void device_free(int device, void* pointer);

}  // namespace minipipe::kernels::cuda

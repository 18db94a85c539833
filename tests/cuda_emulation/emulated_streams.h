#pragma once
// What emulated_device.h (compiled into the kernels) and fake_runtime.cpp (the stand-in CUDA
// runtime) share: queueing work on an emulated stream.
#include <cuda_runtime_api.h>

#include <functional>
#include <vector>

namespace emu {

// A device block that queued work reads or writes, for the hazard check of fake_runtime.cpp.
struct Use {
  const void* pointer;
  bool write;
};

// Queues `work` on `stream`, after checking `uses` against the other streams' pending work;
// `what` names the work in a report.
void enqueue(cudaStream_t stream, const std::vector<Use>& uses, const char* what, std::function<void()> work);

}  // namespace emu

#pragma once
// The caching allocator of each GPU (built with the CUDA backend only). Internal to tensor/:
// users reach it through allocator_for(Device::cuda(i)), memory_stats() and empty_cache().
#include "tensor/allocator.h"

namespace minipipe {

// The allocator of GPU `index`, created on first use; throws for a GPU that does not exist.
Allocator& cuda_caching_allocator(int index);
// Frees the blocks GPU `index` keeps for reuse (cudaFree waits for the device).
void release_cuda_cache(int index);

}  // namespace minipipe

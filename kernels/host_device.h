#pragma once
// MINIPIPE_HOST_DEVICE marks small inline functions that both the CPU kernels and the CUDA
// kernels call (the Philox generator, window arithmetic), so that the two share one definition.
#if defined(__CUDACC__)
#define MINIPIPE_HOST_DEVICE __host__ __device__
#else
#define MINIPIPE_HOST_DEVICE
#endif

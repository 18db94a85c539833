#pragma once
// NCCL for the GPU tensors of a multi-process pipeline (pipeline/process_group.cpp alone
// uses this; built where CUDA, NCCL and MPI are all found). MPI starts the processes and
// carries each message's header (its shape); NCCL moves the bytes from GPU to GPU.
//
// NCCL's unique id, which every rank of a communicator needs, travels over MPI: the first
// rank makes it and broadcasts it. A communicator is made collectively, so every rank makes
// its communicators in the same order (ProcessGroup's constructor).
#include <mpi.h>
#include <nccl.h>

#include <list>
#include <utility>

#include "kernels/cuda/runtime.h"
#include "kernels/dispatch.h"
#include "tensor/tensor.h"

namespace minipipe::pipeline::nccl {

// A communicator over every rank of the MPI communicator `over`, on GPU `device`.
class Communicator {
 public:
  Communicator(MPI_Comm over, int device);
  ~Communicator();  // left alone while an exception unwinds: peers may be gone (the run aborts)
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  ncclComm_t handle() const { return comm_; }
  int device() const { return device_; }
  // On the calling thread's current stream, in place: the sum over the ranks (floats).
  void all_reduce_sum(float* data, size_t count) const;
  // On the calling thread's current stream: `root`'s bytes, on every rank.
  void broadcast(void* data, size_t bytes, int root) const;

 private:
  ncclComm_t comm_ = nullptr;
  int device_ = 0;
};

// One direction of the traffic between two neighbouring stages (the two ranks of `pair`):
// a communicator and a stream of its own. Activations going forward and gradients coming
// back travel on two links, so that under 1F1B a stage that sends an activation while its
// neighbour sends it a gradient never queues one transfer behind the other (NCCL runs a
// communicator's operations in order, and a send waits for its receive).
class PeerLink {
 public:
  PeerLink(MPI_Comm pair, int device);
  ~PeerLink();  // waits for the sends in flight, unless an exception unwinds
  PeerLink(const PeerLink&) = delete;
  PeerLink& operator=(const PeerLink&) = delete;

  // Queues the send of `value` after the calling thread's work so far; the host does not
  // wait. The tensor is kept until the transfer has run.
  void send(const Tensor& value);
  // Queues the receive into a new tensor; `written` marks the transfer, for the caller's
  // stream to wait for before reading (the executor's take_over does).
  Tensor receive(const Shape& shape, DType dtype, kernels::WorkMark* written);

 private:
  void drop_sent();  // the tensors whose transfer has run

  Communicator comm_;
  kernels::cuda::Stream stream_;
  int peer_;
  std::list<std::pair<Tensor, kernels::cuda::Event>> in_flight_;
};

}  // namespace minipipe::pipeline::nccl

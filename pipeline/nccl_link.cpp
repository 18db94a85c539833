#include "pipeline/nccl_link.h"

#include <exception>
#include <stdexcept>
#include <string>
#include <tuple>

#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe::pipeline::nccl {

namespace {

void check(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return;
  throw std::runtime_error(std::string(what) + " failed: " + ncclGetErrorString(result));
}

}  // namespace

Communicator::Communicator(MPI_Comm over, int device) : device_(device) {
  int rank = 0, size = 1;
  MPI_Comm_rank(over, &rank);
  MPI_Comm_size(over, &size);
  ncclUniqueId id{};
  if (rank == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, over) != MPI_SUCCESS)
    throw std::runtime_error("MPI_Bcast of the NCCL unique id failed");
  const kernels::cuda::DeviceGuard on(device);  // NCCL binds the communicator to the current GPU
  check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
}

Communicator::~Communicator() {
  if (!comm_) return;
  if (std::uncaught_exceptions() > 0) {
    ncclCommAbort(comm_);  // returns without waiting for peers
    return;
  }
  // The collectives this (the main) thread queued may not have run yet.
  const kernels::cuda::DeviceGuard on(device_);
  kernels::synchronize(Device::cuda(device_));
  ncclCommDestroy(comm_);
}

void Communicator::all_reduce_sum(float* data, size_t count) const {
  check(ncclAllReduce(data, data, count, ncclFloat, ncclSum, comm_, kernels::cuda::current_stream()), "ncclAllReduce");
}

void Communicator::broadcast(void* data, size_t bytes, int root) const {
  check(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, kernels::cuda::current_stream()), "ncclBroadcast");
}

PeerLink::PeerLink(MPI_Comm pair, int device) : comm_(pair, device), stream_(device) {
  int rank = 0;
  MPI_Comm_rank(pair, &rank);
  peer_ = 1 - rank;
}

PeerLink::~PeerLink() {
  if (std::uncaught_exceptions() > 0) {
    // A peer may never receive what is in flight: the tensors are left to the process, which
    // is about to end (waiting here would hang it).
    new std::list<std::pair<Tensor, kernels::cuda::Event>>(std::move(in_flight_));
    return;
  }
  stream_.synchronize();
}

void PeerLink::send(const Tensor& value) {
  drop_sent();
  const Device device = value.device();
  const kernels::cuda::DeviceGuard on(device.index);
  auto& [sent, done] = in_flight_.emplace_back(std::piecewise_construct, std::forward_as_tuple(value.contiguous()),
                                               std::forward_as_tuple(false));
  // The link's stream starts after the work that wrote the tensor (this thread's, so far).
  const kernels::WorkMark written = kernels::WorkMark::of_queued_work(device);
  const kernels::cuda::StreamGuard on_link(stream_.handle());
  written.make_current_stream_wait();
  check(ncclSend(sent.raw_data(), sent.nbytes(), ncclUint8, peer_, comm_.handle(), stream_.handle()), "ncclSend");
  done.record(stream_.handle());
}

Tensor PeerLink::receive(const Shape& shape, DType dtype, kernels::WorkMark* written) {
  drop_sent();
  const Device device = Device::cuda(comm_.device());
  const kernels::cuda::DeviceGuard on(device.index);
  // Allocated on this thread's stream, which then owns the memory: the link's stream writes
  // it only after that stream's earlier uses of the same memory.
  Tensor value = empty(shape, dtype, device);
  const kernels::WorkMark free_to_write = kernels::WorkMark::of_queued_work(device);
  const kernels::cuda::StreamGuard on_link(stream_.handle());
  free_to_write.make_current_stream_wait();
  check(ncclRecv(value.raw_data(), value.nbytes(), ncclUint8, peer_, comm_.handle(), stream_.handle()), "ncclRecv");
  *written = kernels::WorkMark::of_queued_work(device);
  return value;
}

void PeerLink::drop_sent() {
  while (!in_flight_.empty() && in_flight_.front().second.done()) in_flight_.pop_front();
}

}  // namespace minipipe::pipeline::nccl

#pragma once
// Multi-process pipelines over MPI. `mpirun -np P` with P = K x D starts one process per
// stage of each of D pipeline replicas: rank r runs stage r % K of replica r / K. A process
// holds its stage's layers only (pipeline::Trainer builds them alone); it runs only its
// stage's program, with MPI channels to its neighbours (the executor does not know the
// difference), and the D replicas of a stage average their gradients before the step (data
// parallelism). Otherwise only scalars travel: the loss, the gradient's squared norms.
//
// The processes agree on everything before the first step (check_same_on_every_rank). A
// process whose stage fails prints what failed and calls abort_every_process_if_launched(),
// and mpirun then ends every other process: nothing waits for a message that will not come.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/channel.h"
#include "tensor/tensor.h"

namespace minipipe::pipeline {

// True when this process was started by mpirun (Open MPI, or a PMI launcher such as MPICH's).
bool launched_by_mpirun();
// This process's rank as the launcher tells it before MPI starts (0 without mpirun).
int rank_from_launcher();
// After a failure has been printed: if MPI runs, ends every process of the run (MPI_Abort).
void abort_every_process_if_launched(int code);
// The device this process trains on when the command line names `requested`. Under mpirun,
// `cuda` is the GPU of the rank's place on its host (local rank i takes cuda:i), since NCCL
// needs a GPU of its own for every rank; throws if the host has fewer GPUs than ranks, or
// for cuda:N, which would put every rank on one GPU. Otherwise `requested` itself.
Device device_of_rank(Device requested);

// Bytes this process has sent, by what they carried (the payload: tensors' bytes, and the
// scalars' own; message headers are not counted). Counted from the stages' threads and the
// main thread alike.
struct SentBytes {
  // tied_gradients: a weight two ranks hold (a GPT head on the embedding), its gradient
  // exchanged between the two.
  int64_t activations = 0, gradients = 0, replica_gradients = 0, tied_gradients = 0, scalars = 0;
  SentBytes operator-(const SentBytes& o) const {
    return {activations - o.activations, gradients - o.gradients, replica_gradients - o.replica_gradients,
            tied_gradients - o.tied_gradients, scalars - o.scalars};
  }
  SentBytes operator+(const SentBytes& o) const {
    return {activations + o.activations, gradients + o.gradients, replica_gradients + o.replica_gradients,
            tied_gradients + o.tied_gradients, scalars + o.scalars};
  }
};

class ProcessGroup {
 public:
  // Starts MPI. Throws, on every rank alike, if the build has no MPI or the number of
  // processes is not stages x replicas. With `device` a GPU (device_of_rank), stages send
  // their tensors and replicas reduce their gradients over NCCL, which the build must have.
  ProcessGroup(int stages, int replicas, Device device = Device::cpu());
  ~ProcessGroup();  // ends MPI, unless an exception is on its way out (then it is left to the abort)
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int stages() const { return stages_; }
  int replicas() const { return replicas_; }
  int stage() const { return rank_ % stages_; }
  int replica() const { return rank_ / stages_; }
  int rank_of(int stage, int replica) const { return replica * stages_ + stage; }
  std::string rank_map() const;  // one line per rank: "rank 2: stage 0 of replica 1 on host (cuda:0)"

  // Channels between this rank and the neighbouring stages of its replica. A receive that
  // waits longer than `timeout_seconds` (0: no limit) fails, naming the rank it waited for:
  // a rank that hangs, rather than dies, then ends the run too.
  std::shared_ptr<RemoteStages> remote_stages(double timeout_seconds = 0) const;

  // Throws on every rank if `value` is not the same on all of them, naming `what` and the
  // first rank that differs from rank 0.
  void check_same_on_every_rank(const std::string& what, const std::string& value) const;
  double sum(double value) const;  // over every rank
  std::string broadcast_from_rank_zero(const std::string& text) const;  // rank 0's `text` on every rank
  // `tensor` sent to rank `peer` of the world and the peer's tensor of the same shape
  // received (both ranks call it): a tied weight's gradient. On the CPU; counted as tied.
  Tensor exchange_tied(int peer, const Tensor& tensor) const;
  // The local stage's gradients, averaged over its replicas (in place).
  void average_over_replicas(const std::vector<Tensor>& parameters) const;
  // Every stage's `values` of this rank's replica, concatenated in stage order, on each of its ranks.
  std::vector<double> gather_in_pipeline(const std::vector<double>& values) const;
  // Stage `stage`'s `value` (defined there; ignored elsewhere) on every rank of its replica,
  // on the CPU: a forward's output for evaluation and sampling.
  Tensor broadcast_from_stage(const Tensor& value, int stage) const;
  SentBytes sent_bytes() const;  // since the group started
  // Every rank's `bytes`, on rank 0 in rank order (empty on the others).
  std::vector<std::string> gather_to_rank_zero(const std::string& bytes) const;

  struct Communicators;
  struct Traffic;  // the counters behind sent_bytes()

 private:
  void start_nccl(int device);

  int rank_ = 0, size_ = 1, stages_ = 1, replicas_ = 1;
  Device device_ = Device::cpu();
  std::unique_ptr<Communicators> comms_;
  std::shared_ptr<Traffic> traffic_;
};

}  // namespace minipipe::pipeline

#include "pipeline/process_group.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <list>
#include <stdexcept>
#include <thread>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "minipipe_config.h"
#include "pipeline/data_parallel.h"
#include "tensor/factories.h"

#if MINIPIPE_HAS_MPI
#include <mpi.h>
#endif
#if MINIPIPE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif
#if MINIPIPE_HAS_NCCL
#include <map>

#include "pipeline/nccl_link.h"
#endif

namespace minipipe::pipeline {

struct ProcessGroup::Traffic {
  std::atomic<int64_t> activations{0}, gradients{0}, replica_gradients{0}, tied_gradients{0}, scalars{0};
};

bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

int rank_from_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

namespace {
int local_rank_from_launcher(int* ranks_on_host) {
  *ranks_on_host = 1;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
    if (const char* value = std::getenv(name)) *ranks_on_host = std::atoi(value);
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}
}  // namespace

Device device_of_rank(Device requested) {
  if (requested.is_cpu() || !launched_by_mpirun()) return requested;
  if (requested.index != 0)
    throw std::invalid_argument("under mpirun every rank takes the GPU of its place on its host (local rank i on cuda:i), "
                                "so --device " + requested.str() + " would put every rank on one GPU: write --device cuda");
  int ranks_on_host = 1;
  const int local_rank = local_rank_from_launcher(&ranks_on_host);
  int gpus = 0;
#if MINIPIPE_HAS_CUDA
  gpus = kernels::cuda::device_count();
#endif
  if (ranks_on_host > gpus)
    throw std::invalid_argument(std::to_string(ranks_on_host) + " ranks on this host share " + std::to_string(gpus) +
                                " GPUs, but NCCL needs one GPU per rank: start at most " + std::to_string(gpus) +
                                " ranks per host (mpirun --map-by ppr:" + std::to_string(std::max(gpus, 1)) +
                                ":node), or train on the CPU (--device cpu)");
  return Device::cuda(local_rank);
}

#if !MINIPIPE_HAS_MPI

struct ProcessGroup::Communicators {};

ProcessGroup::ProcessGroup(int, int, Device) {
  throw std::invalid_argument("this minipipe was built without MPI, so it cannot run a pipeline across processes: install "
                              "Open MPI (Debian: libopenmpi-dev openmpi-bin) and build again, or run without mpirun");
}
ProcessGroup::~ProcessGroup() = default;
std::string ProcessGroup::rank_map() const { return ""; }
std::shared_ptr<RemoteStages> ProcessGroup::remote_stages(double) const { return nullptr; }
void ProcessGroup::check_same_on_every_rank(const std::string&, const std::string&) const {}
double ProcessGroup::sum(double value) const { return value; }
void ProcessGroup::average_over_replicas(const std::vector<Tensor>&) const {}
std::vector<double> ProcessGroup::gather_in_pipeline(const std::vector<double>& values) const { return values; }
Tensor ProcessGroup::broadcast_from_stage(const Tensor& value, int) const { return value; }
Tensor ProcessGroup::exchange_tied(int, const Tensor& tensor) const { return tensor; }
std::string ProcessGroup::broadcast_from_rank_zero(const std::string& text) const { return text; }
std::vector<std::string> ProcessGroup::gather_to_rank_zero(const std::string& bytes) const { return {bytes}; }
SentBytes ProcessGroup::sent_bytes() const { return {}; }
void abort_every_process_if_launched(int) {}

#else

#if MINIPIPE_HAS_NCCL
using GpuLink = nccl::PeerLink;
// NCCL's side of a process group on a GPU, made in the same order on every rank.
struct NcclCommunicators {
  std::unique_ptr<nccl::Communicator> stage;  // the stage's replicas: only with replicas
  // Between stage s and s + 1 of this rank's replica: {s, false} carries activations,
  // {s, true} gradients.
  std::map<std::pair<int, bool>, std::shared_ptr<nccl::PeerLink>> links;
};
#else
struct GpuLink {};
struct NcclCommunicators {};
#endif

struct ProcessGroup::Communicators {
  MPI_Comm world = MPI_COMM_NULL;    // the run's own copy of MPI_COMM_WORLD
  MPI_Comm pipeline = MPI_COMM_NULL;  // the stages of this rank's replica, ranked by stage
  MPI_Comm stage = MPI_COMM_NULL;     // the replicas of this rank's stage, ranked by replica
  std::vector<MPI_Comm> pairs;        // NCCL's: stages s and s + 1, where this rank is one of them
  std::unique_ptr<NcclCommunicators> nccl;  // with a GPU device
};

namespace {

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string(what) + " failed: " + std::string(text, length));
}

// A message's header, followed by the tensor's bytes.
struct Header {
  int32_t micro_batch, slice, chunk, dtype, dims;
  int32_t has_value;  // a skip's missing gradient travels as no tensor
  int32_t on_gpu;     // the bytes travel over NCCL, after the header
  int64_t weight_version;
  double deliver_at_us;
  int64_t shape[8];
};

// One direction between two ranks. Sends never wait (MPI_Isend; the buffers live until the
// channel is destroyed or the send completes), as an in-process queue never waits: two
// neighbours may send to each other at once. A receive polls, so that closing the channel
// (another local failure) wakes it.
class MpiChannel : public Channel {
 public:
  // `gpu`: where GPU tensors' bytes go (none: the channel carries CPU tensors only).
  // `sent`: where the bytes of the tensors it sends are counted.
  MpiChannel(MPI_Comm comm, int peer, int tag, double timeout_seconds, std::shared_ptr<GpuLink> gpu,
             std::shared_ptr<std::atomic<int64_t>> sent)
      : comm_(comm), peer_(peer), tag_(tag), timeout_seconds_(timeout_seconds), gpu_(std::move(gpu)), sent_(std::move(sent)) {}
  ~MpiChannel() override {
    // After a failure the peer may never receive what is pending: its buffers are left to
    // the process, which is about to end (waiting here would hang it).
    if (closed_) {
      new std::list<Pending>(std::move(pending_));
      return;
    }
    for (Pending& p : pending_) MPI_Wait(&p.request, MPI_STATUS_IGNORE);
  }

  void send(Message message) override {
    Header header{message.micro_batch, message.slice, message.chunk, 0, 0, message.value.defined(), 0, message.weight_version,
                  message.deliver_at_us, {}};
    Tensor value;
    if (message.value.defined()) {
      header.on_gpu = !message.value.device().is_cpu();
      if (header.on_gpu && !gpu_)
        throw std::invalid_argument("MPI channels carry CPU tensors; this one is on " + message.value.device().str() +
                                    " (run the stages on the CPU, or build with NCCL)");
      value = header.on_gpu ? message.value : message.value.contiguous();
      if (value.dim() > 8) throw std::invalid_argument("MPI channels carry tensors of at most 8 dimensions");
      header.dtype = static_cast<int32_t>(value.dtype());
      header.dims = static_cast<int32_t>(value.dim());
      for (int d = 0; d < value.dim(); ++d) header.shape[d] = value.shape()[d];
    }
    if (value.defined()) *sent_ += value.nbytes();
    const bool bytes_here = value.defined() && !header.on_gpu;
    Pending& p = pending_.emplace_back();
    p.buffer.resize(sizeof header + (bytes_here ? value.nbytes() : 0));
    std::memcpy(p.buffer.data(), &header, sizeof header);
    if (bytes_here) std::memcpy(p.buffer.data() + sizeof header, value.raw_data(), value.nbytes());
    check(MPI_Isend(p.buffer.data(), static_cast<int>(p.buffer.size()), MPI_BYTE, peer_, tag_, comm_, &p.request), "MPI_Isend");
#if MINIPIPE_HAS_NCCL
    if (header.on_gpu) gpu_->send(value);
#endif
    drop_completed();
  }

  Message receive(int expected, int expected_slice, int expected_chunk) override {
    MPI_Message handle;
    MPI_Status status;
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      int arrived = 0;
      check(MPI_Improbe(peer_, tag_, comm_, &arrived, &handle, &status), "MPI_Improbe");
      if (arrived) break;
      if (closed_) throw ChannelClosed();
      if (timeout_seconds_ > 0 && std::chrono::steady_clock::now() - start > std::chrono::duration<double>(timeout_seconds_)) {
        int rank = 0;
        MPI_Group group, world;
        MPI_Comm_group(comm_, &group);
        MPI_Comm_group(MPI_COMM_WORLD, &world);
        MPI_Group_translate_ranks(group, 1, &peer_, world, &rank);
        throw std::runtime_error("waited " + std::to_string(static_cast<int>(timeout_seconds_)) + " s for micro-batch " +
                                 std::to_string(expected) + " from rank " + std::to_string(rank) +
                                 ", which hangs or is slower than that (raise --rank-timeout)");
      }
      if (polls < 200) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    int bytes = 0;
    MPI_Get_count(&status, MPI_BYTE, &bytes);
    std::vector<char> buffer(bytes);
    check(MPI_Mrecv(buffer.data(), bytes, MPI_BYTE, &handle, MPI_STATUS_IGNORE), "MPI_Mrecv");
    Header header;
    std::memcpy(&header, buffer.data(), sizeof header);
    Message message{header.micro_batch, header.slice, header.chunk, Tensor(), kernels::WorkMark(), header.weight_version,
                    header.deliver_at_us};
    const Shape shape(header.shape, header.shape + header.dims);
    if (header.has_value && header.on_gpu) {
#if MINIPIPE_HAS_NCCL
      if (!gpu_) throw std::logic_error("a GPU tensor arrived on a channel without NCCL");
      message.value = gpu_->receive(shape, static_cast<DType>(header.dtype), &message.written);
#else
      throw std::logic_error("a GPU tensor arrived, but this build has no NCCL");
#endif
    } else if (header.has_value) {
      message.value = empty(shape, static_cast<DType>(header.dtype));
      std::memcpy(message.value.raw_data(), buffer.data() + sizeof header, message.value.nbytes());
    }
    check_expected(message, expected, expected_slice, expected_chunk);
    drop_completed();
    return message;
  }

  void close() override { closed_ = true; }

 private:
  struct Pending {
    std::vector<char> buffer;
    MPI_Request request;
  };
  void drop_completed() {
    for (auto it = pending_.begin(); it != pending_.end();) {
      int done = 0;
      MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      it = done ? pending_.erase(it) : std::next(it);
    }
  }

  MPI_Comm comm_;
  int peer_, tag_;
  double timeout_seconds_;
  std::shared_ptr<GpuLink> gpu_;
  std::shared_ptr<std::atomic<int64_t>> sent_;
  std::atomic<bool> closed_{false};
  std::list<Pending> pending_;
};

class MpiRemoteStages : public RemoteStages {
 public:
  MpiRemoteStages(const ProcessGroup& group, MPI_Comm pipeline, double timeout_seconds, const NcclCommunicators* nccl,
                  std::shared_ptr<std::atomic<int64_t>> activations, std::shared_ptr<std::atomic<int64_t>> gradients)
      : group_(group), pipeline_(pipeline), stage_(group.stage()), timeout_seconds_(timeout_seconds), nccl_(nccl),
        activations_(std::move(activations)), gradients_(std::move(gradients)) {}
  int local_stage() const override { return stage_; }
  int replicas() const override { return group_.replicas(); }
  int local_replica() const override { return group_.replica(); }
  void average_replica_gradients(const std::vector<Tensor>& parameters) const override {
    group_.average_over_replicas(parameters);
  }
  std::unique_ptr<Channel> channel(bool gradient, int from, int to) const override {
    std::shared_ptr<GpuLink> gpu;
#if MINIPIPE_HAS_NCCL
    if (nccl_) gpu = nccl_->links.at({std::min(from, to), gradient});
#endif
    // In the replica's communicator a stage's rank is the stage; one tag per direction.
    return std::make_unique<MpiChannel>(pipeline_, from == stage_ ? to : from, gradient ? 2 : 1, timeout_seconds_, gpu,
                                        gradient ? gradients_ : activations_);
  }
  std::unique_ptr<Channel> skip_channel(int route, bool gradient, int from, int to) const override {
    // Tags 3 and up: two per route, after the neighbours' 1 and 2.
    return std::make_unique<MpiChannel>(pipeline_, from == stage_ ? to : from, 3 + 2 * route + (gradient ? 1 : 0),
                                        timeout_seconds_, nullptr, gradient ? gradients_ : activations_);
  }

 private:
  const ProcessGroup& group_;  // outlives the pipeline, which the Trainer destroys first
  MPI_Comm pipeline_;
  int stage_;
  double timeout_seconds_;
  const NcclCommunicators* nccl_;  // null: CPU tensors only
  std::shared_ptr<std::atomic<int64_t>> activations_, gradients_;  // bytes sent
};

}  // namespace

ProcessGroup::ProcessGroup(int stages, int replicas, Device device)
    : stages_(stages), replicas_(replicas), device_(device), comms_(std::make_unique<Communicators>()),
      traffic_(std::make_shared<Traffic>()) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  int provided = 0;
  // One thread per process calls MPI at a time: the stage's thread during a step, the main
  // thread between steps.
  if (!initialised) check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  MPI_Comm_dup(MPI_COMM_WORLD, &comms_->world);
  MPI_Comm_set_errhandler(comms_->world, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comms_->world, &rank_);
  MPI_Comm_size(comms_->world, &size_);
  if (stages < 1 || replicas < 1 || stages * replicas != size_)
    throw std::invalid_argument("mpirun started " + std::to_string(size_) + " processes, but --stages " + std::to_string(stages) +
                                " x --data-parallel " + std::to_string(replicas) + " = " + std::to_string(stages * replicas) +
                                ": start mpirun -np " + std::to_string(stages * replicas) + ", or change --stages or --data-parallel");
  MPI_Comm_split(comms_->world, replica(), stage(), &comms_->pipeline);
  MPI_Comm_split(comms_->world, stage(), replica(), &comms_->stage);
  if (!device.is_cpu()) start_nccl(device.index);
}

// Every rank makes the same communicators in the same order (each is collective): its
// stage's replicas, then for each pair of neighbouring stages in its replica, in stage
// order, the pair's two links. A rank waits in pair s only for ranks that have finished
// pair s - 1, so the order cannot deadlock.
void ProcessGroup::start_nccl(int device) {
#if MINIPIPE_HAS_NCCL
  auto& nccl = comms_->nccl = std::make_unique<NcclCommunicators>();
  if (replicas_ > 1) nccl->stage = std::make_unique<nccl::Communicator>(comms_->stage, device);
  for (int s = 0; s + 1 < stages_; ++s) {
    const bool member = stage() == s || stage() == s + 1;
    MPI_Comm pair = MPI_COMM_NULL;
    MPI_Comm_split(comms_->pipeline, member ? 0 : MPI_UNDEFINED, stage(), &pair);
    if (!member) continue;
    comms_->pairs.push_back(pair);
    for (bool gradient : {false, true}) nccl->links[{s, gradient}] = std::make_shared<nccl::PeerLink>(pair, device);
  }
#else
  (void)device;
  throw std::invalid_argument("stages on a GPU across processes send their tensors over NCCL, which this build does not "
                              "have: build where NCCL is installed (nccl.h and libnccl beside CUDA), or train on the "
                              "CPU (--device cpu)");
#endif
}

ProcessGroup::~ProcessGroup() {
  // Leaving on an exception, the other processes may be waiting for this one: finalising
  // (a collective) would hang, so MPI is left to whoever handles the error (abort).
  if (std::uncaught_exceptions() > 0) return;
  comms_->nccl.reset();
  for (MPI_Comm& pair : comms_->pairs) MPI_Comm_free(&pair);
  for (MPI_Comm* c : {&comms_->stage, &comms_->pipeline, &comms_->world})
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!finalised) MPI_Finalize();
}

std::string ProcessGroup::rank_map() const {
  constexpr int width = MPI_MAX_PROCESSOR_NAME + 16;
  char where[width] = {};
  int length = 0;
  MPI_Get_processor_name(where, &length);
  if (!device_.is_cpu()) std::snprintf(where + length, width - length, " (%s)", device_.str().c_str());
  std::vector<char> all(static_cast<size_t>(size_) * width);
  MPI_Allgather(where, width, MPI_CHAR, all.data(), width, MPI_CHAR, comms_->world);
  std::string out;
  for (int r = 0; r < size_; ++r)
    out += "rank " + std::to_string(r) + ": stage " + std::to_string(r % stages_) + " of replica " + std::to_string(r / stages_) +
           " on " + std::string(all.data() + static_cast<size_t>(r) * width) + "\n";
  return out;
}

std::shared_ptr<RemoteStages> ProcessGroup::remote_stages(double timeout_seconds) const {
  // The channels count into this group's counters (shared pointers aliasing them).
  return std::make_shared<MpiRemoteStages>(*this, comms_->pipeline, timeout_seconds, comms_->nccl.get(),
                                           std::shared_ptr<std::atomic<int64_t>>(traffic_, &traffic_->activations),
                                           std::shared_ptr<std::atomic<int64_t>>(traffic_, &traffic_->gradients));
}

void ProcessGroup::check_same_on_every_rank(const std::string& what, const std::string& value) const {
  const int length = static_cast<int>(value.size());
  std::vector<int> lengths(size_);
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comms_->world);
  std::vector<int> offsets(size_, 0);
  for (int r = 1; r < size_; ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
  std::string all(offsets.back() + lengths.back(), '\0');
  MPI_Allgatherv(value.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, comms_->world);
  for (int r = 1; r < size_; ++r)
    if (all.compare(offsets[r], lengths[r], all, 0, lengths[0]) != 0)
      throw std::invalid_argument("rank " + std::to_string(r) + "'s " + what + " differs from rank 0's ('" +
                                  all.substr(offsets[r], lengths[r]) + "' against '" + all.substr(0, lengths[0]) +
                                  "'): give every rank the same one");
}

std::string ProcessGroup::broadcast_from_rank_zero(const std::string& text) const {
  int64_t length = static_cast<int64_t>(text.size());
  check(MPI_Bcast(&length, 1, MPI_INT64_T, 0, comms_->world), "MPI_Bcast");
  std::string out = rank_ == 0 ? text : std::string(static_cast<size_t>(length), '\0');
  check(MPI_Bcast(out.data(), static_cast<int>(length), MPI_CHAR, 0, comms_->world), "MPI_Bcast");
  return out;
}

SentBytes ProcessGroup::sent_bytes() const {
  return {traffic_->activations, traffic_->gradients, traffic_->replica_gradients, traffic_->tied_gradients,
          traffic_->scalars};
}

double ProcessGroup::sum(double value) const {
  traffic_->scalars += sizeof value;
  double total = 0;
  check(MPI_Allreduce(&value, &total, 1, MPI_DOUBLE, MPI_SUM, comms_->world), "MPI_Allreduce");
  return total;
}

namespace {
// The NCCL communicators that move GPU tensor `t`.
const NcclCommunicators& nccl_of(const ProcessGroup::Communicators& comms, const Tensor& t) {
  if (!comms.nccl)
    throw std::invalid_argument("a tensor on " + t.device().str() + " in a process group made for the CPU: give "
                                "ProcessGroup the GPU (device_of_rank), which starts NCCL");
  return *comms.nccl;
}
}  // namespace

// On the CPU every replica gathers all the replicas' gradients and adds them in replica order,
// as one process's replicas do (data_parallel.h), so the two train bit for bit alike.
// NCCL's all-reduce adds in the order of its ring: the same bits with 2 replicas, whose sum
// does not depend on the order, and float rounding apart with more.
void ProcessGroup::average_over_replicas(const std::vector<Tensor>& parameters) const {
  if (replicas_ == 1) return;
  NoGradGuard no_grad;
  for (const Tensor& p : parameters) {
    Tensor g = p.grad().defined() ? p.grad().contiguous() : zeros_like(p);
    traffic_->replica_gradients += g.nbytes() * (g.device().is_cpu() ? replicas_ - 1 : 1);
    if (!g.device().is_cpu()) {
#if MINIPIPE_HAS_NCCL
      const kernels::cuda::DeviceGuard on(g.device().index);
      nccl_of(*comms_, g).stage->all_reduce_sum(static_cast<float*>(g.raw_data()), static_cast<size_t>(g.numel()));
#else
      nccl_of(*comms_, g);
#endif
      p.set_grad(scale(g, 1.0f / static_cast<float>(replicas_)));
      continue;
    }
    const Tensor all = empty({replicas_, g.numel()}, g.dtype());
    check(MPI_Allgather(g.raw_data(), static_cast<int>(g.numel()), MPI_FLOAT, all.raw_data(), static_cast<int>(g.numel()),
                        MPI_FLOAT, comms_->stage),
          "MPI_Allgather");
    std::vector<Tensor> gradients;
    for (int r = 0; r < replicas_; ++r) gradients.push_back(all.narrow(0, r, 1).reshape(g.shape()));
    p.set_grad(average_in_replica_order(gradients));
  }
}

std::vector<double> ProcessGroup::gather_in_pipeline(const std::vector<double>& values) const {
  const int count = static_cast<int>(values.size());
  traffic_->scalars += static_cast<int64_t>(values.size() * sizeof(double));
  std::vector<int> counts(stages_), offsets(stages_, 0);
  check(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, comms_->pipeline), "MPI_Allgather");
  for (int s = 1; s < stages_; ++s) offsets[s] = offsets[s - 1] + counts[s - 1];
  std::vector<double> all(static_cast<size_t>(offsets.back() + counts.back()));
  check(MPI_Allgatherv(values.data(), count, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
                       comms_->pipeline),
        "MPI_Allgatherv");
  return all;
}

Tensor ProcessGroup::exchange_tied(int peer, const Tensor& tensor) const {
  const Tensor mine = tensor.to(Device::cpu()).contiguous();
  Tensor theirs = empty(mine.shape(), mine.dtype());
  traffic_->tied_gradients += mine.nbytes();
  check(MPI_Sendrecv(mine.raw_data(), static_cast<int>(mine.nbytes()), MPI_BYTE, peer, 3, theirs.raw_data(),
                     static_cast<int>(theirs.nbytes()), MPI_BYTE, peer, 3, comms_->world, MPI_STATUS_IGNORE),
        "MPI_Sendrecv");
  return theirs.to(tensor.device());
}

Tensor ProcessGroup::broadcast_from_stage(const Tensor& value, int root) const {
  Tensor out = stage() == root ? value.to(Device::cpu()).contiguous() : Tensor();
  int64_t header[10] = {};  // dtype, dims, shape
  if (out.defined()) {
    if (out.dim() > 8) throw std::invalid_argument("broadcast_from_stage: at most 8 dimensions");
    header[0] = static_cast<int64_t>(out.dtype());
    header[1] = out.dim();
    for (int d = 0; d < out.dim(); ++d) header[2 + d] = out.shape()[d];
  }
  check(MPI_Bcast(header, 10, MPI_INT64_T, root, comms_->pipeline), "MPI_Bcast");
  if (!out.defined()) out = empty(Shape(header + 2, header + 2 + header[1]), static_cast<DType>(header[0]));
  check(MPI_Bcast(out.raw_data(), static_cast<int>(out.nbytes()), MPI_BYTE, root, comms_->pipeline), "MPI_Bcast");
  return out;
}

std::vector<std::string> ProcessGroup::gather_to_rank_zero(const std::string& bytes) const {
  const int length = static_cast<int>(bytes.size());
  std::vector<int> lengths(size_), offsets(size_, 0);
  check(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, comms_->world), "MPI_Gather");
  for (int r = 1; r < size_; ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
  std::string all(rank_ == 0 ? offsets.back() + lengths.back() : 0, '\0');
  check(MPI_Gatherv(bytes.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0, comms_->world),
        "MPI_Gatherv");
  std::vector<std::string> out;
  if (rank_ == 0)
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(offsets[r], lengths[r]));
  return out;
}

void abort_every_process_if_launched(int code) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (!initialised || finalised) return;
  // A grace before the abort, which kills every rank: when a rank hangs, both its neighbour
  // and ranks further along (which wait on the neighbour) time out at about the same moment,
  // and only the neighbour can name the rank that hangs. Seen with 4 ranks: rank 3 aborted
  // first, blaming rank 2, which was itself waiting on the hung rank 1. The grace lets every
  // rank that failed print its reason first.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  MPI_Abort(MPI_COMM_WORLD, code);
}

#endif

}  // namespace minipipe::pipeline

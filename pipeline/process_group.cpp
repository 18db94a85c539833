#include "pipeline/process_group.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <list>
#include <stdexcept>
#include <thread>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "minipipe_config.h"
#include "tensor/factories.h"

#if MINIPIPE_HAS_MPI
#include <mpi.h>
#endif

namespace minipipe::pipeline {

bool launched_by_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"); }

int rank_from_launcher() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

#if !MINIPIPE_HAS_MPI

struct ProcessGroup::Communicators {};

ProcessGroup::ProcessGroup(int, int) {
  throw std::invalid_argument("this minipipe was built without MPI, so it cannot run a pipeline across processes: install "
                              "Open MPI (Debian: libopenmpi-dev openmpi-bin) and build again, or run without mpirun");
}
ProcessGroup::~ProcessGroup() = default;
std::string ProcessGroup::rank_map() const { return ""; }
std::shared_ptr<RemoteStages> ProcessGroup::remote_stages(double) const { return nullptr; }
void ProcessGroup::check_same_on_every_rank(const std::string&, const std::string&) const {}
double ProcessGroup::sum(double value) const { return value; }
void ProcessGroup::average_over_replicas(const std::vector<Tensor>&) const {}
void ProcessGroup::share_gradients_from_stage(int, const std::vector<Tensor>&) const {}
std::vector<std::string> ProcessGroup::gather_to_rank_zero(const std::string& bytes) const { return {bytes}; }
void abort_every_process_if_launched(int) {}

#else

struct ProcessGroup::Communicators {
  MPI_Comm world = MPI_COMM_NULL;    // the run's own copy of MPI_COMM_WORLD
  MPI_Comm pipeline = MPI_COMM_NULL;  // the stages of this rank's replica, ranked by stage
  MPI_Comm stage = MPI_COMM_NULL;     // the replicas of this rank's stage, ranked by replica
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
  MpiChannel(MPI_Comm comm, int peer, int tag, double timeout_seconds)
      : comm_(comm), peer_(peer), tag_(tag), timeout_seconds_(timeout_seconds) {}
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
    Header header{message.micro_batch, message.slice, message.chunk, 0,  0, message.value.defined(), message.weight_version,
                  message.deliver_at_us, {}};
    Tensor value;
    if (message.value.defined()) {
      if (!message.value.device().is_cpu())
        throw std::invalid_argument("MPI channels carry CPU tensors; this one is on " + message.value.device().str() +
                                    " (run the stages on the CPU)");
      value = message.value.contiguous();
      if (value.dim() > 8) throw std::invalid_argument("MPI channels carry tensors of at most 8 dimensions");
      header.dtype = static_cast<int32_t>(value.dtype());
      header.dims = static_cast<int32_t>(value.dim());
      for (int d = 0; d < value.dim(); ++d) header.shape[d] = value.shape()[d];
    }
    Pending& p = pending_.emplace_back();
    p.buffer.resize(sizeof header + (value.defined() ? value.nbytes() : 0));
    std::memcpy(p.buffer.data(), &header, sizeof header);
    if (value.defined()) std::memcpy(p.buffer.data() + sizeof header, value.raw_data(), value.nbytes());
    check(MPI_Isend(p.buffer.data(), static_cast<int>(p.buffer.size()), MPI_BYTE, peer_, tag_, comm_, &p.request), "MPI_Isend");
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
    if (header.has_value) {
      message.value = empty(Shape(header.shape, header.shape + header.dims), static_cast<DType>(header.dtype));
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
  std::atomic<bool> closed_{false};
  std::list<Pending> pending_;
};

class MpiRemoteStages : public RemoteStages {
 public:
  MpiRemoteStages(MPI_Comm pipeline, int stage, double timeout_seconds)
      : pipeline_(pipeline), stage_(stage), timeout_seconds_(timeout_seconds) {}
  int local_stage() const override { return stage_; }
  std::unique_ptr<Channel> channel(bool gradient, int from, int to) const override {
    // In the replica's communicator a stage's rank is the stage; one tag per direction.
    return std::make_unique<MpiChannel>(pipeline_, from == stage_ ? to : from, gradient ? 2 : 1, timeout_seconds_);
  }

 private:
  MPI_Comm pipeline_;
  int stage_;
  double timeout_seconds_;
};

}  // namespace

ProcessGroup::ProcessGroup(int stages, int replicas) : stages_(stages), replicas_(replicas), comms_(std::make_unique<Communicators>()) {
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
}

ProcessGroup::~ProcessGroup() {
  // Leaving on an exception, the other processes may be waiting for this one: finalising
  // (a collective) would hang, so MPI is left to whoever handles the error (abort).
  if (std::uncaught_exceptions() > 0) return;
  for (MPI_Comm* c : {&comms_->stage, &comms_->pipeline, &comms_->world})
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!finalised) MPI_Finalize();
}

std::string ProcessGroup::rank_map() const {
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(host, &length);
  std::vector<char> hosts(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comms_->world);
  std::string out;
  for (int r = 0; r < size_; ++r)
    out += "rank " + std::to_string(r) + ": stage " + std::to_string(r % stages_) + " of replica " + std::to_string(r / stages_) +
           " on " + std::string(hosts.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME) + "\n";
  return out;
}

std::shared_ptr<RemoteStages> ProcessGroup::remote_stages(double timeout_seconds) const {
  return std::make_shared<MpiRemoteStages>(comms_->pipeline, stage(), timeout_seconds);
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

double ProcessGroup::sum(double value) const {
  double total = 0;
  check(MPI_Allreduce(&value, &total, 1, MPI_DOUBLE, MPI_SUM, comms_->world), "MPI_Allreduce");
  return total;
}

void ProcessGroup::average_over_replicas(const std::vector<Tensor>& parameters) const {
  if (replicas_ == 1) return;
  NoGradGuard no_grad;
  for (const Tensor& p : parameters) {
    Tensor g = p.grad().defined() ? p.grad().contiguous() : zeros_like(p);
    if (!g.device().is_cpu()) throw std::invalid_argument("data-parallel replicas average CPU gradients over MPI");
    check(MPI_Allreduce(MPI_IN_PLACE, g.raw_data(), static_cast<int>(g.numel()), MPI_FLOAT, MPI_SUM, comms_->stage),
          "MPI_Allreduce");
    p.set_grad(scale(g, 1.0f / static_cast<float>(replicas_)));
  }
}

void ProcessGroup::share_gradients_from_stage(int stage, const std::vector<Tensor>& parameters) const {
  NoGradGuard no_grad;
  const bool owner = rank_ == rank_of(stage, 0);
  std::vector<char> present(parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) present[i] = owner && parameters[i].grad().defined();
  check(MPI_Bcast(present.data(), static_cast<int>(present.size()), MPI_CHAR, rank_of(stage, 0), comms_->world), "MPI_Bcast");
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Tensor& p = parameters[i];
    if (!present[i]) {
      p.zero_grad();
      continue;
    }
    Tensor g = owner ? p.grad().contiguous() : empty(p.shape(), p.dtype());
    if (!g.device().is_cpu()) throw std::invalid_argument("sharing gradients over MPI needs CPU tensors");
    check(MPI_Bcast(g.raw_data(), static_cast<int>(g.nbytes()), MPI_BYTE, rank_of(stage, 0), comms_->world), "MPI_Bcast");
    p.set_grad(g);
  }
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
  if (initialised && !finalised) MPI_Abort(MPI_COMM_WORLD, code);
}

#endif

}  // namespace minipipe::pipeline

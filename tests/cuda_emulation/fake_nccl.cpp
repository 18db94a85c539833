// The NCCL calls minipipe makes, for the CUDA emulation build (see run.sh): processes of one
// machine, each with its emulated GPUs, exchange bytes through named pipes (FIFOs) in a
// folder that the unique id names (under $TMPDIR, or /tmp; a run that aborts leaves it behind). An operation is queued on its emulated stream like a
// kernel (with the blocks it reads and writes, for the hazard check) and runs on that
// stream's worker, where a send blocks until its receive reads it, as NCCL's does: a
// missing link, an operation queued on the wrong stream or a receive that never comes shows
// up as a hang or a wrong value in the multi-process GPU test, without a GPU.
#include <fcntl.h>
#include <nccl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "emulated_streams.h"

struct ncclComm {
  std::string folder;
  int rank = 0, size = 1;
  std::map<int, int> to, from;  // peer -> the pipe's file descriptor (opened read-write: opening never blocks)
};

namespace {

std::string pipe_path(const std::string& folder, int from, int to) {
  return folder + "/" + std::to_string(from) + "-" + std::to_string(to);
}

int open_pipe(const std::string& path) {
  if (mkfifo(path.c_str(), 0600) != 0 && errno != EEXIST) return -1;
  return open(path.c_str(), O_RDWR);
}

void write_all(int fd, const char* data, size_t bytes) {
  while (bytes > 0) {
    const ssize_t written = write(fd, data, bytes);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) std::perror("fake NCCL: write"), std::abort();
    data += written, bytes -= static_cast<size_t>(written);
  }
}

void read_all(int fd, char* data, size_t bytes) {
  while (bytes > 0) {
    const ssize_t got = read(fd, data, bytes);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) std::perror("fake NCCL: read"), std::abort();
    data += got, bytes -= static_cast<size_t>(got);
  }
}

size_t type_size(ncclDataType_t type) {
  switch (type) {
    case ncclUint8:
    case ncclInt8: return 1;
    case ncclFloat32: return 4;
    default: return 0;
  }
}

std::vector<emu::Use> uses(const void* read, const void* written, size_t bytes) {
  std::vector<emu::Use> out;
  if (bytes == 0) return out;
  if (read && read != written) out.push_back({read, false});
  if (written) out.push_back({written, true});
  return out;
}

}  // namespace

extern "C" {

const char* ncclGetErrorString(ncclResult_t result) {
  return result == ncclSuccess ? "no error" : "invalid argument or usage (fake NCCL of the CUDA emulation)";
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  unsigned char random[8] = {};
  std::ifstream("/dev/urandom", std::ios::binary).read(reinterpret_cast<char*>(random), sizeof random);
  const char* tmp = std::getenv("TMPDIR");
  std::string folder = std::string(tmp && *tmp ? tmp : "/tmp") + "/minipipe-fake-nccl-";
  for (unsigned char byte : random) folder += "0123456789abcdef"[byte >> 4], folder += "0123456789abcdef"[byte & 15];
  if (folder.size() >= sizeof id->internal) return ncclInvalidArgument;  // a $TMPDIR too long for the id
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, folder.c_str(), folder.size());
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  auto* c = new ncclComm{std::string(id.internal, strnlen(id.internal, sizeof id.internal)), rank, nranks, {}, {}};
  if (mkdir(c->folder.c_str(), 0700) != 0 && errno != EEXIST) return delete c, ncclSystemError;
  for (int peer = 0; peer < nranks; ++peer) {
    if (peer == rank) continue;
    c->to[peer] = open_pipe(pipe_path(c->folder, rank, peer));
    c->from[peer] = open_pipe(pipe_path(c->folder, peer, rank));
    if (c->to[peer] < 0 || c->from[peer] < 0) return delete c, ncclSystemError;
  }
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  for (auto& [peer, fd] : comm->to) close(fd), unlink(pipe_path(comm->folder, comm->rank, peer).c_str());
  for (auto& [peer, fd] : comm->from) close(fd);
  rmdir(comm->folder.c_str());  // the last rank's succeeds
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

ncclResult_t ncclSend(const void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * type_size(type);
  if (!comm->to.count(peer) || type_size(type) == 0) return ncclInvalidArgument;
  const int fd = comm->to.at(peer);
  emu::enqueue(stream, uses(buffer, nullptr, bytes), "ncclSend",
               [=] { write_all(fd, static_cast<const char*>(buffer), bytes); });
  return ncclSuccess;
}

ncclResult_t ncclRecv(void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t stream) {
  const size_t bytes = count * type_size(type);
  if (!comm->from.count(peer) || type_size(type) == 0) return ncclInvalidArgument;
  const int fd = comm->from.at(peer);
  emu::enqueue(stream, uses(nullptr, buffer, bytes), "ncclRecv", [=] { read_all(fd, static_cast<char*>(buffer), bytes); });
  return ncclSuccess;
}

// Every rank sends its floats to every other, then adds all of them up in rank order, so
// every rank gets the same bits.
ncclResult_t ncclAllReduce(const void* send, void* receive, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (type != ncclFloat32 || op != ncclSum) return ncclInvalidArgument;
  const size_t bytes = count * sizeof(float);
  emu::enqueue(stream, uses(send, receive, bytes), "ncclAllReduce", [=] {
    std::vector<float> own(static_cast<const float*>(send), static_cast<const float*>(send) + count);
    std::thread sender([&] {
      for (const auto& [peer, fd] : comm->to) write_all(fd, reinterpret_cast<const char*>(own.data()), bytes);
    });
    std::vector<float> sum(count, 0.0f), theirs(count);
    for (int r = 0; r < comm->size; ++r) {
      if (r != comm->rank) read_all(comm->from.at(r), reinterpret_cast<char*>(theirs.data()), bytes);
      const std::vector<float>& part = r == comm->rank ? own : theirs;
      for (size_t i = 0; i < count; ++i) sum[i] += part[i];
    }
    sender.join();
    std::memcpy(receive, sum.data(), bytes);
  });
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* send, void* receive, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  const size_t bytes = count * type_size(type);
  if (type_size(type) == 0 || root < 0 || root >= comm->size) return ncclInvalidArgument;
  const bool from_here = comm->rank == root;
  emu::enqueue(stream, uses(from_here ? send : nullptr, from_here && receive == send ? nullptr : receive, bytes), "ncclBroadcast", [=] {
    if (!from_here) return read_all(comm->from.at(root), static_cast<char*>(receive), bytes);
    for (const auto& [peer, fd] : comm->to) write_all(fd, static_cast<const char*>(send), bytes);
    if (receive != send) std::memcpy(receive, send, bytes);
  });
  return ncclSuccess;
}

}  // extern "C"

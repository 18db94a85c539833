// A pipeline across processes in which one rank fails at a chosen step, by an exception in a
// layer, by being killed, or by hanging (its neighbours give up after 3 s): run under mpirun
// by mpi_test.sh, which checks that every process ends soon, with a non-zero status and a
// message naming the failed rank. With `none`, nothing fails: rank 0 prints 6 steps' losses.
//   mpi_fault STAGES FAILING_RANK FAILING_STEP throw|kill|hang|none [cpu|cuda]
// cuda: each rank on its own GPU, over NCCL (nccl_test.sh). Unlike `minipipe train`, this
// records no trace, so no stage waits for its GPU after each instruction: the hand-offs
// between streams alone order the work, as the emulated GPU's race check requires.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "minipipe.h"

using namespace minipipe;

namespace {

// Fails on its rank when the step it is in comes.
class Failing : public nn::Module {
 public:
  Failing(bool armed, int64_t step, std::string how) : armed_(armed), step_(step), how_(std::move(how)) {}
  Tensor forward(const Tensor& x) override {
    if (armed_ && static_cast<int64_t>(nn::forward_context().step) == step_) {
      if (how_ == "kill") std::raise(SIGKILL);
      if (how_ == "hang") std::this_thread::sleep_for(std::chrono::hours(1));
      throw std::runtime_error("this layer failed on purpose");
    }
    return x;
  }
  std::string type_name() const override { return "Failing"; }

 private:
  bool armed_;
  int64_t step_;
  std::string how_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: mpi_fault STAGES FAILING_RANK FAILING_STEP throw|kill|hang|none [cpu|cuda]\n");
    return 2;
  }
  const int stages = std::atoi(argv[1]), failing_rank = std::atoi(argv[2]);
  const int64_t failing_step = std::atoll(argv[3]);
  const std::string how = argv[4];
  const int rank = pipeline::rank_from_launcher();
  try {
    const Device device = pipeline::device_of_rank(Device::parse(argc == 6 ? argv[5] : "cpu"));
    pipeline::ProcessGroup group(stages, 1, device);
    Generator g(1);
    auto model = std::make_shared<nn::Sequential>();
    for (int s = 0; s < stages; ++s) {
      model->add(std::make_shared<nn::Linear>(16, 16, g));
      model->add(std::make_shared<Failing>(how != "none" && s == group.stage() && rank == failing_rank, failing_step, how));
    }
    model->to(device);
    pipeline::PipelineOptions options;
    options.stage_devices.assign(stages, device);
    options.micro_batches = 4;
    options.schedule = "1f1b";
    options.remote_stages = group.remote_stages(3.0);
    pipeline::Pipeline pipe(model, pipeline::partition_uniform(*model, stages), options, nn::mse_loss);
    nn::SGD optimizer(pipe.stage(group.stage())->named_parameters(), {.lr = 0.01f});  // each rank steps its own stage
    const int64_t steps = how == "none" ? 6 : 1000;
    for (int64_t step = 0; step < steps; ++step) {
      const pipeline::StepResult result =
          pipe.run({randn({32, 16}, g).to(device), randn({32, 16}, g).to(device), 0}, static_cast<uint64_t>(step));
      const double loss = group.sum(group.stage() == stages - 1 ? result.loss : 0.0);
      if (how == "none" && group.rank() == 0) std::printf("step %lld loss %.9g\n", static_cast<long long>(step), loss);
      optimizer.step();
      optimizer.zero_grad();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_fault: error (rank %d): %s\n", rank, e.what());
    std::fflush(stderr);
    pipeline::abort_every_process_if_launched(1);
    return 1;
  }
  return 0;
}

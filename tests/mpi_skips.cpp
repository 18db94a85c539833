// A model with a skip connection across stages (nn/skip.h), trained by a pipeline::Trainer in
// one process (threads) or under mpirun (a rank per stage): mpi_test.sh compares the two
// outputs, which must be equal to the last bit. The skip jumps from the first stage to the
// last, over the stages in between; under mpirun its tensor goes straight from the stashing
// rank to the popping rank, and its gradient straight back.
//   mpi_skips SCHEDULE STAGES
// Prints each step's loss and the evaluation forward's sum, as hexadecimal floats.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "minipipe.h"

using namespace minipipe;

namespace {

// Linear, stash "across", Linear, Linear, pop "across", Linear, GELU between: with K = 2 or 3
// equal cuts the stash is on stage 0 and the pop on the last.
nn::ModelRecipe skip_recipe() {
  nn::ModelRecipe recipe;
  recipe.names = {"in", "stash", "middle0", "middle1", "pop", "out"};
  recipe.build_layer = [](size_t index, const nn::Sequential&) -> nn::ModulePtr {
    Generator g = nn::layer_generator(3, index);
    switch (index) {
      case 1: return std::make_shared<nn::SkipStash>("across");
      case 4: return std::make_shared<nn::SkipPop>("across");
      default: {
        auto block = std::make_shared<nn::Sequential>();
        block->add(std::make_shared<nn::Linear>(16, 16, g), "linear");
        block->add(std::make_shared<nn::Activation>(nn::ActivationKind::GELU), "gelu");
        return block;
      }
    }
  };
  return recipe;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: mpi_skips SCHEDULE STAGES\n");
    return 2;
  }
  try {
    pipeline::TrainerOptions options;
    options.schedule.name = argv[1];
    options.schedule.stages = std::atoi(argv[2]);
    options.schedule.micro_batches = 4;
    options.optimizer = {[](nn::NamedTensors p) { return std::make_unique<nn::SGD>(std::move(p), nn::SgdOptions{.lr = 0.05f}); },
                         {nn::LearningRateSchedule::Kind::Constant, 0.05f}, 1.0f};
    options.rank_timeout_seconds = 30;
    Generator data(11);
    std::vector<datasets::Batch> batches;
    for (int i = 0; i < 4; ++i) batches.push_back({randn({8, 16}, data), randn({8, 16}, data), 0});
    pipeline::Trainer trainer(skip_recipe(), nn::mse_loss, batches[0].inputs.narrow(0, 0, 2), options);
    const bool prints = !trainer.process_group() || trainer.process_group()->rank() == 0;
    const std::vector<float> losses = trainer.train(batches, 0);
    for (size_t i = 0; i < losses.size(); ++i)
      if (prints) std::printf("step %zu loss %a\n", i, static_cast<double>(losses[i]));
    const Tensor output = trainer.forward(batches[0].inputs);
    if (prints) std::printf("eval sum %a\n", static_cast<double>(sum(output).item()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_skips: error (rank %d): %s\n", pipeline::rank_from_launcher(), e.what());
    std::fflush(stderr);
    pipeline::abort_every_process_if_launched(1);
    return 1;
  }
  return 0;
}

// A program outside minipipe's tree: it includes only installed headers and links through
// pkg-config (tests/install_test.sh builds it that way). It defines a small classifier,
// trains it a few steps on synthetic data, saves it, loads it back and checks the copy.
//
//   g++ -std=c++20 train_and_save.cpp $(pkg-config --cflags --libs minipipe) -o train_and_save
#include <cstdio>
#include <memory>
#include <string>

#include "autograd/node.h"
#include "nn/layers.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/safetensors.h"
#include "nn/sequential.h"
#include "tensor/factories.h"

using namespace minipipe;

std::shared_ptr<nn::Sequential> make_model(Generator& g) {
  auto model = std::make_shared<nn::Sequential>();
  model->add(std::make_shared<nn::Linear>(2, 16, g), "hidden");
  model->add(std::make_shared<nn::Activation>(nn::ActivationKind::Tanh), "activation");
  model->add(std::make_shared<nn::Linear>(16, 2, g), "output");
  return model;
}

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "model.safetensors";
  // Two classes: points above or below the line y = x.
  Generator g(0);
  const Tensor points = randn({128, 2}, g);
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < 128; ++i) labels.push_back(points.at({i, 1}) > points.at({i, 0}) ? 1 : 0);
  const Tensor targets = from_int_vector(labels, {128});

  auto model = make_model(g);
  nn::AdamW optimizer(model->named_parameters(), {.lr = 0.05f, .weight_decay = 0.0f});
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    const Tensor loss = nn::cross_entropy_loss((*model)(points), targets);
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
    (step == 0 ? first : last) = loss.item();
  }
  std::printf("loss %.4f -> %.4f\n", first, last);
  nn::save_safetensors(path, model->state_dict(), {{"example", "train_and_save"}});

  Generator other(1);
  auto copy = make_model(other);
  copy->load_state_dict(nn::load_safetensors(path).tensors);
  NoGradGuard no_grad;
  const float original = nn::cross_entropy_loss((*model)(points), targets).item();
  const float reloaded = nn::cross_entropy_loss((*copy)(points), targets).item();
  std::printf("saved to %s; reloaded model's loss %.6f (original %.6f)\n", path.c_str(), reloaded, original);
  return last < first && reloaded == original ? 0 : 1;
}

// autograd/: the engine (multi-root, chosen inputs, accumulation, graph release), grad mode,
// checkpoint(), concurrent training on threads, and the optimizer updates.
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "autograd/checkpoint.h"
#include "autograd/elementwise.h"
#include "autograd/engine.h"
#include "autograd/matmul.h"
#include "autograd/node.h"
#include "nn/optim/optimizer_steps.h"
#include "autograd/random_ops.h"
#include "autograd/reduction.h"
#include "autograd/softmax.h"
#include "kernels/cpu/gemm.h"
#include "nn/convolutional.h"
#include "nn/layers.h"
#include "nn/losses.h"
#include "nn/transformer.h"
#include "tensor/factories.h"
#include "test_helpers.h"

namespace minipipe {
namespace {

using testing::expect_same_values;
using testing::expect_values;

TEST(Elementwise, NumbersOnEitherSide) {
  const Tensor x = from_vector({1, 2, 4}, {3});
  expect_values(mul(x, 2.0f), {2, 4, 8});
  expect_values(mul(3.0f, x), {3, 6, 12});
  expect_values(add(x, 1.0f), {2, 3, 5});
  expect_values(sub(x, 1.0f), {0, 1, 3});
  expect_values(div(x, 2.0f), {0.5f, 1, 2});
  expect_values(1.0f - x, {0, -1, -3});
  expect_values(1.0f + x, {2, 3, 5});
}

TEST(Engine, BackwardFromAScalarAccumulatesIntoLeaves) {
  // y = sum(w * x), dy/dw = x; a second backward adds to the first.
  const Tensor w = from_vector({1, 2, 3}, {3}).set_requires_grad();
  const Tensor x = from_vector({4, 5, 6}, {3});
  sum(mul(w, x)).backward();
  expect_values(w.grad(), {4, 5, 6});
  EXPECT_FALSE(x.grad().defined());
  sum(mul(w, x)).backward();
  expect_values(w.grad(), {8, 10, 12});
  w.zero_grad();
  EXPECT_FALSE(w.grad().defined());
}

// A leaf takes a gradient's buffer without a copy only when nothing else holds it: add's
// backward hands the same gradient to both its inputs, and a matmul's weight gradient is a
// fresh buffer of its own.
TEST(Engine, LeavesNeverShareAGradientBuffer) {
  const Tensor a = zeros({4}).set_requires_grad(), b = zeros({4}).set_requires_grad();
  const Tensor w = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad();
  const Tensor x = from_vector({1, 0, 2}, {3, 1});
  add(a, b).backward(from_vector({1, 2, 3, 4}, {4}));
  sum(matmul(w, x)).backward();
  EXPECT_NE(a.grad().data<float>(), b.grad().data<float>());
  a.grad().data<float>()[0] = 100.0f;  // as an in-place change (an all-reduce) would
  expect_values(b.grad(), {1, 2, 3, 4});
  expect_values(w.grad(), {1, 0, 2, 1, 0, 2});
}

TEST(Engine, SharedSubgraphGetsTheSumOfItsGradients) {
  // z = a*a + a, used twice downstream: dz/da = 2a + 1 at a = 3 is 7.
  const Tensor a = full({1}, 3.0f).set_requires_grad();
  const Tensor z = add(mul(a, a), a);
  sum(add(z, z)).backward();
  expect_values(a.grad(), {14});
}

TEST(Engine, MultiRootBackwardAddsTheRootsContributions) {
  // Two outputs of one graph, each with its own gradient, in one backward pass:
  // d(<y1, g1> + <y2, g2>)/dx with y1 = 2x, y2 = x^2.
  const Tensor x = from_vector({1, 2}, {2}).set_requires_grad();
  const Tensor y1 = x * 2.0f, y2 = mul(x, x);
  backward({y1, y2}, {from_vector({1, 10}, {2}), from_vector({100, 1000}, {2})});
  // 2 * g1 + 2x * g2 = [2 + 200, 20 + 4000]
  expect_values(x.grad(), {202, 4020});
}

TEST(Engine, ARootInsideAnotherRootsGraphWaitsForItsEdges) {
  // TeraPipe hands a slice's keys their gradient as a root while the slice's output, the
  // other root, also depends on them: h = 3x (root with g_h), y = h^2 (root with g_y).
  // dx = 3 (g_h + 2h g_y) = 3 (1 + 2 * 6 * 10) for x = 2.
  const Tensor x = from_vector({2}, {1}).set_requires_grad();
  const Tensor h = (x * 3.0f) * 1.0f, y = mul(h, h);
  backward({y, h}, {from_vector({10}, {1}), from_vector({1}, {1})});
  expect_values(x.grad(), {363});
  const Tensor x2 = from_vector({2}, {1}).set_requires_grad();
  const Tensor h2 = (x2 * 3.0f) * 1.0f, y2 = mul(h2, h2);
  backward({h2, y2}, {from_vector({1}, {1}), from_vector({10}, {1})});  // either order
  expect_values(x2.grad(), {363});
}

TEST(Engine, GradOfChosenInputsLeavesDotGradAlone) {
  const Tensor w = from_vector({1, 2}, {2}).set_requires_grad();
  const Tensor x = from_vector({3, 4}, {2}).set_requires_grad();
  const Tensor hidden = mul(w, x);           // a computed tensor
  const Tensor y = sum(mul(hidden, hidden));  // dy/dhidden = 2 hidden
  const std::vector<Tensor> grads = grad({y}, {Tensor()}, {hidden, x});
  expect_values(grads[0], {6, 16});
  expect_values(grads[1], {6, 32});  // 2 hidden * w
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
  // An input the root does not depend on gets zeros.
  const Tensor unused = zeros({3}).set_requires_grad();
  const Tensor y2 = sum(x * 3.0f);
  expect_values(grad({y2}, {Tensor()}, {unused})[0], {0, 0, 0});
}

TEST(Engine, StageBoundaryPattern) {
  // A pipeline stage boundary: stage 1's output is detached and becomes stage 2's leaf
  // input; stage 2's input gradient, fed to stage 1's backward, gives the same weight
  // gradients as one graph.
  const Tensor x = from_vector({0.5f, -1.0f, 2.0f}, {1, 3});
  const Tensor w1 = from_vector({1, 2, 3, 4, 5, 6}, {3, 2}).set_requires_grad();
  const Tensor w2 = from_vector({1, -1}, {2, 1}).set_requires_grad();
  sum(tanh(matmul(tanh(matmul(x, w1)), w2))).backward();
  const Tensor whole_w1 = w1.grad(), whole_w2 = w2.grad();
  w1.zero_grad();
  w2.zero_grad();

  const Tensor boundary = tanh(matmul(x, w1));
  const Tensor received = boundary.detach().set_requires_grad();
  sum(tanh(matmul(received, w2))).backward();
  backward({boundary}, {received.grad()});
  expect_same_values(w1.grad(), whole_w1);
  expect_same_values(w2.grad(), whole_w2);
}

TEST(Engine, ReleasesTheGraphUnlessRetained) {
  const Tensor x = full({2}, 1.0f).set_requires_grad();
  const Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  expect_values(x.grad(), {2 * 2.7182818f, 2 * 2.7182818f});
  EXPECT_THROW_WITH(y.backward(), "a second time", "retain_graph");
}

TEST(Engine, BadRootsAreClearErrors) {
  const Tensor x = full({2}, 1.0f).set_requires_grad();
  EXPECT_THROW_WITH(exp(x).backward(), "shape [2]", "pass a gradient");
  EXPECT_THROW_WITH(exp(x).backward(zeros({3})), "[3]", "[2]");
  EXPECT_THROW_WITH(zeros({1}).backward(), "does not require grad");
  EXPECT_THROW_WITH(exp(x).set_requires_grad(), "leaf");
  EXPECT_THROW_WITH(zeros({1}, DType::Int32).set_requires_grad(), "int32");
}

TEST(GradMode, NoGradGuardStopsRecordingOnThisThreadOnly) {
  const Tensor x = full({1}, 2.0f).set_requires_grad();
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(exp(x).requires_grad());
    bool other_thread_records = false;
    std::thread([&] { other_thread_records = exp(x).requires_grad(); }).join();
    EXPECT_TRUE(other_thread_records);
  }
  EXPECT_TRUE(exp(x).requires_grad());
  EXPECT_TRUE(exp(x.detach()).is_leaf());
}

// --- checkpoint -------------------------------------------------------------------------

Tensor block(const std::vector<Tensor>& in, const Tensor& w1, const Tensor& w2) {
  // Dropout draws its key from the thread's default generator, so the recomputation must
  // replay the generator to get the same masks.
  return matmul(dropout(gelu(matmul(in[0], w1)), 0.5f), w2);
}

TEST(Checkpoint, SameLossAndGradientsAsWithoutItWithDropout) {
  Generator g(3);
  const Tensor x = randn({4, 6}, g).set_requires_grad();
  const Tensor w1 = randn({6, 8}, g).set_requires_grad(), w2 = randn({8, 3}, g).set_requires_grad();
  auto f = [&](const std::vector<Tensor>& in) { return block(in, w1, w2); };

  manual_seed(99);
  const Tensor plain_loss = sum(tanh(f({x})));
  plain_loss.backward();
  const Tensor gx = x.grad(), gw1 = w1.grad(), gw2 = w2.grad();
  x.zero_grad(), w1.zero_grad(), w2.zero_grad();

  manual_seed(99);
  const Tensor checkpointed = checkpoint(f, {x});
  EXPECT_EQ(checkpointed.grad_fn()->name(), "checkpoint");
  const Tensor loss = sum(tanh(checkpointed));
  // Draw something else between forward and backward: the replay must not depend on it.
  dropout(ones({5}), 0.5f);
  loss.backward();
  EXPECT_EQ(loss.item(), plain_loss.item());
  expect_same_values(x.grad(), gx, 0, 0);
  expect_same_values(w1.grad(), gw1, 0, 0);
  expect_same_values(w2.grad(), gw2, 0, 0);
}

TEST(Checkpoint, ParametersGetGradientsEvenWhenInputsDoNot) {
  const Tensor x = full({2, 2}, 1.0f);  // data: no grad
  const Tensor w = from_vector({1, 2, 3, 4}, {2, 2}).set_requires_grad();
  sum(checkpoint([&](const std::vector<Tensor>& in) { return matmul(in[0], w); }, {x})).backward();
  expect_values(w.grad(), {2, 2, 2, 2});
}

TEST(Checkpoint, KeepsOnlyItsInputsBetweenForwardAndBackward) {
  Generator g(4);
  const Tensor x = randn({64, 64}, g).set_requires_grad();
  auto deep = [](const std::vector<Tensor>& in) {
    Tensor h = in[0];
    for (int i = 0; i < 8; ++i) h = tanh(h * 1.01f);
    return h;
  };
  const int64_t base = memory_stats(Device::cpu()).current_bytes;
  const Tensor kept = deep({x});
  const int64_t plain_bytes = memory_stats(Device::cpu()).current_bytes - base;
  const Tensor recomputable = checkpoint(deep, {x});
  const int64_t checkpoint_bytes = memory_stats(Device::cpu()).current_bytes - base - plain_bytes;
  // Plain: the 8 tanh outputs (16 KiB each) stay alive for backward; checkpointed: only
  // its output.
  EXPECT_GE(plain_bytes, 8 * 64 * 64 * 4);
  EXPECT_EQ(checkpoint_bytes, 64 * 64 * 4);
}

// --- threads --------------------------------------------------------------------------

// A two-layer network trained with SGD on a fixed regression problem; returns the losses.
std::vector<float> train_small_model(uint64_t seed, int steps) {
  Generator g(seed);
  const Tensor x = randn({32, 8}, g), target = randn({32, 1}, g);
  const Tensor w1 = randn({8, 16}, g, 0.0f, 0.3f).set_requires_grad(), w2 = randn({16, 1}, g, 0.0f, 0.3f).set_requires_grad();
  manual_seed(seed);  // this thread's dropout stream
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    const Tensor prediction = matmul(dropout(tanh(matmul(x, w1)), 0.1f), w2);
    const Tensor loss = mean(pow(prediction - target, 2.0f));
    loss.backward();
    NoGradGuard no_grad;
    for (const Tensor& w : {w1, w2}) {
      sgd_step_(w, w.grad(), Tensor(), nn::SgdOptions{.lr = 0.1f}, step == 0);
      w.zero_grad();
    }
    losses.push_back(loss.item());
  }
  return losses;
}

// Zero-bubble's split (autograd/engine.h): B now, W later, against one fused backward, on a
// GPT stage (embedding, layer norms, attention, MLPs, head: the blocks' input is the stage's
// received activation) and on the CNN (convolutions, BatchNorm). Same bits, and the GEMMs
// of B and W add up to those of the fused backward: nothing is computed twice.
struct SplitCase {
  std::string name;
  std::function<std::shared_ptr<nn::Sequential>()> model;
  std::function<Tensor(nn::Sequential&, const Tensor& input)> loss;
  std::function<Tensor()> input;  // a float leaf that requires grad: the "stage input"
};

void expect_split_equals_fused(const SplitCase& c) {
  auto fused_model = c.model(), split_model = c.model();
  const Tensor fused_input = c.input(), split_input = c.input();
  const Tensor fused_loss = c.loss(*fused_model, fused_input);
  const int64_t before_fused = kernels::cpu::multiply_adds_done();
  fused_loss.backward();
  const int64_t fused = kernels::cpu::multiply_adds_done() - before_fused;

  const Tensor loss = c.loss(*split_model, split_input);
  const int64_t before_b = kernels::cpu::multiply_adds_done();
  DeferredWeightGradients weights = backward_inputs({loss}, {Tensor()}, {split_input});
  const int64_t b = kernels::cpu::multiply_adds_done() - before_b;
  ASSERT_FALSE(weights.empty()) << c.name;
  ASSERT_TRUE(split_input.grad().defined()) << c.name;
  EXPECT_EQ(split_input.grad().to_vector<float>(), fused_input.grad().to_vector<float>()) << c.name << ": input";
  int waiting = 0;  // weights without a gradient until W
  for (const auto& [name, p] : split_model->named_parameters()) waiting += !p.grad().defined();
  EXPECT_GT(waiting, 0) << c.name;
  const int64_t before_w = kernels::cpu::multiply_adds_done();
  weights.run();
  const int64_t w = kernels::cpu::multiply_adds_done() - before_w;
  EXPECT_GT(b, 0) << c.name;
  EXPECT_GT(w, 0) << c.name;
  EXPECT_EQ(b + w, fused) << c.name << ": B and W together must do the fused backward's multiply-adds, no more";
  const auto fused_parameters = fused_model->named_parameters();
  const auto split_parameters = split_model->named_parameters();
  for (size_t i = 0; i < fused_parameters.size(); ++i) {
    ASSERT_TRUE(split_parameters[i].second.grad().defined()) << c.name << ": " << split_parameters[i].first;
    EXPECT_EQ(split_parameters[i].second.grad().to_vector<float>(), fused_parameters[i].second.grad().to_vector<float>())
        << c.name << ": " << fused_parameters[i].first;
  }
}

TEST(Engine, InputThenWeightGradientsEqualOneFusedBackwardWithoutExtraWork) {
  const nn::GPTConfig config{.vocabulary = 31, .context = 8, .dim = 16, .layers = 2, .heads = 2, .dropout = 0.0f, .seed = 3};
  Generator g(1);
  const Tensor tokens = randint(0, 31, {4, 8}, g), targets = randint(0, 31, {4, 8}, g);
  expect_split_equals_fused({"gpt blocks and head", [&] {
                               auto gpt = nn::make_gpt(config);
                               auto stage = std::make_shared<nn::Sequential>();
                               for (size_t i = 1; i < gpt->size(); ++i) stage->add((*gpt)[i], gpt->name_of(i));
                               return stage;
                             },
                             [&](nn::Sequential& m, const Tensor& x) { return nn::cross_entropy_loss(m.forward(x), targets); },
                             [&] {
                               Generator h(2);
                               return randn({4, 8, 16}, h).set_requires_grad();
                             }});
  // The whole GPT: the embedding's table is its only weight input, so its backward is all W.
  expect_split_equals_fused({"gpt with its embedding", [&] { return nn::make_gpt(config); },
                             [&](nn::Sequential& m, const Tensor& x) {
                               return nn::cross_entropy_loss(m.forward(tokens), targets) + sum(x);
                             },
                             [&] { return zeros({1}).set_requires_grad(); }});
  Generator label_generator(5);
  const Tensor labels = randint(0, 10, {4}, label_generator);
  expect_split_equals_fused({"cnn", [&] { return nn::make_resnet({.in_channels = 1, .width = 4, .stages = 2, .seed = 4}); },
                             [&](nn::Sequential& m, const Tensor& x) { return nn::cross_entropy_loss(m.forward(x), labels); },
                             [&] {
                               Generator h(3);
                               return randn({4, 1, 8, 8}, h).set_requires_grad();
                             }});
}

TEST(Threads, TwoModelsTrainedAtOnceMatchOneAfterTheOther) {
  const std::vector<float> first = train_small_model(1, 40), second = train_small_model(2, 40);
  EXPECT_LT(first.back(), first.front() * 0.7f);  // it does learn
  std::vector<float> concurrent_first, concurrent_second;
  std::thread a([&] { concurrent_first = train_small_model(1, 40); });
  std::thread b([&] { concurrent_second = train_small_model(2, 40); });
  a.join();
  b.join();
  EXPECT_EQ(concurrent_first, first);
  EXPECT_EQ(concurrent_second, second);
}

// --- optimizer updates ------------------------------------------------------------------

TEST(OptimizerSteps, SgdMomentumAndNesterovMatchHandComputedSteps) {
  // p = 1, g = 0.5, lr 0.1, momentum 0.9: buf = 0.5 -> p = 0.95; buf = 0.95 -> p = 0.855.
  const Tensor p = full({1}, 1.0f), g = full({1}, 0.5f), buf = zeros({1});
  const nn::SgdOptions momentum{.lr = 0.1f, .momentum = 0.9f};
  sgd_step_(p, g, buf, momentum, true);
  expect_values(p, {0.95f});
  sgd_step_(p, g, buf, momentum, false);
  expect_values(p, {0.855f});
  // Nesterov: step = g + 0.9 * buf = 0.95 -> p = 1 - 0.095.
  const Tensor q = full({1}, 1.0f), qbuf = zeros({1});
  sgd_step_(q, g, qbuf, nn::SgdOptions{.lr = 0.1f, .momentum = 0.9f, .nesterov = true}, true);
  expect_values(q, {0.905f});
  // Weight decay adds wd * p to the gradient: 1 - 0.1 * (0.5 + 0.1) = 0.94.
  const Tensor r = full({1}, 1.0f);
  sgd_step_(r, g, Tensor(), nn::SgdOptions{.lr = 0.1f, .weight_decay = 0.1f}, true);
  expect_values(r, {0.94f});
  EXPECT_THROW_WITH(sgd_step_(p, zeros({2}), buf, momentum, false), "grad", "[2]", "[1]");
}

TEST(OptimizerSteps, AdamWMatchesHandComputedStep) {
  // Decay: 1 - 0.1 * 0.01 = 0.999; m = 0.05, v = 0.00025; bias-corrected m/sqrt(v) = 1,
  // so p = 0.999 - 0.1 = 0.899. Second step with the same gradient: m = 0.095,
  // v = 0.00049975; corrected m = 0.5, sqrt(corrected v) = 0.5 -> p = 0.899*0.999 - 0.1.
  const Tensor p = full({1}, 1.0f), g = full({1}, 0.5f), m = zeros({1}), v = zeros({1});
  const nn::AdamWOptions options{.lr = 0.1f, .weight_decay = 0.01f};
  adamw_step_(p, g, m, v, options, 1);
  expect_values(p, {0.899f});
  expect_values(m, {0.05f});
  expect_values(v, {0.00025f});
  adamw_step_(p, g, m, v, options, 2);
  expect_values(p, {0.899f * 0.999f - 0.1f}, 1e-5f);
  EXPECT_THROW_WITH(adamw_step_(p, g, m, v, options, 0), "step counts from 1");
}

}  // namespace
}  // namespace minipipe

// The differentiable ops: forward values against hand-computed cases, and every op's
// gradient against central finite differences (gradcheck), with broadcasting and
// non-contiguous inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/convolution.h"
#include "autograd/elementwise.h"
#include "autograd/embedding.h"
#include "autograd/engine.h"
#include "autograd/matmul.h"
#include "autograd/node.h"
#include "autograd/normalization.h"
#include "nn/optim/optimizer_steps.h"
#include "autograd/random_ops.h"
#include "autograd/reduction.h"
#include "autograd/shape_ops.h"
#include "autograd/softmax.h"
#include "kernels/cpu/threads.h"
#include "tensor/allocator.h"
#include "tensor/factories.h"
#include "test_helpers.h"

namespace minipipe {
namespace {

using testing::expect_values;
using Inputs = std::vector<Tensor>;

// A leaf of uniform values in [low, high) that requires grad.
Tensor leaf(const Shape& shape, uint64_t seed, float low = -1.0f, float high = 1.0f) {
  Generator generator(seed);
  return rand(shape, generator, low, high).set_requires_grad();
}

// Like leaf, but every |value| >= 0.2, keeping finite differences off kinks (relu at 0).
Tensor leaf_away_from_zero(const Shape& shape, uint64_t seed) {
  Tensor t = leaf(shape, seed);
  float* v = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = v[i] < 0 ? v[i] - 0.2f : v[i] + 0.2f;
  return t;
}

// A leaf whose values are a shuffle of 0, 0.1, 0.2, ...: no two within 2 * eps, so finite
// differences never cross a tie (max, max_pool2d).
Tensor leaf_distinct(const Shape& shape, uint64_t seed) {
  Tensor t = zeros(shape);
  Generator generator(seed);
  const std::vector<float> keys = rand(shape, generator).to_vector<float>();
  std::vector<int64_t> order(keys.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  for (size_t rank = 0; rank < order.size(); ++rank) t.data<float>()[order[rank]] = 0.1f * static_cast<float>(rank);
  return t.set_requires_grad();
}

const Tensor kMatrix = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});

// --- elementwise ----------------------------------------------------------------------

TEST(Elementwise, BinaryOpsBroadcastLikeNumPy) {
  expect_values(add(kMatrix, from_vector({10, 20, 30}, {3})), {11, 22, 33, 14, 25, 36});
  expect_values(sub(kMatrix, from_vector({1, 2}, {2, 1})), {0, 1, 2, 2, 3, 4});
  expect_values(mul(kMatrix, full({}, 2.0f)), {2, 4, 6, 8, 10, 12});
  expect_values(div(from_vector({1, 2}, {2, 1}), from_vector({1, 2, 4}, {1, 3})), {1, 0.5f, 0.25f, 2, 1, 0.5f});
  expect_values(kMatrix * 2.0f - 1.0f, {1, 3, 5, 7, 9, 11});
  EXPECT_EQ(add(zeros({4, 1, 3}), zeros({2, 1})).shape(), (Shape{4, 2, 3}));
}

TEST(Elementwise, BinaryOpsReadNonContiguousInputs) {
  const Tensor t = kMatrix.transpose(0, 1);  // [[1,4],[2,5],[3,6]]
  expect_values(add(t, from_vector({100, 200}, {2})), {101, 204, 102, 205, 103, 206});
}

TEST(Elementwise, UnaryOpsMatchHandComputedValues) {
  expect_values(relu(from_vector({-1, 0.5f}, {2})), {0, 0.5f});
  // gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  expect_values(gelu(from_vector({1.0f, -0.5f}, {2})), {0.84119199f, -0.15428599f});
  expect_values(sigmoid(from_vector({0.0f}, {1})), {0.5f});
  expect_values(tanh(from_vector({0.0f}, {1})), {0.0f});
  expect_values(exp(from_vector({1.0f}, {1})), {2.7182818f});
  expect_values(log(from_vector({2.7182818f}, {1})), {1.0f});
  expect_values(sqrt(from_vector({4.0f}, {1})), {2.0f});
  expect_values(pow(from_vector({3.0f}, {1}), 2.0f), {9.0f});
  expect_values(neg(from_vector({3.0f}, {1})), {-3.0f});
}

TEST(Elementwise, BadInputsNameShapesDevicesDtypes) {
  EXPECT_THROW_WITH(add(zeros({2, 3}), zeros({3, 2})), "add", "[2, 3]", "[3, 2]");
  EXPECT_THROW_WITH(mul(zeros({2}), zeros({2}, DType::Int32)), "mul", "float32", "int32");
  EXPECT_THROW_WITH(relu(Tensor()), "relu", "undefined");
}

TEST(Elementwise, GradientsMatchFiniteDifferences) {
  const Tensor a = leaf({2, 3}, 1), b = leaf({3}, 2), c = leaf({2, 1}, 3), positive = leaf({2, 3}, 4, 0.5f, 2.0f);
  EXPECT_GRADCHECK([](const Inputs& x) { return add(x[0], x[1]); }, (Inputs{a, b}));
  EXPECT_GRADCHECK([](const Inputs& x) { return sub(x[0], x[1]); }, (Inputs{a, c}));
  EXPECT_GRADCHECK([](const Inputs& x) { return mul(x[0], x[1]); }, (Inputs{a, c}));
  EXPECT_GRADCHECK([](const Inputs& x) { return div(x[0], x[1]); }, (Inputs{a, positive}));
  EXPECT_GRADCHECK([](const Inputs& x) { return div(x[1], x[0]); }, (Inputs{positive, b}));
  EXPECT_GRADCHECK([](const Inputs& x) { return neg(x[0]) * 3.0f + 1.0f; }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return pow(x[0], 2.5f); }, (Inputs{positive}));
  EXPECT_GRADCHECK([](const Inputs& x) { return sqrt(x[0]); }, (Inputs{positive}));
  EXPECT_GRADCHECK([](const Inputs& x) { return exp(x[0]); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return log(x[0]); }, (Inputs{positive}));
  EXPECT_GRADCHECK([](const Inputs& x) { return relu(x[0]); }, (Inputs{leaf_away_from_zero({2, 3}, 5)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return gelu(x[0]); }, (Inputs{leaf({2, 3}, 6, -3, 3)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return tanh(x[0]); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return sigmoid(x[0]); }, (Inputs{a}));
  // Non-contiguous operands: a transposed view times a broadcast column.
  EXPECT_GRADCHECK([](const Inputs& x) { return mul(x[0].transpose(0, 1), x[1]); }, (Inputs{a, leaf({3, 1}, 7)}));
}

// --- reductions -------------------------------------------------------------------------

TEST(Reduction, SumMeanMaxOverDims) {
  expect_values(sum(kMatrix, {0}), {5, 7, 9});
  expect_values(sum(kMatrix, {1}), {6, 15});
  EXPECT_EQ(sum(kMatrix, {1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(sum(kMatrix).shape(), Shape{});
  expect_values(sum(kMatrix), {21});
  expect_values(mean(kMatrix), {3.5f});
  expect_values(mean(kMatrix, {0}), {2.5f, 3.5f, 4.5f});
  expect_values(max(kMatrix, {1}), {3, 6});
  expect_values(max(kMatrix, {0, 1}, true), {6});
  EXPECT_EQ(argmax(from_vector({1, 9, 3, 7, 2, 8}, {2, 3}), 1).to_vector<int32_t>(), (std::vector<int32_t>{1, 2}));
  expect_values(sum(kMatrix.transpose(0, 1), {1}), {5, 7, 9});
  EXPECT_THROW_WITH(sum(kMatrix, {2}), "sum", "dim 2");
}

TEST(Reduction, GradientsMatchFiniteDifferences) {
  const Tensor a = leaf_distinct({2, 3, 4}, 11);
  EXPECT_GRADCHECK([](const Inputs& x) { return sum(x[0], {1}); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return sum(x[0], {0, 2}, true); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return mean(x[0], {-1}); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return mean(x[0]); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return max(x[0], {1}); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return max(x[0], {0, 2}, true); }, (Inputs{a}));
  EXPECT_GRADCHECK([](const Inputs& x) { return sum(x[0].permute({2, 0, 1}), {0}); }, (Inputs{a}));
}

// --- matmul ---------------------------------------------------------------------------

TEST(Matmul, MatchesHandComputedProducts) {
  const Tensor a = from_vector({1, 2, 3, 4}, {2, 2}), b = from_vector({5, 6, 7, 8}, {2, 2});
  expect_values(matmul(a, b), {19, 22, 43, 50});
  expect_values(matmul(a.transpose(0, 1), b), {26, 30, 38, 44});      // A^T B
  expect_values(matmul(a, b.transpose(0, 1)), {17, 23, 39, 53});      // A B^T
  expect_values(matmul(kMatrix, ones({3, 1})), {6, 15});
  // Batched, and a batch of rows against one matrix.
  const Tensor batch = concat({a.unsqueeze(0), b.unsqueeze(0)}, 0);
  expect_values(matmul(batch, batch), {7, 10, 15, 22, 67, 78, 91, 106});
  expect_values(matmul(batch, a), {7, 10, 15, 22, 23, 34, 31, 46});
  expect_values(matmul(a, b, 0.5f), {9.5f, 11, 21.5f, 25});  // alpha scales the product
  EXPECT_THROW_WITH(matmul(zeros({2, 3}), zeros({2, 3})), "matmul", "[2, 3]");
  EXPECT_THROW_WITH(matmul(zeros({2, 2, 3}), zeros({3, 3, 2})), "equal batch dims");
}

TEST(Matmul, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0], x[1]); }, (Inputs{leaf({3, 4}, 21), leaf({4, 2}, 22)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0], x[1]); }, (Inputs{leaf({2, 3, 4}, 23), leaf({4, 5}, 24)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0], x[1]); }, (Inputs{leaf({2, 2, 3, 4}, 25), leaf({2, 2, 4, 3}, 26)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0].transpose(0, 1), x[1].transpose(0, 1)); },
                   (Inputs{leaf({4, 3}, 27), leaf({2, 4}, 28)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0].narrow(1, 1, 3), x[1]); }, (Inputs{leaf({3, 5}, 29), leaf({3, 2}, 30)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0], x[1].transpose(-1, -2), -0.25f); },
                   (Inputs{leaf({2, 3, 4}, 36), leaf({2, 5, 4}, 37)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return matmul(x[0], x[1], 3.0f); }, (Inputs{leaf({2, 3, 4}, 38), leaf({4, 5}, 39)}));
}

TEST(Matmul, HandlesEmptyDims) {
  // A sum over nothing is zero; an empty product has an empty gradient. Both run forward and
  // backward through the batch-folding path (3-D times 2-D) and the batched one.
  Tensor a = zeros({2, 3, 0}).set_requires_grad(true), b = ones({0, 4}).set_requires_grad(true);
  const Tensor y = matmul(a, b);
  expect_values(y, std::vector<float>(24, 0.0f));
  sum(y).backward();
  EXPECT_EQ(a.grad().shape(), (Shape{2, 3, 0}));
  EXPECT_EQ(b.grad().shape(), (Shape{0, 4}));
  Tensor c = ones({2, 3, 4}).set_requires_grad(true), d = ones({4, 0}).set_requires_grad(true);
  const Tensor empty_product = matmul(c, d);
  EXPECT_EQ(empty_product.shape(), (Shape{2, 3, 0}));
  sum(empty_product).backward();
  expect_values(c.grad(), std::vector<float>(24, 0.0f));
  EXPECT_EQ(d.grad().shape(), (Shape{4, 0}));
  expect_values(matmul(ones({2, 1, 0}), ones({2, 0, 3})), std::vector<float>(6, 0.0f));
  expect_values(linear(ones({3, 0}), ones({2, 0}), from_vector({1, 2}, {2})), {1, 2, 1, 2, 1, 2});
}

TEST(Linear, MatchesHandComputedValuesAndChecksShapes) {
  // x [[1, 2], [3, 4]], W [[1, 0], [1, 1], [0, 2]] (out 3, in 2), b [10, 20, 30].
  const Tensor x = from_vector({1, 2, 3, 4}, {2, 2}), w = from_vector({1, 0, 1, 1, 0, 2}, {3, 2});
  expect_values(linear(x, w, from_vector({10, 20, 30}, {3})), {11, 23, 34, 13, 27, 38});
  expect_values(linear(x, w, Tensor()), {1, 3, 4, 3, 7, 8});
  EXPECT_EQ(linear(zeros({2, 5, 2}), w, Tensor()).shape(), (Shape{2, 5, 3}));
  EXPECT_THROW_WITH(linear(zeros({2, 3}), w, Tensor()), "linear", "[2, 3]", "[3, 2]");
  EXPECT_THROW_WITH(linear(x, w, zeros({2})), "bias must be [3]");
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return linear(x[0], x[1], x[2]); },
                   (Inputs{leaf({2, 3, 4}, 31), leaf({5, 4}, 32), leaf({5}, 33)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return linear(x[0].transpose(0, 1), x[1], Tensor()); },
                   (Inputs{leaf({4, 3}, 34), leaf({2, 4}, 35)}));
}

// --- softmax, cross-entropy -------------------------------------------------------------

TEST(Softmax, MatchesHandComputedValues) {
  expect_values(softmax(from_vector({1, 2, 3}, {1, 3})), {0.09003057f, 0.24472847f, 0.66524096f});
  expect_values(log_softmax(from_vector({1, 2, 3}, {3})), {-2.40760596f, -1.40760596f, -0.40760596f});
  // Large logits do not overflow.
  expect_values(softmax(from_vector({1000, 1000}, {2})), {0.5f, 0.5f});
}

TEST(CrossEntropy, MatchesHandComputedLossAndIgnoresPadding) {
  const Tensor logits = from_vector({1, 2, 3, 1, 2, 3}, {2, 3});
  // Row losses: -log softmax = 0.4076 (target 2) and 2.4076 (target 0).
  expect_values(cross_entropy(logits, from_int_vector({2, 0}, {2})), {1.40760596f});
  expect_values(cross_entropy(logits, from_int_vector({2, -100}, {2})), {0.40760596f});
  expect_values(cross_entropy(logits, from_int_vector({-100, -100}, {2})), {0.0f});
  EXPECT_THROW_WITH(cross_entropy(logits, from_int_vector({3, 0}, {2})), "target 3", "[0, 3)");
  EXPECT_THROW_WITH(cross_entropy(logits, from_int_vector({0}, {1})), "[2, 3]", "[2]", "[1]");
  EXPECT_THROW_WITH(cross_entropy(logits, from_vector({0, 1}, {2})), "targets", "int32", "float32");
}

// With a backward pass ahead the forward also writes the softmax (the backward's only input);
// without one it writes nothing. Both give the same loss, bit for bit, and the gradient is
// (softmax - onehot) / counted rows, here computed by hand from softmax's own values.
TEST(CrossEntropy, LossIsTheSameWithAndWithoutABackwardPassAndItsGradientIsSoftmaxMinusOnehot) {
  const Tensor logits = leaf({6, 9}, 5, -3, 3);
  const Tensor targets = from_int_vector({3, -100, 0, 8, 8, 1}, {6});
  const Tensor loss = cross_entropy(logits, targets);
  Tensor inference_loss;
  {
    NoGradGuard no_grad;
    inference_loss = cross_entropy(logits, targets);
  }
  EXPECT_EQ(loss.item(), inference_loss.item());
  loss.backward();
  const Tensor probabilities = softmax(logits.detach());
  std::vector<float> expected(54);
  for (int64_t r = 0; r < 6; ++r) {
    const int32_t target = targets.data<int32_t>()[r];
    for (int64_t c = 0; c < 9; ++c)
      expected[r * 9 + c] = target == -100 ? 0.0f : (probabilities.data<float>()[r * 9 + c] - (c == target)) / 5.0f;
  }
  expect_values(logits.grad(), expected, 1e-6f);
}

TEST(Softmax, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return softmax(x[0]); }, (Inputs{leaf({3, 5}, 31, -2, 2)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return log_softmax(x[0].transpose(0, 1)); }, (Inputs{leaf({4, 3}, 32, -2, 2)}));
  const Tensor targets = from_int_vector({1, -100, 4, 0, 2, 2}, {2, 3});
  EXPECT_GRADCHECK([targets](const Inputs& x) { return cross_entropy(x[0], targets); }, (Inputs{leaf({2, 3, 5}, 33, -2, 2)}));
}

// --- normalization ----------------------------------------------------------------------

TEST(LayerNorm, NormalisesTheLastDim) {
  // mean 2, variance 2/3: (x - 2) / sqrt(2/3 + 1e-5)
  expect_values(layer_norm(from_vector({1, 2, 3}, {1, 3}), ones({3}), zeros({3})), {-1.2247357f, 0, 1.2247357f});
  expect_values(layer_norm(from_vector({1, 2, 3}, {3}), full({3}, 2.0f), ones({3})), {-1.4494714f, 1, 3.4494714f});
  EXPECT_THROW_WITH(layer_norm(zeros({2, 3}), ones({4}), zeros({4})), "gamma", "[3]", "[4]");
}

TEST(LayerNorm, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); },
                   (Inputs{leaf({2, 3, 5}, 41, -2, 2), leaf({5}, 42, 0.5f, 1.5f), leaf({5}, 43)}));
}

TEST(BatchNorm, TrainingUsesBatchStatisticsAndUpdatesRunningOnes) {
  Tensor running_mean = zeros({1}), running_var = ones({1});
  // x = [1, 3]: mean 2, biased variance 1.
  expect_values(batch_norm(from_vector({1, 3}, {2, 1}), ones({1}), zeros({1}), running_mean, running_var, true),
                {-0.999995f, 0.999995f});
  expect_values(running_mean, {0.2f});           // 0.9 * 0 + 0.1 * 2
  expect_values(running_var, {1.1f});            // 0.9 * 1 + 0.1 * 2 (unbiased variance)
  // Eval mode uses the running statistics.
  expect_values(batch_norm(from_vector({0.2f}, {1, 1}), ones({1}), zeros({1}), running_mean, running_var, false), {0.0f});
  EXPECT_THROW_WITH(batch_norm(zeros({1, 2}), ones({2}), zeros({2}), zeros({2}), ones({2}), true), "more than one value");
}

TEST(BatchNorm, GradientsMatchFiniteDifferences) {
  const Tensor running_mean = zeros({3}), running_var = ones({3});
  for (bool training : {true, false})
    EXPECT_GRADCHECK([&](const Inputs& x) { return batch_norm(x[0], x[1], x[2], running_mean, running_var, training); },
                     (Inputs{leaf({2, 3, 2, 2}, 44, -2, 2), leaf({3}, 45, 0.5f, 1.5f), leaf({3}, 46)}));
  EXPECT_GRADCHECK([&](const Inputs& x) { return batch_norm(x[0], x[1], x[2], running_mean, running_var, true); },
                   (Inputs{leaf({4, 3}, 47, -2, 2), leaf({3}, 48, 0.5f, 1.5f), leaf({3}, 49)}));
}

// --- dropout --------------------------------------------------------------------------

TEST(Dropout, MaskIsAFunctionOfKeyAndPosition) {
  const Tensor x = ones({10000});
  const RandomKey key{7, 3};
  const std::vector<float> y = dropout(x, 0.3f, true, key).to_vector<float>();
  int zeros_seen = 0;
  for (float v : y) {
    ASSERT_TRUE(v == 0.0f || std::abs(v - 1.0f / 0.7f) < 1e-6f);
    zeros_seen += v == 0.0f;
  }
  EXPECT_NEAR(zeros_seen / 10000.0, 0.3, 0.02);
  EXPECT_EQ(dropout(x, 0.3f, true, key).to_vector<float>(), y);
  EXPECT_NE(dropout(x, 0.3f, true, RandomKey{7, 4}).to_vector<float>(), y);
  // The second half, dropped on its own at offset 5000, draws the same mask: masks do not
  // depend on how a batch is cut into micro-batches.
  const std::vector<float> second_half = dropout(x.narrow(0, 5000, 5000), 0.3f, true, key, 5000).to_vector<float>();
  EXPECT_EQ(second_half, std::vector<float>(y.begin() + 5000, y.end()));
  // Eval mode and p = 0 are the identity.
  EXPECT_EQ(dropout(x, 0.3f, false, key).impl(), x.impl());
  EXPECT_THROW_WITH(dropout(x, 1.0f, true, key), "[0, 1)");
}

TEST(Dropout, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return dropout(x[0], 0.4f, true, RandomKey{1, 2}); }, (Inputs{leaf({4, 5}, 51)}));
}

// --- embedding ------------------------------------------------------------------------

TEST(Embedding, GathersRowsAndScatterAddsGradients) {
  const Tensor weight = from_vector({0, 1, 2, 3, 4, 5}, {3, 2});
  const Tensor indices = from_int_vector({2, 0, 2}, {3});
  expect_values(embedding(weight, indices), {4, 5, 0, 1, 4, 5});
  EXPECT_EQ(embedding(weight, from_int_vector({1, 1, 0, 2}, {2, 2})).shape(), (Shape{2, 2, 2}));
  const Tensor w = weight.clone().set_requires_grad();
  sum(embedding(w, indices)).backward();
  expect_values(w.grad(), {1, 1, 0, 0, 2, 2});  // row 2 was used twice
  EXPECT_THROW_WITH(embedding(weight, from_int_vector({3}, {1})), "index 3", "3 rows");
  EXPECT_GRADCHECK([indices](const Inputs& x) { return embedding(x[0], indices); }, (Inputs{leaf({3, 2}, 52)}));
}

// --- shape ops ------------------------------------------------------------------------

TEST(ShapeOps, ConcatAndSplit) {
  const Tensor joined = concat({kMatrix, from_vector({7, 8}, {2, 1})}, 1);
  EXPECT_EQ(joined.shape(), (Shape{2, 4}));
  expect_values(joined, {1, 2, 3, 7, 4, 5, 6, 8});
  const std::vector<Tensor> parts = split(joined, {1, 3}, 1);
  expect_values(parts[1], {2, 3, 7, 5, 6, 8});
  EXPECT_EQ(chunk(arange(0, 5), 2, 0)[1].shape(), (Shape{2}));
  EXPECT_THROW_WITH(concat({zeros({2, 3}), zeros({3, 3})}, 1), "tensor 1", "[3, 3]", "dim 1");
  EXPECT_THROW_WITH(split(kMatrix, {1, 1}, 1), "add up to 2");
}

TEST(ShapeOps, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return concat({x[0], x[1].transpose(0, 1)}, 0); }, (Inputs{leaf({2, 3}, 61), leaf({3, 1}, 62)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return mul(split(x[0], {1, 2}, 1)[1], split(x[0], {2, 1}, 1)[0]); }, (Inputs{leaf({2, 3}, 63)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return x[0].permute({1, 2, 0}).narrow(0, 1, 2).reshape({2, -1}); }, (Inputs{leaf({2, 3, 2}, 64)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return x[0].unsqueeze(0).expand({3, 1, 2}).squeeze(1); }, (Inputs{leaf({1, 2}, 65)}));
}

// --- convolution and pooling ------------------------------------------------------------

TEST(Convolution, MatchesHandComputedOutputs) {
  const Tensor image = arange(1, 10).reshape({1, 1, 3, 3});
  const Tensor box = ones({1, 1, 2, 2});
  expect_values(conv2d(image, box, Tensor()), {12, 16, 24, 28});
  // Padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1).
  expect_values(conv2d(image, box, from_vector({0.5f}, {1}), 2, 1), {1.5f, 5.5f, 11.5f, 28.5f});
  EXPECT_EQ(conv2d(zeros({2, 3, 7, 5}), zeros({4, 3, 3, 3}), Tensor(), 2, 1).shape(), (Shape{2, 4, 4, 3}));
  EXPECT_THROW_WITH(conv2d(zeros({1, 2, 4, 4}), zeros({1, 3, 3, 3}), Tensor()), "[1, 2, 4, 4]", "[1, 3, 3, 3]", "same C");
  EXPECT_THROW_WITH(conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3}), Tensor()), "does not fit");
}

TEST(Convolution, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return conv2d(x[0], x[1], x[2], 2, 1); },
                   (Inputs{leaf({2, 2, 5, 5}, 71), leaf({3, 2, 3, 3}, 72), leaf({3}, 73)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return conv2d(x[0], x[1], Tensor(), {1, 2}, {0, 1}); },
                   (Inputs{leaf({1, 2, 4, 3}, 74), leaf({2, 2, 2, 2}, 75)}));
  // Stride 1 with out_w == w takes im2col's contiguous-run path, here also with out_h > h; the 20
  // small images go through the GEMM in groups (16, then 4).
  EXPECT_GRADCHECK([](const Inputs& x) { return conv2d(x[0], x[1], x[2], 1, 1); },
                   (Inputs{leaf({20, 1, 4, 4}, 76), leaf({2, 1, 3, 3}, 77), leaf({2}, 78)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return conv2d(x[0], x[1], Tensor(), 1, {2, 1}); },
                   (Inputs{leaf({2, 2, 3, 5}, 79), leaf({2, 2, 3, 3}, 80)}));
  // Padding as wide as the kernel: dX cannot be a stride-1 convolution and goes through col2im.
  EXPECT_GRADCHECK([](const Inputs& x) { return conv2d(x[0], x[1], Tensor(), 1, 1); },
                   (Inputs{leaf({2, 2, 3, 3}, 81), leaf({3, 2, 1, 1}, 82)}));
}

TEST(Pooling, MatchesHandComputedOutputs) {
  const Tensor x = arange(0, 16).reshape({1, 1, 4, 4});
  expect_values(max_pool2d(x, 2, 2), {5, 7, 13, 15});
  expect_values(avg_pool2d(x, 2, 2), {2.5f, 4.5f, 10.5f, 12.5f});
  // Padding counts as zeros in the average: the corner window holds only x[0,0] = 0 of 4.
  expect_values(avg_pool2d(x, 2, 2, 1).narrow(3, 0, 2).narrow(2, 0, 1), {0.0f, (1 + 2) / 4.0f});
  expect_values(max_pool2d(x, 3, 1, 1).narrow(2, 0, 1), {5, 6, 7, 7});
}

TEST(Pooling, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return max_pool2d(x[0], 2, 2); }, (Inputs{leaf_distinct({2, 2, 4, 4}, 81)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return max_pool2d(x[0], 3, 2, 1); }, (Inputs{leaf_distinct({1, 2, 5, 5}, 82)}));
  EXPECT_GRADCHECK([](const Inputs& x) { return avg_pool2d(x[0], 2, 1, 1); }, (Inputs{leaf({1, 2, 3, 4}, 83)}));
}

// --- attention ------------------------------------------------------------------------

TEST(Attention, CausalAttentionMatchesHandComputedCase) {
  // One head, head_dim 1: q = [1, 1], k = [1, 2], v = [10, 20].
  // Position 0 sees key 0 only: 10. Position 1: softmax([1, 2]) . [10, 20] = 17.3105858.
  const Tensor q = from_vector({1, 1}, {1, 1, 2, 1}), k = from_vector({1, 2}, {1, 1, 2, 1});
  const Tensor v = from_vector({10, 20}, {1, 1, 2, 1});
  expect_values(scaled_dot_product_attention(q, k, v), {10.0f, 17.3105858f});
  // The last query alone, with the keys/values of the earlier position: same answer.
  expect_values(scaled_dot_product_attention(q.narrow(2, 1, 1), k, v), {17.3105858f});
  EXPECT_THROW_WITH(scaled_dot_product_attention(zeros({1, 1, 3, 2}), zeros({1, 1, 2, 2}), zeros({1, 1, 2, 2})), "at least as many tokens");
}

TEST(Attention, SlicedQueriesAgreeWithTheFullSequence) {
  Generator g(5);
  const Tensor q = randn({2, 3, 6, 4}, g), k = randn({2, 3, 6, 4}, g), v = randn({2, 3, 6, 4}, g);
  const Tensor full_sequence = scaled_dot_product_attention(q, k, v);
  // Queries 2..5 attend over keys 0..5 (TeraPipe's later slice).
  const Tensor later = scaled_dot_product_attention(q.narrow(2, 2, 4), k, v);
  testing::expect_same_values(later, full_sequence.narrow(2, 2, 4), 1e-5f);
}

TEST(Attention, GradientsMatchFiniteDifferences) {
  EXPECT_GRADCHECK([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
                   (Inputs{leaf({1, 2, 2, 3}, 91), leaf({1, 2, 3, 3}, 92), leaf({1, 2, 3, 3}, 93)}));
  // Masked entries are -inf; softmax turns them into exact zeros that finite differences can read.
  EXPECT_GRADCHECK([](const Inputs& x) { return softmax(causal_mask(x[0], 1)); }, (Inputs{leaf({2, 2, 3}, 94)}));
}

// The fused kernel (FlashAttention's blocks of 64 queries by 64 keys) against the unfused
// ops: several blocks with ragged ends, fewer queries than keys (a diagonal that cuts blocks
// off-centre), an odd head width, and inputs read through strides.
TEST(Attention, FusedMatchesTheUnfusedOps) {
  struct Case {
    int64_t batch, heads, queries, keys, head_dim;
  };
  for (const Case c : {Case{2, 3, 150, 200, 16}, Case{1, 2, 70, 70, 5}, Case{1, 1, 1, 130, 32}}) {
    SCOPED_TRACE("queries " + std::to_string(c.queries) + ", keys " + std::to_string(c.keys));
    Generator g(static_cast<uint64_t>(c.queries));
    // q is a [B, T, H, D] tensor seen as [B, H, T, D], as the QKV projection's heads are.
    const Tensor q_data = randn({c.batch, c.queries, c.heads, c.head_dim}, g);
    const Tensor k_data = randn({c.batch, c.heads, c.keys, c.head_dim}, g);
    const Tensor v_data = randn({c.batch, c.heads, c.keys, c.head_dim}, g);
    const Tensor upstream = randn({c.batch, c.heads, c.queries, c.head_dim}, g);
    std::vector<std::vector<Tensor>> results;
    for (const bool fused : {true, false}) {
      const Tensor q = q_data.clone().set_requires_grad(true), k = k_data.clone().set_requires_grad(true),
                   v = v_data.clone().set_requires_grad(true);
      const Tensor heads = q.permute({0, 2, 1, 3});
      const Tensor out = fused ? scaled_dot_product_attention(heads, k, v)
                               : unfused_scaled_dot_product_attention(heads, k, v);
      std::vector<Tensor> r{out};
      for (const Tensor& gradient : grad({out}, {upstream}, {q, k, v})) r.push_back(gradient);
      results.push_back(r);
    }
    for (size_t i = 0; i < results[0].size(); ++i) {
      SCOPED_TRACE(i == 0 ? "output" : "gradient " + std::to_string(i));
      testing::expect_same_values(results[0][i], results[1][i], 1e-5f, 1e-4f);
    }
  }
}

TEST(Attention, CausalSelfAttentionReadsHeadsFromTheQkvProjection) {
  Generator g(17);
  const int64_t batch = 2, tokens = 70, heads = 4, head_dim = 8, dim = heads * head_dim;
  const Tensor qkv_data = randn({batch, tokens, 3 * dim}, g), upstream = randn({batch, tokens, dim}, g);
  std::vector<Tensor> outputs, gradients;
  for (const bool fused : {true, false}) {
    const Tensor qkv = qkv_data.clone().set_requires_grad(true);
    Tensor out;
    if (fused) {
      out = causal_self_attention(qkv, heads);
    } else {  // what CausalSelfAttention did before: copies of each head in and out
      const Tensor split = qkv.reshape({batch, tokens, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
      const Tensor attended = unfused_scaled_dot_product_attention(
          split.narrow(0, 0, 1).squeeze(0), split.narrow(0, 1, 1).squeeze(0), split.narrow(0, 2, 1).squeeze(0));
      out = attended.permute({0, 2, 1, 3}).reshape({batch, tokens, dim});
    }
    outputs.push_back(out);
    gradients.push_back(grad({out}, {upstream}, {qkv})[0]);
  }
  testing::expect_same_values(outputs[0], outputs[1], 1e-5f, 1e-4f);
  testing::expect_same_values(gradients[0], gradients[1], 1e-5f, 1e-4f);
  EXPECT_THROW_WITH(causal_self_attention(zeros({1, 2, 10}), 4), "3 * heads * head_dim");
}

// The point of fusing: no [queries, keys] matrix, forward or backward. At 512 tokens one such
// matrix is 1 MiB, and the unfused ops keep two (scores and probabilities).
TEST(Attention, FusedAttentionKeepsNoScoresMatrix) {
  Generator g(3);
  const int64_t tokens = 512, head_dim = 16;
  const int64_t matrix_bytes = tokens * tokens * static_cast<int64_t>(sizeof(float));
  const Tensor upstream = randn({1, 1, tokens, head_dim}, g);
  for (const bool fused : {true, false}) {
    const Tensor q = randn({1, 1, tokens, head_dim}, g).set_requires_grad(true);
    const Tensor k = randn({1, 1, tokens, head_dim}, g).set_requires_grad(true);
    const Tensor v = randn({1, 1, tokens, head_dim}, g).set_requires_grad(true);
    const int64_t before = memory_stats(Device::cpu()).current_bytes;
    reset_peak_memory(Device::cpu());
    {
      const Tensor out = fused ? scaled_dot_product_attention(q, k, v) : unfused_scaled_dot_product_attention(q, k, v);
      grad({out}, {upstream}, {q, k, v});
    }
    const int64_t extra = memory_stats(Device::cpu()).peak_bytes - before;
    SCOPED_TRACE(fused ? "fused" : "unfused");
    if (fused) EXPECT_LT(extra, matrix_bytes / 4);
    else EXPECT_GE(extra, 2 * matrix_bytes);  // the measurement sees the matrices it should
  }
}

// Every CPU kernel that spreads its work over kernel threads (kernels/cpu/threads.h) cuts it
// only between outputs that are computed independently, so three threads must give the bits
// that one gives. Each case computes outputs and gradients from fixed inputs; the sizes are
// large enough that every kernel involved does split (above kMinimumParallelWork per thread),
// and the GEMMs small enough to stay on one thread (Eigen's, without AVX-512, may round
// differently when split).
std::vector<Tensor> outputs_and_gradients(const std::function<Tensor(const Inputs&)>& f, const Inputs& inputs) {
  Inputs fresh;
  for (const Tensor& x : inputs) fresh.push_back(x.dtype() == DType::Float32 ? x.clone().set_requires_grad() : x);
  const Tensor y = f(fresh);
  Generator generator(7);
  const Tensor dy = rand(y.shape(), generator, -1.0f, 1.0f);
  std::vector<Tensor> results{y.detach()};
  backward({y}, {dy});
  for (const Tensor& x : fresh)
    if (x.requires_grad()) results.push_back(x.grad());
  return results;
}

void expect_same_bits(const std::vector<Tensor>& one, const std::vector<Tensor>& many, const std::string& name) {
  ASSERT_EQ(one.size(), many.size()) << name;
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].shape(), many[i].shape()) << name << ", result " << i;
    const Tensor a = one[i].contiguous(), b = many[i].contiguous();
    EXPECT_EQ(0, std::memcmp(a.data<float>(), b.data<float>(), static_cast<size_t>(a.numel()) * sizeof(float)))
        << name << ": result " << i << " (0 = output, then the inputs' gradients) differs on 3 kernel threads";
  }
}

TEST(KernelThreads, EveryOpGivesTheSameBitsOnOneAndThreeThreads) {
  const auto uniform = [](const Shape& shape, uint64_t seed) {
    Generator generator(seed);
    return rand(shape, generator, -2.0f, 2.0f);
  };
  Generator index_generator(3);
  Tensor targets = randint(0, 77, {1500}, index_generator);
  for (int64_t r = 0; r < 1500; r += 7) targets.data<int32_t>()[r] = -100;  // ignored rows
  const Tensor tokens = randint(0, 50, {40, 50}, index_generator);
  const Tensor running_mean = zeros({8}), running_var = ones({8});
  struct Case {
    std::string name;
    std::function<Tensor(const Inputs&)> f;
    Inputs inputs;
  };
  const std::vector<Case> cases = {
      {"gelu, tanh, sigmoid, exp, relu",
       [](const Inputs& x) { return add(add(gelu(x[0]), tanh(x[0])), add(sigmoid(x[0]), mul(exp(x[0]), relu(x[0])))); },
       {uniform({64, 33, 65}, 1)}},
      {"broadcast add and mul, 1-d sub and div",
       [](const Inputs& x) { return mul(add(x[0], x[1]), x[2]); }, {uniform({300, 400}, 2), uniform({400}, 3), uniform({300, 1}, 4)}},
      {"1-d sub and div", [](const Inputs& x) { return div(sub(x[0], x[1]), add_scalar(mul(x[1], x[1]), 1.0f)); },
       {uniform({150001}, 5), uniform({150001}, 6)}},
      {"softmax and log_softmax", [](const Inputs& x) { return add(softmax(x[0]), log_softmax(x[0])); },
       {uniform({96, 40, 37}, 7)}},
      {"layer_norm", [](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); },
       {uniform({700, 65}, 8), uniform({65}, 9), uniform({65}, 10)}},
      {"cross_entropy with ignored rows", [&](const Inputs& x) { return cross_entropy(x[0], targets, -100); },
       {uniform({1500, 77}, 11)}},
      {"sums over each dim, and max", [](const Inputs& x) {
         const Tensor middle = add(add(sum(x[0], {1}), max(x[0], {1})), sum(sum(x[0], {0})));  // [300, 3]
         return add(sum(middle, {1}), sum(sum(x[0], {2}), {1}));
       }, {uniform({300, 301, 3}, 12)}},
      {"causal attention", [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
       {uniform({4, 3, 70, 16}, 13), uniform({4, 3, 70, 16}, 14), uniform({4, 3, 70, 16}, 15)}},
      {"dropout", [](const Inputs& x) { return dropout(x[0], 0.3f, true, RandomKey{5, 9}, 11); },
       {uniform({300, 333}, 16)}},
      {"embedding", [&](const Inputs& x) { return embedding(x[0], tokens); }, {uniform({50, 64}, 17)}},
      {"transpose and copy", [](const Inputs& x) { return mul(x[0].transpose(0, 2).contiguous(), x[0].transpose(0, 2)); },
       {uniform({64, 70, 33}, 18)}},
      {"conv2d, batch_norm, max and average pooling", [&](const Inputs& x) {
         const Tensor y = batch_norm(conv2d(x[0], x[1], x[2], 1, 1), x[3], x[4], running_mean.clone(),
                                     running_var.clone(), true);
         return add(max_pool2d(y, 2, 2), avg_pool2d(y, 2, 2));
       }, {uniform({32, 8, 16, 16}, 19), uniform({8, 8, 3, 3}, 20), uniform({8}, 21), uniform({8}, 22), uniform({8}, 23)}},
      // Stride 2 takes col2im for dX; 100 groups of one image and a [16, 936] dW make two rounds
      // of dW products (autograd/convolution.cpp), each with the groups side by side.
      {"strided conv2d with bias", [](const Inputs& x) { return conv2d(x[0], x[1], x[2], 2, 1); },
       {uniform({100, 104, 16, 16}, 24), uniform({16, 104, 3, 3}, 25), uniform({16}, 26)}},
  };
  for (const Case& c : cases) {
    const std::vector<Tensor> one = outputs_and_gradients(c.f, c.inputs);
    kernels::cpu::KernelThreads three(3);
    expect_same_bits(one, outputs_and_gradients(c.f, c.inputs), c.name);
  }
}

TEST(KernelThreads, OptimizerStepsGiveTheSameBitsOnOneAndThreeThreads) {
  Generator generator(31);
  const Tensor param = rand({100003}, generator, -1.0f, 1.0f), grad = rand({100003}, generator, -1.0f, 1.0f);
  const auto three_steps = [&](int threads) {
    kernels::cpu::KernelThreads scope(threads);
    const Tensor adam_param = param.clone(), sgd_param = param.clone();
    const Tensor exp_avg = zeros({100003}), exp_avg_sq = zeros({100003}), momentum = zeros({100003});
    for (int64_t step = 1; step <= 3; ++step) {
      adamw_step_(adam_param, grad, exp_avg, exp_avg_sq, nn::AdamWOptions{}, step);
      sgd_step_(sgd_param, grad, momentum, nn::SgdOptions{.lr = 0.1f, .momentum = 0.9f, .nesterov = true}, step == 1);
    }
    return std::vector<Tensor>{adam_param, exp_avg, exp_avg_sq, sgd_param, momentum};
  };
  expect_same_bits(three_steps(1), three_steps(3), "AdamW and SGD");
}

}  // namespace
}  // namespace minipipe

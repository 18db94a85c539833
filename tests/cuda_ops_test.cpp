// Every op with CUDA kernels, forward and backward, against the CPU implementation (the
// oracle: it is itself checked against finite differences and PyTorch elsewhere), on random
// inputs of awkward sizes: not multiples of 32, size-1 dims, rows longer than a block,
// transposed and narrowed (non-contiguous) views. A few ops also pass gradcheck run on the
// GPU. Without a GPU every test skips, saying why.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/convolution.h"
#include "autograd/elementwise.h"
#include "autograd/embedding.h"
#include "autograd/matmul.h"
#include "autograd/normalization.h"
#include "nn/optim/optimizer.h"
#include "nn/optim/optimizer_steps.h"
#include "autograd/random_ops.h"
#include "autograd/reduction.h"
#include "autograd/shape_ops.h"
#include "autograd/softmax.h"
#include "tensor/factories.h"
#include "gpu_test_support.h"
#include "test_helpers.h"

namespace minipipe {
namespace {

using testing::expect_same_values;
using Inputs = std::vector<Tensor>;
using Function = std::function<Tensor(const Inputs&)>;

using testing::kGpu;
using CudaOps = testing::OnGpu;

// Runs f on CPU leaves and on GPU copies of them; the outputs, and the gradients of
// sum(f(x) * w) for a random w, must agree within atol + rtol |cpu|.
void expect_cuda_matches_cpu(const Function& f, const Inputs& values, float atol = 1e-5f, float rtol = 1e-4f) {
  Inputs on_cpu, on_gpu;
  for (const Tensor& v : values) {
    on_cpu.push_back(v.clone().set_requires_grad(true));
    on_gpu.push_back(v.to(kGpu).detach().set_requires_grad(true));
  }
  const Tensor y_cpu = f(on_cpu), y_gpu = f(on_gpu);
  ASSERT_TRUE(y_gpu.device() == kGpu) << "the op left the GPU: " << y_gpu.device().str();
  expect_same_values(y_gpu.to(Device::cpu()), y_cpu, atol, rtol);
  Generator g(99);
  const Tensor w = randn(y_cpu.shape(), g);
  sum(mul(y_cpu, w)).backward();
  sum(mul(y_gpu, w.to(kGpu))).backward();
  for (size_t i = 0; i < values.size(); ++i) {
    SCOPED_TRACE("gradient of input " + std::to_string(i));
    ASSERT_TRUE(on_gpu[i].grad().defined());
    expect_same_values(on_gpu[i].grad().to(Device::cpu()), on_cpu[i].grad(), atol, rtol);
  }
}

// gradcheck with the op on the GPU: the CPU leaves go to the device and the result comes back
// (to() is differentiable), so the finite differences measure the CUDA kernels.
Function on_gpu(const Function& f) {
  return [f](const Inputs& x) {
    Inputs moved;
    for (const Tensor& t : x) moved.push_back(t.to(kGpu));
    return f(moved).to(Device::cpu());
  };
}

// Values on a grid of 0.5, so that equal values (ties for max and argmax) are common.
Tensor round_to_halves(const Tensor& x) {
  std::vector<float> values = x.to_vector<float>();
  for (float& v : values) v = std::round(v * 2.0f) / 2.0f;
  return from_vector(values, x.shape());
}

Tensor leaf(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return randn(shape, g).set_requires_grad(true);
}

TEST_F(CudaOps, UnaryOpsMatchTheCpu) {
  Generator g(1);
  const Tensor x = randn({37, 5, 3}, g), positive = rand({37, 5, 3}, g, 0.1f, 3.0f);
  for (auto [name, op] : std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>>{
           {"neg", [](const Tensor& t) { return neg(t); }},
           {"scale", [](const Tensor& t) { return scale(t, -1.7f); }},
           {"add_scalar", [](const Tensor& t) { return add_scalar(t, 0.3f); }},
           {"exp", [](const Tensor& t) { return exp(t); }},
           {"relu", [](const Tensor& t) { return relu(t); }},
           {"gelu", [](const Tensor& t) { return gelu(t); }},
           {"tanh", [](const Tensor& t) { return tanh(t); }},
           {"sigmoid", [](const Tensor& t) { return sigmoid(t); }}}) {
    SCOPED_TRACE(name);
    expect_cuda_matches_cpu([op](const Inputs& in) { return op(in[0]); }, {x});
    // A transposed (non-contiguous) input.
    expect_cuda_matches_cpu([op](const Inputs& in) { return op(in[0].transpose(0, 2)); }, {x});
  }
  for (auto [name, op] : std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>>{
           {"log", [](const Tensor& t) { return log(t); }},
           {"sqrt", [](const Tensor& t) { return sqrt(t); }},
           {"pow", [](const Tensor& t) { return pow(t, 1.5f); }}}) {
    SCOPED_TRACE(name);
    expect_cuda_matches_cpu([op](const Inputs& in) { return op(in[0]); }, {positive});
  }
}

TEST_F(CudaOps, BroadcastingArithmeticMatchesTheCpu) {
  Generator g(2);
  const Tensor a = randn({7, 1, 33}, g), b = randn({5, 1}, g), c = randn({7, 5, 33}, g);
  const Tensor away_from_zero = rand({5, 1}, g, 0.5f, 2.0f);
  expect_cuda_matches_cpu([](const Inputs& x) { return add(x[0], x[1]); }, {a, b});
  expect_cuda_matches_cpu([](const Inputs& x) { return sub(x[0], x[1]); }, {c, a});
  expect_cuda_matches_cpu([](const Inputs& x) { return mul(x[0], x[1]); }, {c, c});  // contiguous path
  expect_cuda_matches_cpu([](const Inputs& x) { return div(x[0], x[1]); }, {a, away_from_zero});
  // Narrowed and transposed operands.
  expect_cuda_matches_cpu([](const Inputs& x) { return mul(x[0].narrow(2, 3, 29), x[1].transpose(0, 1)); },
                          {c, randn({29, 5}, g)});
  // Dims the kernel merges: b broadcasts over the inner two dims of d, which merge, as do the
  // outer two; a row-wise bias; a narrowed row against a contiguous one (no merge).
  const Tensor d = randn({3, 4, 5, 6}, g);
  expect_cuda_matches_cpu([](const Inputs& x) { return add(x[0], x[1]); }, {d, randn({3, 4, 1, 1}, g)});
  expect_cuda_matches_cpu([](const Inputs& x) { return mul(x[0], x[1]); }, {d, randn({6}, g)});
  expect_cuda_matches_cpu([](const Inputs& x) { return sub(x[0].narrow(3, 1, 4), x[1]); }, {d, randn({3, 4, 5, 4}, g)});
}

TEST_F(CudaOps, SumsAndMeansMatchTheCpu) {
  Generator g(3);
  const Tensor x = randn({9, 1, 45, 3}, g), long_rows = randn({3, 5000}, g);
  expect_cuda_matches_cpu([](const Inputs& in) { return sum(in[0], {3}); }, {x});         // a row sum
  expect_cuda_matches_cpu([](const Inputs& in) { return sum(in[0], {0, 2}, true); }, {x});  // columns
  expect_cuda_matches_cpu([](const Inputs& in) { return mean(in[0].transpose(0, 2), {1}); }, {x});
  expect_cuda_matches_cpu([](const Inputs& in) { return sum(in[0]); }, {long_rows}, 1e-4f, 1e-4f);
}

TEST_F(CudaOps, SoftmaxFamilyMatchesTheCpu) {
  Generator g(4);
  // One column, a part-filled warp, and rows longer than the 1024 threads of a block.
  for (const Shape& shape : {Shape{6, 1}, Shape{4, 3, 37}, Shape{5, 3001}}) {
    SCOPED_TRACE(shape_str(shape));
    const Tensor x = randn(shape, g, 0.0f, 3.0f);
    expect_cuda_matches_cpu([](const Inputs& in) { return softmax(in[0]); }, {x});
    expect_cuda_matches_cpu([](const Inputs& in) { return log_softmax(in[0]); }, {x});
  }
  expect_cuda_matches_cpu([](const Inputs& in) { return softmax(in[0].transpose(0, 1)); }, {randn({33, 7}, g)});
}

TEST_F(CudaOps, CrossEntropyMatchesTheCpu) {
  Generator g(5);
  for (int64_t classes : {1, 10, 1500}) {
    SCOPED_TRACE(std::to_string(classes) + " classes");
    const Tensor logits = randn({3, 41, classes}, g, 0.0f, 2.0f);
    Tensor targets = randint(0, static_cast<int32_t>(classes), {3, 41}, g);
    targets.data<int32_t>()[5] = -100;  // ignored rows count neither in the loss nor the mean
    targets.data<int32_t>()[77] = -100;
    expect_cuda_matches_cpu(
        [targets](const Inputs& in) { return cross_entropy(in[0], targets.to(in[0].device()), -100); }, {logits});
  }
  Tensor bad = randint(0, 6, {4}, g);
  bad.data<int32_t>()[2] = 6;
  EXPECT_THROW_WITH(cross_entropy(randn({4, 6}, g).to(kGpu), bad.to(kGpu)), "target 6", "position 2");
}

TEST_F(CudaOps, MatmulAndLinearMatchTheCpu) {
  Generator g(6);
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0], x[1]); }, {randn({37, 65}, g), randn({65, 1}, g)},
                          1e-4f, 1e-4f);
  // A batch of rows against one matrix; batched with transposes; alpha.
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0], x[1]); }, {randn({3, 33, 17}, g), randn({17, 9}, g)},
                          1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0].transpose(-1, -2), x[1], 0.125f); },
                          {randn({2, 3, 17, 33}, g), randn({2, 3, 17, 5}, g)}, 1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& x) { return linear(x[0], x[1], x[2]); },
                          {randn({2, 45, 31}, g), randn({50, 31}, g), randn({50}, g)}, 1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& x) { return linear(x[0].narrow(1, 2, 31), x[1], Tensor()); },
                          {randn({45, 40}, g), randn({1, 31}, g)}, 1e-4f, 1e-4f);
  // Empty inner dimension (the product is zeros) and one-row, one-column operands: cuBLAS
  // rejects a leading dimension below 1 even where it reads nothing.
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0], x[1]); }, {randn({3, 0}, g), randn({0, 4}, g)});
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0], x[1]); },
                          {randn({2, 3, 0}, g), randn({0, 4}, g)});
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0], x[1]); },
                          {randn({2, 1, 0}, g), randn({2, 0, 1}, g)});
  expect_cuda_matches_cpu([](const Inputs& x) { return linear(x[0], x[1], x[2]); },
                          {randn({3, 0}, g), randn({2, 0}, g), randn({2}, g)});
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0], x[1]); }, {randn({1, 7}, g), randn({7, 1}, g)},
                          1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& x) { return matmul(x[0].transpose(0, 1), x[1]); },
                          {randn({5, 1}, g), randn({5, 3}, g)}, 1e-4f, 1e-4f);
}

TEST_F(CudaOps, AttentionMatchesTheCpu) {
  Generator g(7);
  // Fewer queries than keys (the mask's offset), a head width that is not a power of two.
  expect_cuda_matches_cpu([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
                          {randn({2, 3, 13, 24}, g), randn({2, 3, 29, 24}, g), randn({2, 3, 29, 24}, g)}, 1e-4f,
                          1e-4f);
  // More keys and queries than a block has threads (128): the online softmax across tiles.
  expect_cuda_matches_cpu([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
                          {randn({1, 1, 150, 4}, g), randn({1, 1, 290, 4}, g), randn({1, 1, 290, 4}, g)}, 1e-4f,
                          1e-4f);
  // Heads read in place from a QKV projection's output, and written back into one gradient.
  expect_cuda_matches_cpu([](const Inputs& x) { return causal_self_attention(x[0], 2); }, {randn({2, 9, 3 * 2 * 8}, g)},
                          1e-4f, 1e-4f);
}

TEST_F(CudaOps, GradcheckRunsOnTheGpu) {
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return gelu(x[0]); }), (Inputs{leaf({3, 7}, 11)}));
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return softmax(x[0]); }), (Inputs{leaf({4, 33}, 12)}));
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }),
                   (Inputs{leaf({1, 2, 2, 3}, 15), leaf({1, 2, 3, 3}, 16), leaf({1, 2, 3, 3}, 17)}));
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return matmul(x[0], x[1].transpose(0, 1)); }),
                   (Inputs{leaf({5, 3}, 13), leaf({4, 3}, 14)}));
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return div(x[0], add_scalar(mul(x[1], x[1]), 1.0f)); }),
                   (Inputs{leaf({2, 5}, 15), leaf({5}, 16)}));
}

TEST_F(CudaOps, MaxAndArgmaxMatchTheCpu) {
  Generator g(8);
  // Rounded values, so that ties are common: both devices must pick the first maximum.
  const Tensor x = round_to_halves(randn({7, 33, 5}, g, 0.0f, 2.0f));
  expect_cuda_matches_cpu([](const Inputs& in) { return max(in[0], {1}); }, {x});
  expect_cuda_matches_cpu([](const Inputs& in) { return max(in[0], {0, 2}, true); }, {x});
  expect_cuda_matches_cpu([](const Inputs& in) { return max(in[0].transpose(0, 1), {2}); }, {x});
  for (int64_t dim : {0, 1, 2}) {
    SCOPED_TRACE("argmax over dim " + std::to_string(dim));
    EXPECT_EQ(argmax(x.to(kGpu), dim).to(Device::cpu()).to_vector<int32_t>(), argmax(x, dim).to_vector<int32_t>());
  }
}

TEST_F(CudaOps, EmbeddingMatchesTheCpu) {
  Generator g(9);
  // 41 x 3 lookups into 50 rows repeat rows, whose gradients must accumulate.
  const Tensor indices = randint(0, 50, {3, 41}, g);
  for (int64_t dim : {1, 37, 300}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    expect_cuda_matches_cpu([indices](const Inputs& in) { return embedding(in[0], indices.to(in[0].device())); },
                            {randn({50, dim}, g)});
  }
  Tensor bad = randint(0, 50, {6}, g);
  bad.data<int32_t>()[4] = 50;
  EXPECT_THROW_WITH(embedding(randn({50, 8}, g).to(kGpu), bad.to(kGpu)), "index 50", "position 4");
}

TEST_F(CudaOps, DropoutDrawsTheCpuMask) {
  Generator g(10);
  // Element offsets and lengths that are not multiples of Philox's 4-word blocks.
  for (int64_t offset : {0, 3, 1001}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    const RandomKey key{1234, 77};
    const Tensor x = randn({13, 7, 3}, g);
    expect_cuda_matches_cpu([key, offset](const Inputs& in) { return dropout(in[0], 0.3f, true, key, offset); }, {x},
                            0.0f, 0.0f);
  }
}

TEST_F(CudaOps, LayerNormMatchesTheCpu) {
  Generator g(11);
  // One column, a part-filled warp, rows longer than a block, more rows than one slab of 64.
  for (const Shape& shape : {Shape{6, 1}, Shape{4, 3, 37}, Shape{5, 3001}, Shape{150, 20}}) {
    SCOPED_TRACE(shape_str(shape));
    const int64_t cols = shape.back();
    expect_cuda_matches_cpu([](const Inputs& in) { return layer_norm(in[0], in[1], in[2]); },
                            {randn(shape, g, 1.0f, 2.0f), randn({cols}, g), randn({cols}, g)}, 1e-4f, 1e-4f);
  }
  expect_cuda_matches_cpu([](const Inputs& in) { return layer_norm(in[0].transpose(0, 1), in[1], in[2]); },
                          {randn({7, 33}, g), randn({7}, g), randn({7}, g)}, 1e-4f, 1e-4f);
}

TEST_F(CudaOps, BatchNormMatchesTheCpu) {
  Generator g(12);
  for (const Shape& shape : {Shape{9, 4}, Shape{7, 5, 3, 11}, Shape{2, 3, 40, 40}}) {
    for (bool training : {true, false}) {
      SCOPED_TRACE(shape_str(shape) + (training ? " training" : " eval"));
      const int64_t channels = shape[1];
      const Tensor running_mean = randn({channels}, g), running_var = rand({channels}, g, 0.5f, 2.0f);
      // Each device's call updates its own copy of the running statistics; they must agree.
      std::vector<Tensor> updated;
      expect_cuda_matches_cpu(
          [&](const Inputs& in) {
            const Tensor mean = running_mean.to(in[0].device()).clone(), var = running_var.to(in[0].device()).clone();
            updated.push_back(mean);
            updated.push_back(var);
            return batch_norm(in[0], in[1], in[2], mean, var, training, 0.1f, 1e-5f);
          },
          {randn(shape, g, 0.5f, 3.0f), randn({channels}, g), randn({channels}, g)}, 1e-4f, 1e-4f);
      ASSERT_EQ(updated.size(), 4u);
      expect_same_values(updated[2].to(Device::cpu()), updated[0], 1e-5f, 1e-4f);
      expect_same_values(updated[3].to(Device::cpu()), updated[1], 1e-5f, 1e-4f);
    }
  }
}

TEST_F(CudaOps, ConvolutionMatchesTheCpu) {
  Generator g(13);
  const Tensor x = randn({3, 5, 9, 11}, g);
  // 3x3 pad 1 (the CPU computes dx as a convolution, the GPU by col2im: two different
  // routes), stride 2 with a 3x2 kernel, 1x1, and a kernel as large as the padded image.
  expect_cuda_matches_cpu([](const Inputs& in) { return conv2d(in[0], in[1], in[2], 1, 1); },
                          {x, randn({7, 5, 3, 3}, g), randn({7}, g)}, 1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& in) { return conv2d(in[0], in[1], Tensor(), {2, 3}, {1, 0}); },
                          {x, randn({4, 5, 3, 2}, g)}, 1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& in) { return conv2d(in[0], in[1], in[2], 2); },
                          {x, randn({6, 5, 1, 1}, g), randn({6}, g)}, 1e-4f, 1e-4f);
  expect_cuda_matches_cpu([](const Inputs& in) { return conv2d(in[0].transpose(2, 3), in[1], Tensor(), 1, 2); },
                          {x, randn({2, 5, 15, 13}, g)}, 1e-4f, 1e-4f);
}

TEST_F(CudaOps, PoolingMatchesTheCpu) {
  Generator g(14);
  const Tensor x = round_to_halves(randn({2, 3, 9, 11}, g, 0.0f, 2.0f));  // ties within windows
  expect_cuda_matches_cpu([](const Inputs& in) { return max_pool2d(in[0], 2, 2); }, {x});
  expect_cuda_matches_cpu([](const Inputs& in) { return max_pool2d(in[0], 3, {2, 1}, 1); }, {x});  // overlapping
  expect_cuda_matches_cpu([](const Inputs& in) { return avg_pool2d(in[0], 2, 2); }, {x});
  expect_cuda_matches_cpu([](const Inputs& in) { return avg_pool2d(in[0], {3, 2}, 1, 1); }, {x});
}

TEST_F(CudaOps, ConcatAndSplitMatchTheCpu) {
  Generator g(15);
  expect_cuda_matches_cpu([](const Inputs& in) { return concat({in[0], in[1].transpose(0, 1), in[2]}, 1); },
                          {randn({4, 3, 5}, g), randn({1, 4, 5}, g), randn({4, 7, 5}, g)});
  expect_cuda_matches_cpu(
      [](const Inputs& in) {
        const std::vector<Tensor> parts = split(in[0], {2, 1, 4}, 2);
        return add(mul(parts[0], parts[0]), parts[2].narrow(2, 1, 2));
      },
      {randn({3, 5, 7}, g)});
}

TEST_F(CudaOps, OptimizerStepsMatchTheCpu) {
  Generator g(16);
  const Tensor start = randn({1027}, g);
  const std::vector<Tensor> grads{randn({1027}, g), randn({1027}, g), randn({1027}, g)};
  const std::vector<float> scales{1.0f, 0.37f, 2.5f};  // gradient clipping's factor, folded into the step
  const nn::SgdOptions sgd{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .nesterov = true};
  const nn::AdamWOptions adamw{.lr = 0.01f, .weight_decay = 0.1f};
  std::vector<Tensor> sgd_params, adamw_params;
  for (const Device& device : {Device::cpu(), kGpu}) {
    const Tensor p = start.to(device).clone(), buffer = zeros({1027}, DType::Float32, device);
    const Tensor q = start.to(device).clone(), m = zeros({1027}, DType::Float32, device),
                 v = zeros({1027}, DType::Float32, device);
    for (size_t step = 0; step < grads.size(); ++step) {
      sgd_step_(p, grads[step].to(device), buffer, sgd, step == 0, scales[step]);
      adamw_step_(q, grads[step].to(device), m, v, adamw, static_cast<int64_t>(step) + 1, scales[step]);
    }
    sgd_params.push_back(p.to(Device::cpu()));
    adamw_params.push_back(q.to(Device::cpu()));
  }
  expect_same_values(sgd_params[1], sgd_params[0], 1e-6f, 1e-5f);
  expect_same_values(adamw_params[1], adamw_params[0], 1e-6f, 1e-5f);
}

TEST_F(CudaOps, GradientClippingMatchesTheCpu) {
  Generator g(17);
  const Tensor grad = randn({2500}, g);  // two runs of 1024 and a ragged one
  std::vector<float> norms;
  std::vector<Tensor> clipped;
  for (const Device& device : {Device::cpu(), kGpu}) {
    const Tensor p = zeros({2500}, DType::Float32, device).set_requires_grad();
    p.set_grad(grad.to(device));
    norms.push_back(nn::clip_grad_norm({p}, 1.0f));
    clipped.push_back(p.grad().to(Device::cpu()));
  }
  EXPECT_NEAR(norms[1], norms[0], 1e-5f * norms[0]);
  expect_same_values(clipped[1], clipped[0], 1e-6f, 1e-5f);
}

TEST_F(CudaOps, GradcheckRunsOnTheGpuThroughNormalizationAndConvolution) {
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); }),
                   (Inputs{leaf({3, 7}, 21), leaf({7}, 22), leaf({7}, 23)}));
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return conv2d(x[0], x[1], x[2], 2, 1); }),
                   (Inputs{leaf({2, 2, 5, 4}, 24), leaf({3, 2, 3, 3}, 25), leaf({3}, 26)}));
  EXPECT_GRADCHECK(on_gpu([](const Inputs& x) { return avg_pool2d(x[0], 2, 1); }), (Inputs{leaf({1, 2, 4, 5}, 27)}));
}

}  // namespace
}  // namespace minipipe

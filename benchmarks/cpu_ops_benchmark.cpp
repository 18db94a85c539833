// CPU op benchmark: per op and size, the median time of several repeats and the achieved
// GB/s (memory-bound ops) or GFLOP/s (GEMM, convolution). Memory-bound rows count the bytes
// the op must read and write at least (not the cache lines a store first reads), and print
// their rate as a fraction of `add`'s, timed in turn with each row: the yardstick for "at
// memory speed" (the goal is at least half). The GEMM rows also time the same
// product through Eigen directly, interleaved with ours in the same run, and print the
// ratio: on AVX-512 minipipe uses its own packed GEMM (kernels/cpu/gemm.cpp), elsewhere Eigen.
// With --threads N (kernel threads, kernels/cpu/threads.h) every row compares with minipipe
// on one thread instead, interleaved in the same run: how each kernel scales with threads.
//
//   cpu_ops_benchmark [--repeats N] [--threads N] [--quick] [--json FILE] [--filter TEXT]
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <functional>
#include <string>
#include <vector>

#include "autograd/convolution.h"
#include "autograd/elementwise.h"
#include "autograd/matmul.h"
#include "autograd/node.h"
#include "autograd/normalization.h"
#include "autograd/reduction.h"
#include "autograd/softmax.h"
#include "benchmark_stats.h"
#include "kernels/cpu/optimizer.h"
#include "kernels/cpu/threads.h"
#include "tensor/factories.h"

using namespace minipipe;
using minipipe::benchmarks::dims;
using minipipe::benchmarks::time_interleaved;
using minipipe::benchmarks::write_json_array;

namespace {

struct Row {
  std::string op, size;
  double median_ms;
  double value;       // GB/s or GFLOP/s
  std::string unit;
  double reference_ms = 0;  // Eigen directly, or minipipe on one thread, where measured
  double of_add = 0;        // GB/s as a fraction of add's, for memory-bound rows
};

// Times `ours` (and `reference`, interleaved) `repeats` times after one warm-up each.
std::pair<double, double> time_pair(int repeats, const std::function<void()>& ours,
                                    const std::function<void()>& reference = nullptr) {
  const std::vector<double> medians = time_interleaved(repeats, {ours, reference});
  return {medians[0], medians[1]};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minipipe CPU op benchmark"};
  int repeats = 7, threads = 1;
  bool quick = false;
  std::string json_path, filter;
  app.add_option("--repeats", repeats, "timed repeats per op (the median is reported)")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "kernel threads (every row then compares with 1 thread)")
      ->check(CLI::Range(1, kernels::cpu::kMaxKernelThreads))
      ->capture_default_str();
  app.add_flag("--quick", quick, "small sizes only (a smoke run)");
  app.add_option("--json", json_path, "also write the rows as JSON to this file");
  app.add_option("--filter", filter, "only ops whose name contains this text");
  CLI11_PARSE(app, argc, argv);

  NoGradGuard no_grad;
  kernels::cpu::KernelThreads kernel_threads(threads);
  const std::string reference_name = threads == 1 ? "Eigen" : "1 thread";
  // With --threads, every row's reference: `f` on one kernel thread (none without --threads).
  const auto on_one_thread = [threads](const std::function<void()>& f) -> std::function<void()> {
    if (threads == 1) return nullptr;
    return [f] {
      kernels::cpu::KernelThreads one(1);
      f();
    };
  };
  Generator g(0);
  std::vector<Row> rows;
  auto wanted = [&](const std::string& op) { return filter.empty() || op.find(filter) != std::string::npos; };
  // The yardstick of memory speed, timed in turn with every memory-bound row: `add` on 4M floats.
  const int64_t big = quick ? 1 << 16 : 1 << 22;
  const Tensor add_x = randn({big}, g), add_y = randn({big}, g);
  const double add_bytes = 3.0 * big * 4;
  const std::function<void()> add_yardstick = [&] { add(add_x, add_y); };
  auto memory_row = [&](const std::string& op, const Shape& shape, double bytes, const std::function<void()>& f) {
    if (!wanted(op)) return;
    const std::vector<double> t = time_interleaved(repeats, {f, add_yardstick, on_one_thread(f)});
    const double rate = bytes / t[0] / 1e9;
    rows.push_back({op, dims(shape), t[0] * 1e3, rate, "GB/s", t[2] * 1e3, rate / (add_bytes / t[1] / 1e9)});
  };

  // Square products, then the skinny ones of the small GPT that compare_training.py runs
  // (2048 tokens of width 128, an MLP 4x wider, 128x128 attention per head of width 32).
  struct GemmShape {
    int64_t m, n, k;
  };
  const std::vector<GemmShape> gemm_shapes =
      quick ? std::vector<GemmShape>{{128, 128, 128}}
            : std::vector<GemmShape>{{256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024},
                                     {2048, 512, 128}, {2048, 128, 512}, {128, 128, 32}};
  for (const auto [m, n, k] : gemm_shapes) {
    if (!wanted("matmul")) break;
    const Tensor a = randn({m, k}, g), b = randn({k, n}, g);
    using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const RowMajor ea = Eigen::Map<const RowMajor>(a.data<float>(), m, k), eb = Eigen::Map<const RowMajor>(b.data<float>(), k, n);
    RowMajor ec(m, n);
    Tensor c;
    const std::function<void()> product = [&] { c = matmul(a, b); };
    const auto [ours, reference] = time_pair(
        repeats, product, threads == 1 ? std::function<void()>([&] { ec.noalias() = ea * eb; }) : on_one_thread(product));
    const double flops = 2.0 * m * n * k;
    rows.push_back({"matmul", dims({m, n, k}), ours * 1e3, flops / ours / 1e9, "GFLOP/s", reference * 1e3});
  }

  // The elementwise ops on 4M floats; the row ops on 4096 rows of 768 (a GPT-2 small
  // width); cross-entropy on 8192 rows of 256 classes. "backward" rows time the op's own
  // backward function (its graph node), without the engine's copy into a leaf's .grad.
  const int64_t rows_n = quick ? 64 : 4096, cols = 768;
  const auto backward_row = [&](const std::string& op, const Shape& shape, double bytes, const Tensor& input,
                                const std::function<Tensor(const Tensor&)>& f) {
    if (!wanted(op)) return;
    GradModeGuard grad(true);
    const Tensor y = f(input);
    const Tensor dy = ones(y.shape());
    const std::shared_ptr<Node> node = y.grad_fn();
    memory_row(op, shape, bytes, [&] { node->apply(dy); });
  };
  {
    const Tensor x = randn({big}, g), y = randn({big}, g);
    memory_row("add", {big}, 3.0 * big * 4, [&] { add(x, y); });
    memory_row("copy", {big}, 2.0 * big * 4, [&] { x.clone(); });
    memory_row("exp", {big}, 2.0 * big * 4, [&] { exp(x); });
    memory_row("sum", {big}, 1.0 * big * 4, [&] { sum(x); });
    memory_row("gelu", {big}, 2.0 * big * 4, [&] { gelu(x); });
    const Tensor leaf = x.detach().set_requires_grad();
    backward_row("gelu backward", {big}, 3.0 * big * 4, leaf, [](const Tensor& t) { return gelu(t); });
    // An optimizer step over 4M parameters: reads the parameter, gradient and both moments,
    // writes the parameter and the moments.
    const Tensor param = x.clone(), moment = zeros({big}), square = zeros({big});
    memory_row("adamw update", {big}, 7.0 * big * 4, [&] {
      kernels::cpu::adamw_update(param.data<float>(), y.data<float>(), 1.0f, moment.data<float>(), square.data<float>(), big,
                                 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 10);
    });
  }
  {
    const Tensor x = randn({rows_n, cols}, g), bias = randn({cols}, g), gamma = ones({cols}), beta = zeros({cols});
    const double n = static_cast<double>(rows_n * cols);
    memory_row("add (bias broadcast)", {rows_n, cols}, 2.0 * n * 4, [&] { add(x, bias); });
    memory_row("softmax", {rows_n, cols}, 2.0 * n * 4, [&] { softmax(x); });
    memory_row("layer_norm", {rows_n, cols}, 2.0 * n * 4, [&] { layer_norm(x, gamma, beta); });
    memory_row("transpose+contiguous", {rows_n, cols}, 2.0 * n * 4, [&] { x.transpose(0, 1).contiguous(); });
    const Tensor leaf = x.detach().set_requires_grad();
    // softmax: reads y and dy, writes dx; layer norm: reads x and dy, writes dx (on several
    // kernel threads it reads x and dy twice: dx by rows, then dgamma and dbeta by columns).
    backward_row("softmax backward", {rows_n, cols}, 3.0 * n * 4, leaf, [](const Tensor& t) { return softmax(t); });
    backward_row("layer_norm backward", {rows_n, cols}, (threads == 1 ? 3.0 : 5.0) * n * 4, leaf,
                 [&](const Tensor& t) { return layer_norm(t, gamma, beta); });
  }
  {
    // Attention's heads: [batch, tokens, heads, head width] to [batch, heads, tokens, width].
    const Shape heads = quick ? Shape{2, 16, 4, 32} : Shape{16, 128, 12, 64};
    const Tensor x = randn(heads, g);
    memory_row("permute heads+contiguous", heads, 2.0 * shape_numel(heads) * 4,
               [&] { x.permute({0, 2, 1, 3}).contiguous(); });
  }
  {
    const int64_t rows_ce = quick ? 64 : 8192, classes = 256;
    const double n = static_cast<double>(rows_ce * classes);
    const Tensor logits = randn({rows_ce, classes}, g), targets = randint(0, classes, {rows_ce}, g);
    // Inference reads the logits once; training's forward also writes the softmax, which its
    // backward reads to write the gradient: four passes, two of them with exps.
    memory_row("cross_entropy", {rows_ce, classes}, 1.0 * n * 4, [&] { cross_entropy(logits, targets); });
    if (wanted("cross_entropy training")) {
      GradModeGuard grad(true);
      const Tensor leaf = logits.detach().set_requires_grad();
      const Tensor one = ones({});
      memory_row("cross_entropy training", {rows_ce, classes}, 4.0 * n * 4,
                 [&] { cross_entropy(leaf, targets).grad_fn()->apply(one); });
    }
  }
  if (wanted("conv2d")) {
    const int64_t n = quick ? 2 : 32, c = 16, h = 32, o = 32;
    const Tensor x = randn({n, c, h, h}, g), w = randn({o, c, 3, 3}, g), b = zeros({o});
    const std::function<void()> convolution = [&] { conv2d(x, w, b, 1, 1); };
    const auto [t, reference] = time_pair(repeats, convolution, on_one_thread(convolution));
    const double flops = 2.0 * n * o * h * h * c * 9;
    rows.push_back({"conv2d 3x3 pad 1", dims({n, c, h, h}) + "->" + std::to_string(o), t * 1e3, flops / t / 1e9,
                    "GFLOP/s", reference * 1e3});
  }

  std::printf("%d kernel thread%s\n", threads, threads == 1 ? "" : "s");
  std::printf("%-26s %-18s %10s %10s %-8s %7s  vs %s\n", "op", "size", "median ms", "rate", "unit", "of add",
              threads == 1 ? "Eigen directly" : "minipipe on 1 thread");
  for (const Row& r : rows) {
    std::printf("%-26s %-18s %10.3f %10.2f %-8s", r.op.c_str(), r.size.c_str(), r.median_ms, r.value, r.unit.c_str());
    if (r.of_add > 0)
      std::printf(" %7.2f", r.of_add);
    else
      std::printf(" %7s", "");
    if (r.reference_ms > 0)
      std::printf(" %s %.3f ms, throughput ratio %.3f", reference_name.c_str(), r.reference_ms,
                  r.reference_ms / r.median_ms);
    std::printf("\n");
  }
  if (!json_path.empty()) {
    std::vector<std::string> objects;
    for (const Row& r : rows) {
      std::ostringstream o;
      o << "{\"op\": \"" << r.op << "\", \"size\": \"" << r.size << "\", \"threads\": " << threads
        << ", \"median_ms\": " << r.median_ms << ", \"value\": " << r.value << ", \"unit\": \"" << r.unit << "\"";
      if (r.of_add > 0) o << ", \"of_add\": " << r.of_add;
      if (r.reference_ms > 0)
        o << ", \"reference\": \"" << reference_name << "\", \"reference_median_ms\": " << r.reference_ms
          << ", \"throughput_ratio\": " << r.reference_ms / r.median_ms;
      o << "}";
      objects.push_back(o.str());
    }
    if (!write_json_array(json_path, objects)) return 1;
  }
  return 0;
}

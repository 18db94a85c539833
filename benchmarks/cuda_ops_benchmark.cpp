// CUDA op benchmark: per op and size, the median time of several repeats (CUDA events on the
// current stream), the achieved GB/s (memory-bound ops) or TFLOP/s (GEMM, convolution), and
// the fraction of a reference measured in the same run: for memory-bound ops the device's copy
// bandwidth (a contiguous clone of the same tensor), for GEMM a direct cuBLAS call on the same
// operands, for convolution a direct cuBLAS call of its im2col GEMM alone (so the fraction
// shows what im2col and the layout copies cost). Targets (the CUDA backend issue): >= 70% of
// copy bandwidth on large tensors, GEMM within 5% of cuBLAS.
//
//   cuda_ops_benchmark [--repeats N] [--quick] [--json FILE] [--filter TEXT] [--device I]
#include <CLI/CLI.hpp>
#include <cublas_v2.h>

#include <algorithm>
#include <array>
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
#include "nn/optim/optimizer_steps.h"
#include "autograd/reduction.h"
#include "autograd/softmax.h"
#include "kernels/cuda/runtime.h"
#include "kernels/cuda/softmax.h"
#include "benchmark_stats.h"
#include "tensor/factories.h"

using namespace minipipe;
using minipipe::benchmarks::dims;
using minipipe::benchmarks::median;
using minipipe::benchmarks::write_json_array;
namespace cuda = minipipe::kernels::cuda;

namespace {

struct Row {
  std::string op, size;
  double median_ms;
  double value;  // GB/s or TFLOP/s
  std::string unit;
  double reference_value;  // copy GB/s, or cuBLAS TFLOP/s
  std::string reference;
};

// Median milliseconds of f over `repeats` runs, each bracketed by events on the current
// stream (so the figure is GPU time, not launch overhead), after two warm-up runs.
double median_ms(int repeats, const std::function<void()>& f) {
  f();
  f();
  std::vector<double> times;
  cuda::Event start, end;
  for (int i = 0; i < repeats; ++i) {
    start.record(cuda::current_stream());
    f();
    end.record(cuda::current_stream());
    end.synchronize();
    times.push_back(cuda::Event::elapsed_ms(start, end));
  }
  return median(times);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minipipe CUDA op benchmark"};
  int repeats = 20, device = 0;
  bool quick = false;
  std::string json_path, filter;
  app.add_option("--repeats", repeats, "timed repeats per op (the median is reported)")->check(CLI::PositiveNumber);
  app.add_flag("--quick", quick, "small sizes only (a smoke run)");
  app.add_option("--json", json_path, "also write the rows as JSON to this file");
  app.add_option("--filter", filter, "only ops whose name contains this text");
  app.add_option("--device", device, "GPU index")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  std::string why_not;
  if (cuda::device_count(&why_not) == 0) {
    std::fprintf(stderr, "cuda_ops_benchmark: no GPU here (%s)\n", why_not.c_str());
    return 77;  // "skipped", in Meson's and Automake's convention
  }
  cuda::check_device(device);
  const Device gpu = Device::cuda(device);
  const cuda::DeviceGuard on_device(device);
  std::printf("%s\n", cuda::describe_device(device).c_str());

  NoGradGuard no_grad;
  Generator g(0);
  std::vector<Row> rows;
  auto wanted = [&](const std::string& op) { return filter.empty() || op.find(filter) != std::string::npos; };

  // Memory-bound ops on [rows, cols]: bytes moved, against a clone (read + write) of x.
  const std::vector<Shape> shapes = quick ? std::vector<Shape>{{64, 1000}}
                                          : std::vector<Shape>{{4096, 1024}, {16384, 4096}, {65536, 4096}};
  for (const Shape& shape : shapes) {
    const Tensor x = randn(shape, g).to(gpu), y = randn(shape, g).to(gpu), bias = randn({shape[1]}, g).to(gpu);
    const Tensor gamma = randn({shape[1]}, g).to(gpu), m = zeros(shape, DType::Float32, gpu),
                 v = zeros(shape, DType::Float32, gpu);
    const int64_t n = x.numel(), classes = shape[1];
    const Tensor targets = randint(0, static_cast<int32_t>(classes), {shape[0]}, g).to(gpu);
    const Tensor row_loss = empty({shape[0]}, DType::Float32, gpu);
    const double copy_ms = median_ms(repeats, [&] { x.clone(); });
    const double copy_gbs = 2.0 * n * 4 / (copy_ms * 1e-3) / 1e9;
    auto memory_row = [&](const std::string& op, double bytes, const std::function<void()>& f) {
      if (!wanted(op)) return;
      const double ms = median_ms(repeats, f);
      rows.push_back({op, dims(shape), ms, bytes / (ms * 1e-3) / 1e9, "GB/s", copy_gbs, "copy"});
    };
    memory_row("copy", 2.0 * n * 4, [&] { x.clone(); });
    memory_row("add", 3.0 * n * 4, [&] { add(x, y); });
    memory_row("add (bias broadcast)", 2.0 * n * 4, [&] { add(x, bias); });
    memory_row("gelu", 2.0 * n * 4, [&] { gelu(x); });
    memory_row("softmax", 2.0 * n * 4, [&] { softmax(x); });
    memory_row("sum (rows)", 1.0 * n * 4, [&] { sum(x, {1}); });
    // The op checks its targets on the host (a clear exception for a bad label), so the stream
    // waits for that copy and then idles while the host checks and launches: the "op" row.
    // The kernel's own rate, which the target is about, is the "kernel" row (the
    // inference form: no probabilities written for a backward pass).
    memory_row("cross_entropy (op)", 1.0 * n * 4, [&] { cross_entropy(x, targets); });
    memory_row("cross_entropy (kernel)", 1.0 * n * 4, [&] {
      cuda::cross_entropy_forward(x.data<float>(), targets.data<int32_t>(), row_loss.data<float>(),
                                  nullptr, shape[0], classes, -100, cuda::current_stream());
    });
    memory_row("layer_norm", 2.0 * n * 4, [&] { layer_norm(x, gamma, bias); });
    // Reads parameter, gradient and both moments; writes parameter and moments.
    memory_row("adamw step", 7.0 * n * 4, [&] { adamw_step_(x, y, m, v, {}, 1); });
  }

  // GEMM against cuBLAS called directly on the same operands (row-major C = A B).
  cublasHandle_t handle = nullptr;
  cublasCreate(&handle);
  cublasSetStream(handle, cuda::current_stream());
  const std::vector<int64_t> gemm_sizes = quick ? std::vector<int64_t>{128} : std::vector<int64_t>{1024, 2048, 4096};
  for (int64_t n : gemm_sizes) {
    if (!wanted("matmul")) break;
    const Tensor a = randn({n, n}, g).to(gpu), b = randn({n, n}, g).to(gpu);
    Tensor c = empty({n, n}, DType::Float32, gpu);
    const float alpha = 1.0f, beta = 0.0f;
    const int size = static_cast<int>(n);
    const double ours = median_ms(repeats, [&] { matmul(a, b); });
    const double direct = median_ms(repeats, [&] {
      cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, size, size, size, &alpha, b.data<float>(), size,
                  a.data<float>(), size, &beta, c.data<float>(), size);
    });
    const double flops = 2.0 * n * n * n;
    rows.push_back({"matmul", dims({n, n, n}), ours, flops / (ours * 1e-3) / 1e12, "TFLOP/s",
                    flops / (direct * 1e-3) / 1e12, "cuBLAS"});
  }
  // Attention's batched GEMM (batch x heads matrices of [T, d] @ [d, T]) against one
  // cublasSgemmStridedBatched call.
  for (const auto& [batch, tokens, head_dim] : quick ? std::vector<std::array<int64_t, 3>>{{4, 64, 16}}
                                                      : std::vector<std::array<int64_t, 3>>{{96, 512, 64}, {48, 1024, 128}}) {
    if (!wanted("matmul (batched)")) break;
    const Tensor q = randn({batch, tokens, head_dim}, g).to(gpu), k = randn({batch, head_dim, tokens}, g).to(gpu);
    Tensor scores = empty({batch, tokens, tokens}, DType::Float32, gpu);
    const float alpha = 1.0f, beta = 0.0f;
    const int t = static_cast<int>(tokens), d = static_cast<int>(head_dim);
    const double ours = median_ms(repeats, [&] { matmul(q, k); });
    const double direct = median_ms(repeats, [&] {
      cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, t, t, d, &alpha, k.data<float>(), t,
                                int64_t{d} * t, q.data<float>(), d, int64_t{t} * d, &beta, scores.data<float>(), t,
                                int64_t{t} * t, static_cast<int>(batch));
    });
    const double flops = 2.0 * batch * tokens * tokens * head_dim;
    rows.push_back({"matmul (batched)", dims({batch, tokens, head_dim, tokens}), ours, flops / (ours * 1e-3) / 1e12,
                    "TFLOP/s", flops / (direct * 1e-3) / 1e12, "cuBLAS"});
  }

  // conv2d, 3x3 with padding 1, NCHW [n, c, s, s] with c output channels.
  for (const auto& [n, c, side] : quick ? std::vector<std::array<int64_t, 3>>{{2, 8, 12}}
                                         : std::vector<std::array<int64_t, 3>>{{64, 64, 56}, {64, 256, 14}}) {
    if (!wanted("conv2d")) break;
    const Tensor x = randn({n, c, side, side}, g).to(gpu), w = randn({c, c, 3, 3}, g).to(gpu);
    const int64_t patch = c * 9, width = n * side * side;
    const Tensor columns = randn({patch, width}, g).to(gpu);
    Tensor out = empty({c, width}, DType::Float32, gpu);
    const float alpha = 1.0f, beta = 0.0f;
    const double ours = median_ms(repeats, [&] { conv2d(x, w, Tensor(), 1, 1); });
    const double direct = median_ms(repeats, [&] {
      cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(width), static_cast<int>(c),
                  static_cast<int>(patch), &alpha, columns.data<float>(), static_cast<int>(width), w.data<float>(),
                  static_cast<int>(patch), &beta, out.data<float>(), static_cast<int>(width));
    });
    const double flops = 2.0 * c * width * patch;
    rows.push_back({"conv2d 3x3", dims({n, c, side, side}), ours, flops / (ours * 1e-3) / 1e12, "TFLOP/s",
                    flops / (direct * 1e-3) / 1e12, "GEMM"});
  }
  cublasDestroy(handle);

  std::printf("%-22s %-18s %10s %10s %-8s %12s %s\n", "op", "size", "median ms", "rate", "unit", "reference",
              "fraction");
  for (const Row& r : rows)
    std::printf("%-22s %-18s %10.4f %10.2f %-8s %6s %5.1f %5.0f%%\n", r.op.c_str(), r.size.c_str(), r.median_ms,
                r.value, r.unit.c_str(), r.reference.c_str(), r.reference_value, 100.0 * r.value / r.reference_value);
  if (!json_path.empty()) {
    std::vector<std::string> objects;
    for (const Row& r : rows) {
      std::ostringstream o;
      o << "{\"op\": \"" << r.op << "\", \"size\": \"" << r.size << "\", \"median_ms\": " << r.median_ms
        << ", \"value\": " << r.value << ", \"unit\": \"" << r.unit << "\", \"reference\": \"" << r.reference
        << "\", \"reference_value\": " << r.reference_value << ", \"fraction\": " << r.value / r.reference_value << "}";
      objects.push_back(o.str());
    }
    if (!write_json_array(json_path, objects)) return 1;
  }
  return 0;
}

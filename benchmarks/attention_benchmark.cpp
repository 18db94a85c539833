// Fused causal attention (FlashAttention's algorithm, autograd/attention.h) against the same
// attention from unfused ops (matmul, causal mask, softmax, matmul), per sequence length:
// the median time of the forward pass and of forward plus backward, timed in turn, and the
// memory each holds: what the forward keeps for the backward, and the peak of forward and
// backward together, both above the inputs. The unfused path keeps two [T, T] matrices per
// head, so its memory grows with T^2; the fused path keeps one float per query row.
//
//   attention_benchmark [--tokens 128,512,2048] [--batch 1] [--heads 8] [--head-dim 64]
//                       [--repeats 5] [--threads 1] [--json FILE]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/engine.h"
#include "autograd/node.h"
#include "benchmark_stats.h"
#include "kernels/cpu/threads.h"
#include "tensor/allocator.h"
#include "tensor/factories.h"
#include "tensor/random.h"

using namespace minipipe;

namespace {

using Attention = Tensor (*)(const Tensor&, const Tensor&, const Tensor&);

struct Inputs {
  Tensor q, k, v, upstream;
};

struct Memory {
  double kept_mib, peak_mib;  // above the inputs
};

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

Memory measure_memory(Attention attention, const Inputs& in) {
  const Device cpu = Device::cpu();
  const int64_t before = memory_stats(cpu).current_bytes;
  reset_peak_memory(cpu);
  Memory m{};
  {
    const Tensor out = attention(in.q, in.k, in.v);
    m.kept_mib = mib(memory_stats(cpu).current_bytes - before - out.numel() * int64_t{sizeof(float)});
    grad({out}, {in.upstream}, {in.q, in.k, in.v});
  }
  m.peak_mib = mib(memory_stats(cpu).peak_bytes - before);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minipipe fused causal attention against the unfused ops: time and memory per sequence length"};
  std::vector<int64_t> token_counts{128, 512, 2048};
  int64_t batch = 1, heads = 8, head_dim = 64;
  int repeats = 5, threads = 1;
  std::string json_path;
  app.add_option("--tokens", token_counts, "sequence lengths, comma-separated")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "sequences")->check(CLI::PositiveNumber);
  app.add_option("--heads", heads, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--head-dim", head_dim, "width of one head")->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "timed repeats (the median is reported)")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "kernel threads")->check(CLI::Range(1, kernels::cpu::kMaxKernelThreads));
  app.add_option("--json", json_path, "also write the rows as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  const kernels::cpu::KernelThreads kernel_threads(threads);

  std::printf("causal attention, batch %lld, %lld heads of %lld, %d kernel thread(s), median of %d\n",
              static_cast<long long>(batch), static_cast<long long>(heads), static_cast<long long>(head_dim), threads,
              repeats);
  std::printf("%-7s %-8s %12s %14s %10s %12s %12s\n", "tokens", "path", "forward ms", "fwd+bwd ms", "speedup",
              "kept MiB", "peak MiB");
  std::vector<std::string> objects;
  for (const int64_t tokens : token_counts) {
    Generator g(static_cast<uint64_t>(tokens));
    const Shape shape{batch, heads, tokens, head_dim};
    const Inputs in{randn(shape, g).set_requires_grad(true), randn(shape, g).set_requires_grad(true),
                    randn(shape, g).set_requires_grad(true), randn(shape, g)};
    const Attention paths[] = {scaled_dot_product_attention, unfused_scaled_dot_product_attention};
    const char* names[] = {"fused", "unfused"};
    std::vector<std::function<void()>> forwards, trainings;
    for (const Attention attention : paths) {
      forwards.push_back([&in, attention] {
        const NoGradGuard inference;
        attention(in.q, in.k, in.v);
      });
      trainings.push_back([&in, attention] { grad({attention(in.q, in.k, in.v)}, {in.upstream}, {in.q, in.k, in.v}); });
    }
    const std::vector<double> forward_s = benchmarks::time_interleaved(repeats, forwards);
    const std::vector<double> training_s = benchmarks::time_interleaved(repeats, trainings);
    for (int p = 0; p < 2; ++p) {
      const Memory m = measure_memory(paths[p], in);
      const double speedup = training_s[1] / training_s[p];  // unfused time over this path's
      std::printf("%-7lld %-8s %12.3f %14.3f %9.2fx %12.2f %12.2f\n", static_cast<long long>(tokens), names[p],
                  forward_s[p] * 1e3, training_s[p] * 1e3, speedup, m.kept_mib, m.peak_mib);
      std::ostringstream json;
      json << "{\"tokens\": " << tokens << ", \"path\": \"" << names[p] << "\", \"batch\": " << batch
           << ", \"heads\": " << heads << ", \"head_dim\": " << head_dim << ", \"threads\": " << threads
           << ", \"forward_ms\": " << forward_s[p] * 1e3 << ", \"forward_backward_ms\": " << training_s[p] * 1e3
           << ", \"forward_speedup\": " << forward_s[1] / forward_s[p] << ", \"forward_backward_speedup\": " << speedup
           << ", \"kept_mib\": " << m.kept_mib << ", \"peak_mib\": " << m.peak_mib << "}";
      objects.push_back(json.str());
    }
  }
  std::printf("speedup: the unfused path's forward+backward time over the row's; kept: held from the forward for\n"
              "the backward (less the output); peak: the most held during forward and backward.\n");
  if (!json_path.empty() && !benchmarks::write_json_array(json_path, objects)) return 1;
  return 0;
}

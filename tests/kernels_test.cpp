// kernels/cpu: the vectorisable transcendental functions against the C library (and their
// sixteen-lane forms against the scalar ones), lane sums against their definition, im2col and
// GEMM against their definitions, and the kernels' threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "kernels/cpu/convolution.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {
namespace {

TEST(FastMath, ExpIsWithinAFewUlpsOfTheLibrary) {
  double worst = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double expected = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(fast_exp(x) - expected) / expected);
  }
  EXPECT_LT(worst, 4e-7) << "worst relative error";
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
  // The ends behave like the library's: overflow to +inf, underflow through denormals to 0.
  EXPECT_EQ(fast_exp(1000.0f), INFINITY);
  EXPECT_EQ(fast_exp(89.0f), INFINITY);
  EXPECT_NEAR(fast_exp(88.7f) / std::exp(double{88.7f}), 1.0, 1e-6);
  EXPECT_NEAR(fast_exp(-95.0f) / std::exp(double{-95.0f}), 1.0, 1e-3);  // a denormal: few bits left
  EXPECT_EQ(fast_exp(-1000.0f), 0.0f);
}

// Kernels run the sixteen-lane exp on a range's body and the scalar one on its ends, which
// move with the thread count: the two must agree bit for bit everywhere, ends included.
TEST(FastMath, SixteenLaneExpGivesTheScalarsBits) {
  std::vector<float> inputs = {0.0f, -0.0f, 88.7f, 88.8f, 89.0f, 1000.0f, -87.5f, -95.0f, -103.9f, -104.0f, -104.5f,
                               -1000.0f, INFINITY, -INFINITY, std::numeric_limits<float>::denorm_min()};
  for (float x = -110.0f; x <= 90.0f; x += 0.0731f) inputs.push_back(x);
  while (inputs.size() % kLanes) inputs.push_back(1.0f);
  for (size_t i = 0; i < inputs.size(); i += kLanes) {
    const Floats16 lanes = fast_exp(load16(inputs.data() + i));
    for (int lane = 0; lane < kLanes; ++lane) {
      const float scalar = fast_exp(inputs[i + lane]), vector = lanes[lane];
      ASSERT_EQ(0, std::memcmp(&scalar, &vector, sizeof scalar)) << "exp(" << inputs[i + lane] << ")";
    }
  }
}

// The same for the elementwise kernels that run sixteen lanes: the whole array (lanes) against
// each element alone (the scalar tail), forward and backward.
TEST(FastMath, ElementwiseKernelsGiveTheSameBitsInLanesAndAlone) {
  std::vector<float> x;
  for (float v = -30.0f; v <= 30.0f; v += 0.01237f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 0.2999f, 0.3f, -0.3f, 1e-20f, 100.0f, -100.0f}) x.push_back(v);
  const int64_t n = static_cast<int64_t>(x.size());
  const std::vector<float> dy(x.size(), 0.75f);
  for (const UnaryOp op : {UnaryOp::Exp, UnaryOp::Gelu, UnaryOp::Tanh, UnaryOp::Sigmoid}) {
    std::vector<float> lanes(n), alone(n), lanes_dx(n), alone_dx(n);
    unary_forward(op, x.data(), lanes.data(), n, 0.0f);
    unary_backward(op, x.data(), lanes.data(), dy.data(), lanes_dx.data(), n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      unary_forward(op, &x[i], &alone[i], 1, 0.0f);
      unary_backward(op, &x[i], &lanes[i], &dy[i], &alone_dx[i], 1, 0.0f);
    }
    EXPECT_EQ(0, std::memcmp(lanes.data(), alone.data(), n * sizeof(float))) << static_cast<int>(op);
    EXPECT_EQ(0, std::memcmp(lanes_dx.data(), alone_dx.data(), n * sizeof(float))) << static_cast<int>(op);
  }
}

TEST(LaneSum, SixteenLaneSumsAndMaximaAddInTheScalarOrder) {
  for (const int64_t n : {1, 15, 16, 17, 100, 768, 1001}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = std::sin(1.7f * static_cast<float>(i)) * (1.0f + i % 13);
    const double scalar = lane_sum(n, [&](int64_t i) { return x[i] * x[i]; });
    const double vector = lane_sum16(
        n, [&](int64_t i) { return load16(&x[i]) * load16(&x[i]); }, [&](int64_t i) { return x[i] * x[i]; });
    EXPECT_EQ(scalar, vector) << n;
    double plain = 0.0;  // the definition, to a float sum's accuracy
    for (float v : x) plain += double{v} * v;
    EXPECT_NEAR(vector, plain, 1e-5 * plain) << n;
    EXPECT_EQ(lane_max(x.data(), n), *std::max_element(x.begin(), x.end())) << n;
  }
}

TEST(FastMath, TanhIsAccurateNearZeroAndInTheTails) {
  double worst_relative = 0.0;
  for (float x = -12.0f; x <= 12.0f; x += 0.00173f) {
    const double expected = std::tanh(static_cast<double>(x));
    const double error = std::abs(fast_tanh(x) - expected);
    if (std::abs(expected) > 1e-6) worst_relative = std::max(worst_relative, error / std::abs(expected));
  }
  EXPECT_LT(worst_relative, 5e-7);
  EXPECT_EQ(fast_tanh(0.0f), 0.0f);
  EXPECT_EQ(fast_tanh(20.0f), 1.0f);
  EXPECT_EQ(fast_tanh(-20.0f), -1.0f);
}

struct Im2colCase {
  int64_t channels, h, w;
  Window2d window;
};

// Windows that take each path: stride 1 with out_w == w (contiguous runs), out_h != h, strided,
// no padding, 1x1, wide padding, rectangular kernels.
const Im2colCase kIm2colCases[] = {
    {2, 8, 8, {3, 3, 1, 1, 1, 1}}, {3, 5, 7, {3, 3, 1, 1, 2, 1}}, {2, 7, 6, {5, 5, 1, 1, 2, 2}},
    {2, 8, 8, {3, 3, 2, 2, 1, 1}}, {1, 6, 5, {1, 1, 2, 2, 0, 0}}, {2, 4, 4, {1, 1, 1, 1, 0, 0}},
    {1, 5, 6, {2, 3, 1, 2, 0, 1}}, {1, 3, 3, {3, 3, 1, 1, 2, 2}}, {1, 1, 9, {1, 3, 1, 1, 0, 1}},
};

std::vector<float> numbered(int64_t count, float scale) {
  std::vector<float> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = scale * static_cast<float>((i * 37) % 101 - 50);
  return v;
}

TEST(Im2col, MatchesItsDefinitionWithRowsApart) {
  for (const Im2colCase& c : kIm2colCases) {
    const Window2d& win = c.window;
    const int64_t oh = win.out_size_h(c.h), ow = win.out_size_w(c.w), stride = oh * ow + 3;
    const std::vector<float> image = numbered(c.channels * c.h * c.w, 1.0f);
    std::vector<float> columns(static_cast<size_t>(c.channels * win.kernel_h * win.kernel_w * stride), -7.0f);
    im2col(image.data(), columns.data(), stride, c.channels, c.h, c.w, win);
    for (int64_t ch = 0; ch < c.channels; ++ch)
      for (int64_t ky = 0; ky < win.kernel_h; ++ky)
        for (int64_t kx = 0; kx < win.kernel_w; ++kx)
          for (int64_t y = 0; y < oh; ++y)
            for (int64_t x = 0; x < ow; ++x) {
              const int64_t iy = y * win.stride_h - win.pad_h + ky, ix = x * win.stride_w - win.pad_w + kx;
              const bool inside = iy >= 0 && iy < c.h && ix >= 0 && ix < c.w;
              const int64_t row = (ch * win.kernel_h + ky) * win.kernel_w + kx;
              ASSERT_EQ(columns[static_cast<size_t>(row * stride + y * ow + x)],
                        inside ? image[static_cast<size_t>((ch * c.h + iy) * c.w + ix)] : 0.0f)
                  << c.channels << "x" << c.h << "x" << c.w << " kernel " << win.kernel_h << "x" << win.kernel_w
                  << " entry " << row << " at (" << y << ", " << x << ")";
            }
    // The gap between rows is left alone.
    for (int64_t row = 0; row < c.channels * win.kernel_h * win.kernel_w; ++row)
      for (int64_t gap = oh * ow; gap < stride; ++gap) ASSERT_EQ(columns[static_cast<size_t>(row * stride + gap)], -7.0f);
  }
}

TEST(Im2col, Col2imIsItsAdjoint) {
  // <im2col(x), c> == <x, col2im(c)> for every x and c, which pins col2im down completely.
  for (const Im2colCase& c : kIm2colCases) {
    const Window2d& win = c.window;
    const int64_t stride = win.out_size_h(c.h) * win.out_size_w(c.w) + 5;
    const int64_t rows = c.channels * win.kernel_h * win.kernel_w;
    const std::vector<float> x = numbered(c.channels * c.h * c.w, 0.01f);
    std::vector<float> columns(static_cast<size_t>(rows * stride)), image(x.size(), 0.0f);
    im2col(x.data(), columns.data(), stride, c.channels, c.h, c.w, win);
    std::vector<float> cotangent = numbered(rows * stride, 0.003f);
    double lhs = 0.0, rhs = 0.0;
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t i = 0; i < win.out_size_h(c.h) * win.out_size_w(c.w); ++i)
        lhs += double{columns[static_cast<size_t>(row * stride + i)]} * cotangent[static_cast<size_t>(row * stride + i)];
    col2im_add(cotangent.data(), stride, image.data(), c.channels, c.h, c.w, win);
    for (size_t i = 0; i < x.size(); ++i) rhs += double{x[i]} * image[i];
    EXPECT_NEAR(lhs, rhs, 1e-9 + 1e-6 * std::abs(lhs)) << c.channels << "x" << c.h << "x" << c.w;
  }
}

struct GemmCase {
  int64_t m, n, k;
  bool trans_a, trans_b;
  float beta;
};

// Shapes that end inside a register tile (8- and 12-row, 32-column), span several row,
// column and depth blocks (96 rows, 768 columns, 512 deep), and degenerate ones. The last
// four are large enough to be split between kernel threads: by rows (taller than wide) or
// by columns, into bands that end inside a tile.
const GemmCase kGemmCases[] = {
    {1, 1, 1, false, false, 0.0f},    {13, 33, 7, false, false, 0.0f},  {16, 40, 300, false, true, 1.0f},
    {97, 31, 257, true, false, 0.5f}, {12, 32, 1, true, true, 0.0f},    {200, 65, 520, false, true, 0.0f},
    {5, 2050, 9, false, false, -1.0f}, {128, 128, 32, false, true, 0.0f}, {33, 17, 0, false, false, 0.5f},
    {301, 99, 200, true, true, 0.5f}, {50, 1001, 100, false, false, 0.0f}, {97, 700, 70, true, false, 1.0f},
    {40, 1030, 130, false, true, 0.0f}, {30, 800, 1030, true, false, 1.0f},
};

// The layout of one case: leading dimensions wider than the rows, so that a kernel assuming
// packed rows fails, and C starting as NaN where beta == 0, which must not read it.
struct GemmOperands {
  explicit GemmOperands(const GemmCase& c)
      : lda((c.trans_a ? c.m : c.k) + 3), ldb((c.trans_b ? c.k : c.n) + 1), ldc(c.n + 2),
        a(numbered((c.trans_a ? c.k : c.m) * lda, 0.01f)), b(numbered((c.trans_b ? c.n : c.k) * ldb, 0.02f)),
        c_before(numbered(c.m * ldc, 0.1f)) {
    if (c.beta == 0.0f) std::fill(c_before.begin(), c_before.end(), std::numeric_limits<float>::quiet_NaN());
  }
  std::vector<float> multiply(const GemmCase& c, float alpha) const {
    std::vector<float> out = c_before;
    gemm(c.trans_a, c.trans_b, c.m, c.n, c.k, alpha, a.data(), lda, b.data(), ldb, c.beta, out.data(), ldc);
    return out;
  }
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c_before;
};

TEST(Gemm, MatchesItsDefinitionForEveryTransposeAndRaggedEdgeOnOneAndThreeThreads) {
  const float alpha = 1.5f;
  for (const int threads : {1, 3}) {
    const KernelThreads kernel_threads(threads);
    for (const GemmCase& c : kGemmCases) {
      const GemmOperands operands(c);
      const std::vector<float>& before = operands.c_before;
      const std::vector<float> out = operands.multiply(c, alpha);
      const int64_t ldc = operands.ldc;
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < ldc; ++j) {
          const size_t at = static_cast<size_t>(i * ldc + j);
          if (j >= c.n) {  // the gap between rows of C is left alone
            ASSERT_TRUE(std::isnan(before[at]) ? std::isnan(out[at]) : out[at] == before[at]);
            continue;
          }
          double sum = 0.0;
          for (int64_t p = 0; p < c.k; ++p) {
            const float a_ip = c.trans_a ? operands.a[static_cast<size_t>(p * operands.lda + i)]
                                         : operands.a[static_cast<size_t>(i * operands.lda + p)];
            const float b_pj = c.trans_b ? operands.b[static_cast<size_t>(j * operands.ldb + p)]
                                         : operands.b[static_cast<size_t>(p * operands.ldb + j)];
            sum += double{a_ip} * b_pj;
          }
          const double expected = alpha * sum + (c.beta == 0.0f ? 0.0 : double{c.beta} * before[at]);
          ASSERT_NEAR(out[at], expected, 1e-5 * (1.0 + std::abs(expected)))
              << c.m << "x" << c.n << "x" << c.k << " trans " << c.trans_a << c.trans_b << " at (" << i << ", " << j
              << "), " << threads << " threads";
        }
    }
  }
}

#if defined(__AVX512F__)
// Our kernel computes every element of a band as it would the whole product, so more threads
// change no bit (threads.h); Eigen, used without AVX-512, promises no such thing.
TEST(Gemm, GivesTheSameBitsOnAnyNumberOfThreads) {
  for (const GemmCase& c : kGemmCases) {
    const GemmOperands operands(c);
    const std::vector<float> one = operands.multiply(c, 1.5f);
    for (const int threads : {2, 3, 7}) {
      const KernelThreads kernel_threads(threads);
      const std::vector<float> many = operands.multiply(c, 1.5f);
      ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
          << c.m << "x" << c.n << "x" << c.k << " on " << threads << " threads";
    }
  }
}
#endif

// The oracle is the pass it saves: C holding the bias in every row, then gemm with beta = 1.
TEST(Gemm, PlusBiasIsAGemmOnCFilledWithTheBiasBitForBit) {
  for (const int threads : {1, 3}) {
    const KernelThreads kernel_threads(threads);
    for (GemmCase c : kGemmCases) {
      c.beta = 1.0f;
      GemmOperands operands(c);
      const std::vector<float> bias = numbered(c.n, 0.3f);
      std::vector<float> out(operands.c_before.size(), std::numeric_limits<float>::quiet_NaN());
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = 0; j < c.n; ++j) operands.c_before[static_cast<size_t>(i * operands.ldc + j)] = bias[j];
      for (size_t i = 0; i < out.size(); ++i)
        if (i % operands.ldc >= static_cast<size_t>(c.n)) operands.c_before[i] = out[i];  // the gaps: NaN in both
      const std::vector<float> expected = operands.multiply(c, 1.0f);
      gemm_plus_bias(c.trans_a, c.trans_b, c.m, c.n, c.k, operands.a.data(), operands.lda, operands.b.data(),
                     operands.ldb, bias.data(), out.data(), operands.ldc);
      for (size_t i = 0; i < out.size(); ++i)
        ASSERT_TRUE(std::isnan(expected[i]) ? std::isnan(out[i]) : std::memcmp(&out[i], &expected[i], 4) == 0)
            << c.m << "x" << c.n << "x" << c.k << " trans " << c.trans_a << c.trans_b << " at " << i << ", "
            << threads << " threads: " << out[i] << " against " << expected[i];
    }
  }
}

TEST(Gemm, BatchedOnSeveralThreadsGivesEachProductAsOneGemmWould) {
  const int64_t batch = 7, m = 61, n = 45, k = 230, stride_a = m * k + 5, stride_b = k * n + 3, stride_c = m * n + 1;
  const std::vector<float> a = numbered(batch * stride_a, 0.01f), b = numbered(batch * stride_b, 0.02f);
  std::vector<float> expected(static_cast<size_t>(batch * stride_c), 0.5f), out = expected;
  for (int64_t i = 0; i < batch; ++i)
    gemm(false, true, m, n, k, 2.0f, a.data() + i * stride_a, k, b.data() + i * stride_b, k, 1.0f,
         expected.data() + i * stride_c, n);
  const KernelThreads kernel_threads(3);
  gemm_batched(false, true, m, n, k, 2.0f, a.data(), k, stride_a, b.data(), k, stride_b, 1.0f, out.data(), n, stride_c,
               batch);
  EXPECT_EQ(0, std::memcmp(expected.data(), out.data(), out.size() * sizeof(float)));
}

TEST(KernelThreads, AreOneUnlessSetAndRestoredByTheGuard) {
  EXPECT_EQ(kernel_threads(), 1);
  {
    const KernelThreads outer(4);
    EXPECT_EQ(kernel_threads(), 4);
    {
      const KernelThreads inner(2);
      EXPECT_EQ(kernel_threads(), 2);
    }
    EXPECT_EQ(kernel_threads(), 4);
  }
  EXPECT_EQ(kernel_threads(), 1);
  EXPECT_THROW(set_kernel_threads(0), std::invalid_argument);
  EXPECT_THROW(KernelThreads(-1), std::invalid_argument);
  EXPECT_EQ(kernel_threads(), 1);
}

TEST(KernelThreads, ParallelPartsCallsEveryPartOnceWithoutNestingAndPassesOnAnException) {
  const KernelThreads kernel_threads_scope(3);
  std::vector<std::atomic<int>> calls(10);
  std::atomic<int> nested_threads = 0;
  parallel_parts(10, [&](int part) {
    calls[static_cast<size_t>(part)] += 1;
    nested_threads += kernel_threads();
  });
  for (const auto& count : calls) EXPECT_EQ(count.load(), 1);
  EXPECT_EQ(nested_threads.load(), 10);  // each part saw one thread: a GEMM inside does not split again
  EXPECT_EQ(kernel_threads(), 3);
  EXPECT_THROW(parallel_parts(6, [](int part) { if (part == 4) throw std::runtime_error("part 4"); }),
               std::runtime_error);
}

TEST(KernelThreads, ParallelRangesCoverEveryItemOnceInConsecutiveRangesOnePerThread) {
  const KernelThreads kernel_threads_scope(3);
  for (const int64_t count : {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
    std::vector<std::atomic<int>> visits(static_cast<size_t>(count));
    std::mutex ranges_mutex;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    parallel_ranges(count, kMinimumParallelWork, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) visits[static_cast<size_t>(i)] += 1;
      std::lock_guard lock(ranges_mutex);
      ranges.emplace_back(begin, end);
    });
    for (const auto& v : visits) ASSERT_EQ(v.load(), 1) << count << " items";
    std::sort(ranges.begin(), ranges.end());
    EXPECT_EQ(ranges.size(), static_cast<size_t>(std::min<int64_t>(count, 3))) << count << " items";
    for (size_t r = 0; r < ranges.size(); ++r) {
      EXPECT_LT(ranges[r].first, ranges[r].second);  // no empty range
      if (r > 0) {
        EXPECT_EQ(ranges[r - 1].second, ranges[r].first);
      }
    }
  }
}

TEST(KernelThreads, ParallelRangesKeepSmallLoopsWhole) {
  const KernelThreads kernel_threads_scope(4);
  int calls = 0;
  parallel_ranges(1000, kMinimumParallelWork / 1000, [&](int64_t begin, int64_t end) {
    ++calls;
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 1000);
  });
  EXPECT_EQ(calls, 1);
  parallel_ranges(0, 1, [&](int64_t, int64_t) { ++calls; });  // nothing to do: no call
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace minipipe::kernels::cpu

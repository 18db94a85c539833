// tensor/: shapes, views without copies, factories, seeded randomness, the allocator.
#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "kernels/cpu/threads.h"
#include "kernels/philox.h"
#include "tensor/factories.h"
#include "test_helpers.h"

namespace minipipe {
namespace {

using testing::expect_values;

TEST(Tensor, FromVectorKeepsShapeAndRowMajorOrder) {
  const Tensor t = from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.strides(), (Shape{3, 1}));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dtype(), DType::Float32);
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_FLOAT_EQ(t.at({1, 2}), 6.0f);
  EXPECT_FLOAT_EQ(t.at({0, 1}), 2.0f);
}

TEST(Tensor, FactoriesFillAsAsked) {
  expect_values(zeros({2, 2}), {0, 0, 0, 0});
  expect_values(ones({3}), {1, 1, 1});
  expect_values(full({2}, 2.5f), {2.5f, 2.5f});
  expect_values(arange(0, 2, 0.5f), {0, 0.5f, 1, 1.5f});
  EXPECT_EQ(arange_int(4).to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(full({2}, 7, DType::Int32).to_vector<int32_t>(), (std::vector<int32_t>{7, 7}));
}

TEST(Tensor, ViewsShareStorageWithoutCopying) {
  const Tensor t = arange(0, 12).reshape({3, 4});
  const Tensor transposed = t.transpose(0, 1);
  const Tensor row = t.narrow(0, 1, 1);
  const Tensor expanded = from_vector({1, 2, 3}, {3, 1}).expand({3, 4});
  EXPECT_EQ(transposed.impl()->storage, t.impl()->storage);
  EXPECT_EQ(row.impl()->storage, t.impl()->storage);
  EXPECT_EQ(transposed.shape(), (Shape{4, 3}));
  EXPECT_EQ(transposed.strides(), (Shape{1, 4}));
  EXPECT_FALSE(transposed.is_contiguous());
  EXPECT_FLOAT_EQ(transposed.at({3, 2}), 11.0f);
  expect_values(row, {4, 5, 6, 7});
  EXPECT_EQ(expanded.strides(), (Shape{1, 0}));
  expect_values(expanded, {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  // A write through the base is seen through the view.
  t.data<float>()[11] = 100.0f;
  EXPECT_FLOAT_EQ(transposed.at({3, 2}), 100.0f);
}

TEST(Tensor, ContiguousCopiesOnlyWhenNeeded) {
  const Tensor t = arange(0, 6).reshape({2, 3});
  EXPECT_EQ(t.contiguous().impl(), t.impl());
  const Tensor c = t.transpose(0, 1).contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.impl()->storage, t.impl()->storage);
  expect_values(c, {0, 3, 1, 4, 2, 5});
}

// Swapping the last two dims takes the tiled copy (16 x 16 tiles in registers, ragged edges
// element by element, bands of rows over the kernel threads): every element where its
// definition puts it, on one thread and on three. The last shape is over 4 MB with output
// rows of whole cache lines, so it is written with streaming stores, and its last band of
// output rows is ragged.
TEST(Tensor, TransposedCopiesPutEveryElementInPlace) {
  for (const Shape& shape :
       std::vector<Shape>{{37, 53}, {16, 16}, {3, 40, 33}, {2, 300, 17}, {2, 2, 48, 260}, {1024, 1050}}) {
    const int64_t rows = shape[shape.size() - 2], cols = shape.back();
    const int64_t planes = shape_numel(shape) / (rows * cols);
    const Tensor x = arange(0, static_cast<float>(shape_numel(shape))).reshape(shape);
    for (const int threads : {1, 3}) {
      kernels::cpu::KernelThreads kernel_threads(threads);
      const Tensor y = x.transpose(-2, -1).contiguous();
      const float* out = y.data<float>();
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t c = 0; c < cols; ++c)
          for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(out[(p * cols + c) * rows + r], static_cast<float>((p * rows + r) * cols + c))
                << shape_str(shape) << " on " << threads << " threads at plane " << p << " (" << c << ", " << r << ")";
    }
  }
}

TEST(Tensor, SqueezeUnsqueezePermuteNarrow) {
  const Tensor t = arange(0, 24).reshape({2, 3, 4});
  EXPECT_EQ(t.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(t.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(t.unsqueeze(1).squeeze(1).shape(), (Shape{2, 3, 4}));
  const Tensor p = t.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_FLOAT_EQ(p.at({3, 1, 2}), t.at({1, 2, 3}));
  expect_values(t.narrow(2, 1, 2).narrow(1, 2, 1), {9, 10, 21, 22});
  EXPECT_EQ(t.reshape({-1, 4}).shape(), (Shape{6, 4}));
  // reshape of a non-contiguous tensor copies; view refuses.
  expect_values(t.transpose(0, 2).reshape({24}).narrow(0, 0, 3), {0, 12, 4});
  EXPECT_THROW_WITH(t.transpose(0, 2).view({24}), "not contiguous", "reshape");
}

TEST(Tensor, BadViewsNameTheShapes) {
  const Tensor t = zeros({2, 3});
  EXPECT_THROW_WITH(t.reshape({4, 2}), "[2, 3]", "[4, 2]");
  EXPECT_THROW_WITH(t.narrow(1, 2, 2), "dim 1", "size 3");
  EXPECT_THROW_WITH(t.expand({4, 3}), "[2, 3]", "[4, 3]");
  EXPECT_THROW_WITH(t.squeeze(0), "size 2");
  EXPECT_THROW_WITH(t.permute({0, 0}), "twice");
  EXPECT_THROW_WITH(t.size(2), "out of range", "2 dims");
  EXPECT_THROW_WITH(from_vector({1, 2, 3}, {2, 2}), "3 values", "[2, 2]");
  EXPECT_THROW_WITH(t.item(), "6 elements");
  EXPECT_THROW_WITH(Tensor().shape(), "undefined Tensor");
}

TEST(Tensor, ItemAndPrinting) {
  EXPECT_FLOAT_EQ(full({1, 1}, 3.0f).item(), 3.0f);
  std::ostringstream out;
  out << from_vector({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(out.str(), "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], shape=[2, 2], dtype=float32, device=cpu)");
  const std::string large = zeros({100, 100}).str();
  EXPECT_NE(large.find("..."), std::string::npos);
  EXPECT_LT(large.size(), 800u);  // 7 of 100 rows, 6 of 100 columns each
  EXPECT_NE(arange_int(3).str().find("[0, 1, 2]"), std::string::npos);
}

TEST(Device, ParsesAndPrints) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda:1"), Device::cuda(1));
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
  EXPECT_THROW_WITH(Device::parse("gpu"), "'gpu'", "cuda:N");
  EXPECT_THROW_WITH(Device::parse("cuda:x"), "'cuda:x'");
}

TEST(Device, CudaTensorWithoutBackendIsAClearError) {
  EXPECT_THROW_WITH(zeros({2}, DType::Float32, Device::cuda(0)), "cuda:0", "CUDA");
  EXPECT_THROW_WITH(zeros({2}).to(Device::cuda(0)), "cuda:0");
}

// Random123's published known-answer vectors for Philox4x32-10 (kat_vectors):
// counter words c0..c3, key words k0 k1 -> four output words.
TEST(Random, PhiloxMatchesPublishedKnownAnswers) {
  auto run = [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    const uint64_t key = (uint64_t{k1} << 32) | k0;
    const uint64_t stream = (uint64_t{c3} << 32) | c2;
    const uint64_t counter = (uint64_t{c1} << 32) | c0;
    const auto out = kernels::philox4x32(key, stream, counter);
    return std::vector<uint32_t>{out.v[0], out.v[1], out.v[2], out.v[3]};
  };
  EXPECT_EQ(run(0, 0, 0, 0, 0, 0), (std::vector<uint32_t>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  const uint32_t f = 0xffffffff;
  EXPECT_EQ(run(f, f, f, f, f, f), (std::vector<uint32_t>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(run(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0),
            (std::vector<uint32_t>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Random, SameSeedSameNumbersAndSensibleMoments) {
  Generator a(42), b(42), c(43);
  const Tensor x = randn({10000}, a), y = randn({10000}, b), z = randn({10000}, c);
  EXPECT_EQ(x.to_vector<float>(), y.to_vector<float>());
  EXPECT_NE(x.to_vector<float>(), z.to_vector<float>());
  double total = 0, squares = 0;
  for (float v : x.to_vector<float>()) total += v, squares += double(v) * v;
  EXPECT_NEAR(total / 10000, 0.0, 0.05);
  EXPECT_NEAR(squares / 10000, 1.0, 0.05);
  // Successive draws from one generator differ.
  EXPECT_NE(randn({4}, a).to_vector<float>(), randn({4}, a).to_vector<float>());
  const std::vector<float> u = rand({1000}, a, 2.0f, 3.0f).to_vector<float>();
  for (float v : u) ASSERT_TRUE(v >= 2.0f && v < 3.0f);
  const std::vector<int32_t> r = randint(-2, 3, {1000}, a).to_vector<int32_t>();
  for (int32_t v : r) ASSERT_TRUE(v >= -2 && v < 3);
  EXPECT_THROW_WITH(randint(3, 3, {1}, a), "empty range");
}

TEST(Allocator, CountsCurrentAndPeakBytes) {
  reset_peak_memory(Device::cpu());
  const MemoryStats before = memory_stats(Device::cpu());
  {
    const Tensor a = empty({1000});  // 4000 bytes
    {
      const Tensor b = empty({500});  // 2000 bytes
      EXPECT_EQ(memory_stats(Device::cpu()).current_bytes - before.current_bytes, 6000);
    }
    EXPECT_EQ(memory_stats(Device::cpu()).current_bytes - before.current_bytes, 4000);
    const Tensor view = a.narrow(0, 0, 10);  // a view allocates nothing
    EXPECT_EQ(memory_stats(Device::cpu()).current_bytes - before.current_bytes, 4000);
  }
  const MemoryStats after = memory_stats(Device::cpu());
  EXPECT_EQ(after.current_bytes, before.current_bytes);
  EXPECT_EQ(after.peak_bytes - before.current_bytes, 6000);
  EXPECT_EQ(after.allocation_count - before.allocation_count, 2);
  reset_peak_memory(Device::cpu());
  EXPECT_EQ(memory_stats(Device::cpu()).peak_bytes, after.current_bytes);
}

// Reserved bytes are what the allocator took from the system: a live tensor's block (its
// size class, after a 64-byte header naming the cache it returns to) and blocks cached for
// reuse, until empty_cache gives the cache back.
TEST(Allocator, CountsReservedBytesUntilTheCacheIsEmptied) {
  empty_cache(Device::cpu());
  const int64_t reserved = memory_stats(Device::cpu()).reserved_bytes;
  {
    const Tensor a = empty({1000});  // 4000 bytes in a 4032-byte block
    EXPECT_EQ(memory_stats(Device::cpu()).reserved_bytes - reserved, 64 + 4032);
  }
  empty_cache(Device::cpu());
  EXPECT_EQ(memory_stats(Device::cpu()).reserved_bytes, reserved);
}

// Each thread reuses the blocks it allocated, wherever they were freed (the next stage frees
// an activation its sender will want again), and a thread that ends leaves its blocks to the
// next thread that starts. Block sizes no other test uses, so that only these blocks count.
TEST(Allocator, BlocksReturnToTheThreadThatAllocatedThemAndOutliveIt) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under AddressSanitizer the allocator caches nothing";
#endif
  const auto reserved = [] { return memory_stats(Device::cpu()).reserved_bytes; };
  Tensor sent = empty({12345});
  const int64_t with_one_block = reserved();
  std::thread([&] { sent = Tensor(); }).join();  // freed by another thread
  EXPECT_EQ(reserved(), with_one_block);         // and kept for this one: reused here
  { const Tensor again = empty({12345}); EXPECT_EQ(reserved(), with_one_block); }
  int64_t after_other_thread = 0;
  std::thread([&] {  // the other thread finds no block of that size in its own cache
    const Tensor its_own = empty({12345});
    after_other_thread = reserved();
  }).join();
  EXPECT_GT(after_other_thread, with_one_block);
  const int64_t with_two_blocks = reserved();  // the ended thread's block waits in its cache
  std::thread([&] {
    const Tensor adopted = empty({12345});  // a new thread adopts that cache, block and all
    EXPECT_EQ(reserved(), with_two_blocks);
  }).join();
}

TEST(Allocator, CountersAreThreadSafe) {
  const int64_t start = memory_stats(Device::cpu()).current_bytes;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < 2000; ++i) { const Tensor x = empty({16}); }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(memory_stats(Device::cpu()).current_bytes, start);
}

}  // namespace
}  // namespace minipipe

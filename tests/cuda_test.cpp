// The CUDA backend's memory, copies, streams and errors, checked against the CPU. Tests that
// need a GPU skip themselves, saying why, on machines without one; the error-path tests run
// everywhere the backend is built.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>

#include "autograd/elementwise.h"
#include "autograd/matmul.h"
#include "kernels/cuda/check.h"
#include "kernels/dispatch.h"
#include "kernels/cuda/runtime.h"
#include "tensor/allocator.h"
#include "tensor/factories.h"
#include "gpu_test_support.h"
#include "test_helpers.h"

namespace minipipe {
namespace {

using testing::kGpu;
using testing::OnGpu;

void expect_equal_on_cpu(const Tensor& actual, const Tensor& expected) {
  const Tensor a = actual.to(Device::cpu()).contiguous(), e = expected.contiguous();
  ASSERT_EQ(a.shape(), e.shape());
  for (int64_t i = 0; i < e.numel(); ++i) ASSERT_EQ(a.data<float>()[i], e.data<float>()[i]) << "element " << i;
}

TEST(CudaErrors, NameTheCallFileAndLine) {
  // Runs without a GPU too: with no driver the call fails for that reason instead.
  EXPECT_THROW_WITH(MINIPIPE_CUDA_CHECK(cudaSetDevice(9999)), "cudaSetDevice(9999)", "cuda_test.cpp:");
}

TEST(CudaErrors, AMissingDeviceIsNamed) {
  EXPECT_THROW_WITH(empty({2}, DType::Float32, Device::cuda(99)), "cuda:99");
}

TEST_F(OnGpu, RoundTripKeepsEveryValue) {
  Generator g(3);
  const Tensor x = randn({37, 5, 3}, g);  // not a multiple of 32 anywhere
  expect_equal_on_cpu(x.to(kGpu), x);
  const Tensor ids = randint(0, 1000, {17}, g);
  const Tensor back = ids.to(kGpu).to(Device::cpu());
  for (int64_t i = 0; i < 17; ++i) EXPECT_EQ(back.data<int32_t>()[i], ids.data<int32_t>()[i]);
}

TEST_F(OnGpu, StridedCopiesMatchTheCpu) {
  Generator g(4);
  const Tensor x = randn({7, 33, 2}, g);
  const Tensor on_gpu = x.to(kGpu);
  // On the device: transposed, narrowed (an offset), broadcast (stride 0) views made contiguous.
  expect_equal_on_cpu(on_gpu.transpose(0, 1).contiguous(), x.transpose(0, 1));
  expect_equal_on_cpu(on_gpu.narrow(1, 5, 20).contiguous(), x.narrow(1, 5, 20));
  expect_equal_on_cpu(on_gpu.narrow(0, 2, 1).expand({4, 33, 2}).contiguous(), x.narrow(0, 2, 1).expand({4, 33, 2}));
  // Views whose dims the copy kernel merges (kernels/cuda/launch.cuh): a narrowed first dim
  // is one contiguous run at an offset (a plain memcpy); narrowing the last dim leaves rows of
  // 4 that merge with the dims above them; an expanded middle dim and size-1 dims.
  const Tensor y = randn({5, 3, 4, 7}, g), y_on_gpu = y.to(kGpu);
  expect_equal_on_cpu(y_on_gpu.narrow(0, 1, 3).contiguous(), y.narrow(0, 1, 3));
  expect_equal_on_cpu(y_on_gpu.narrow(3, 2, 4).contiguous(), y.narrow(3, 2, 4));
  expect_equal_on_cpu(y_on_gpu.narrow(1, 1, 1).expand({5, 6, 4, 7}).contiguous(),
                      y.narrow(1, 1, 1).expand({5, 6, 4, 7}));
  expect_equal_on_cpu(y_on_gpu.narrow(2, 3, 1).narrow(0, 4, 1).permute({3, 1, 0, 2}).contiguous(),
                      y.narrow(2, 3, 1).narrow(0, 4, 1).permute({3, 1, 0, 2}));
  // Across devices with non-contiguous ends on either side.
  expect_equal_on_cpu(x.permute({2, 0, 1}).to(kGpu), x.permute({2, 0, 1}));
  Tensor target = zeros({33, 7, 2}, DType::Float32, kGpu);
  copy_(target.transpose(0, 1), x);
  expect_equal_on_cpu(target, x.transpose(0, 1));
}

// A strided tensor moves to another GPU through a contiguous copy on its own GPU, freed as
// soon as the peer copy is queued: the source GPU must not reuse that memory before the copy,
// queued on the destination's stream, has read it (kernels/cuda/runtime.cpp).
TEST_F(OnGpu, PeerCopiesReadTheirSourceBeforeItIsReused) {
  std::string why_not;
  if (kernels::cuda::device_count(&why_not) < 2) GTEST_SKIP() << "needs two GPUs";
  Generator g(5);
  const Tensor x = randn({300, 200}, g);
  const Tensor on_first = x.to(kGpu);
  kernels::synchronize(kGpu);
  const Tensor moved = on_first.transpose(0, 1).to(Device::cuda(1));
  const Tensor reuse = full({200, 300}, -1.0f, DType::Float32, kGpu);  // the freed copy's size class
  expect_equal_on_cpu(moved, x.transpose(0, 1));
}

TEST_F(OnGpu, FillsMatchTheCpu) {
  expect_equal_on_cpu(full({3, 65}, 2.5f, DType::Float32, kGpu), full({3, 65}, 2.5f));
  Tensor t = zeros({4, 9}, DType::Float32, kGpu), expected = zeros({4, 9});
  fill_(t.narrow(1, 2, 3), -1.0f);
  fill_(expected.narrow(1, 2, 3), -1.0f);
  expect_equal_on_cpu(t, expected);
}

TEST_F(OnGpu, TheAllocatorCountsBytesAndReusesFreedBlocks) {
  empty_cache(kGpu);
  reset_peak_memory(kGpu);
  const int64_t before = memory_stats(kGpu).current_bytes;
  const int64_t reserved = memory_stats(kGpu).reserved_bytes;
  const void* first = nullptr;
  {
    const Tensor t = empty({1000}, DType::Float32, kGpu);
    first = t.raw_data();
    EXPECT_EQ(memory_stats(kGpu).current_bytes, before + 4000);
    EXPECT_EQ(memory_stats(kGpu).reserved_bytes, reserved + 4032);  // the 4032-byte size class
  }
  EXPECT_EQ(memory_stats(kGpu).current_bytes, before);
  EXPECT_GE(memory_stats(kGpu).peak_bytes, before + 4000);
  EXPECT_EQ(memory_stats(kGpu).reserved_bytes, reserved + 4032);  // kept for reuse
  const Tensor again = empty({1000}, DType::Float32, kGpu);  // same stream, same size class
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_EQ(memory_stats(kGpu).reserved_bytes, reserved + 4032);
  empty_cache(kGpu);  // frees only cached blocks: `again` stays valid
  EXPECT_EQ(memory_stats(kGpu).reserved_bytes, reserved + 4032);
  expect_equal_on_cpu(full({1000}, 1.0f, DType::Float32, kGpu), full({1000}, 1.0f));
}

TEST_F(OnGpu, StreamsOrderCopiesAndEventsTimeThem) {
  kernels::cuda::Stream stream(0);
  kernels::cuda::StreamGuard use(stream.handle());
  EXPECT_EQ(kernels::cuda::current_stream(), stream.handle());
  kernels::cuda::Event start, end;
  start.record(stream.handle());
  const Tensor x = arange(0, 100000).to(kGpu);
  const Tensor y = x.narrow(0, 10, 50000).contiguous();
  end.record(stream.handle());
  end.synchronize();
  EXPECT_GE(kernels::cuda::Event::elapsed_ms(start, end), 0.0f);
  expect_equal_on_cpu(y, arange(10, 50010));
}

// Memory freed on another thread's stream than the one it came from goes back to its owner
// only after the freeing stream's queued reads of it (tensor/cuda_allocator.cpp): the owner,
// reusing it at once, must not overwrite what a queued kernel has still to read. The other
// thread's stream is kept busy so that its read is still queued when the block is reused.
TEST_F(OnGpu, MemoryFreedFromAnotherStreamIsReusedOnlyAfterItsReads) {
  const int64_t n = 1 << 16;
  Tensor shared = full({n}, 3.0f, DType::Float32, kGpu);  // this thread's stream owns it
  const void* block = shared.raw_data();
  kernels::synchronize(kGpu);
  Tensor doubled;
  kernels::WorkMark doubled_written;
  std::promise<void> queued, may_exit;
  std::thread other([&] {
    const Tensor square = full({384, 384}, 0.001f, DType::Float32, kGpu);
    Tensor busy = matmul(matmul(matmul(square, square), square), square);
    doubled = shared * 2.0f;
    shared = Tensor();  // the last reference: freed from this thread's stream, its read still queued
    doubled_written = kernels::WorkMark::of_queued_work(kGpu);
    queued.set_value();
    may_exit.get_future().wait();  // a thread's exit would wait for its stream
  });
  queued.get_future().wait();
  const Tensor reused = full({n}, -1.0f, DType::Float32, kGpu);
  doubled_written.make_current_stream_wait();
  may_exit.set_value();
  other.join();
  EXPECT_EQ(reused.raw_data(), block) << "the block was not reused, so this shows nothing";
  expect_equal_on_cpu(doubled, full({n}, 6.0f));
}

}  // namespace
}  // namespace minipipe

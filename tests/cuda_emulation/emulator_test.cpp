// The emulated GPU's hazard check (fake_runtime.cpp) on hand-made cases: work on two streams
// that touch one block, one writing, must be ordered by a host wait or an event, or the
// emulator aborts. A blocker holds the first stream's work back so that it is surely still
// pending when the second stream's work is queued. Also: the emulated cuBLAS keeps cuBLAS's
// argument rules. Built and run by run.sh.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <vector>

#include "emulated_streams.h"

namespace {

struct TwoStreams : ::testing::Test {
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");  // streams run on threads of their own
    ASSERT_EQ(cudaStreamCreateWithFlags(&first, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&second, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&source, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&shared, kBytes), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&target, kBytes), cudaSuccess);
    const std::vector<float> ones(kBytes / sizeof(float), 1.0f);
    cudaMemcpyAsync(source, ones.data(), kBytes, cudaMemcpyHostToDevice, first);
    cudaStreamSynchronize(first);
  }
  void TearDown() override {
    cudaFree(source), cudaFree(shared), cudaFree(target);
    cudaStreamDestroy(first), cudaStreamDestroy(second);
  }
  // Holds `first` back until release(): whatever is queued there after stays pending.
  void block_first() {
    emu::enqueue(first, {}, "blocker", [future = gate.get_future().share()] { future.wait(); });
  }
  void release() { gate.set_value(); }
  // first writes `shared`; second then reads it into `target`.
  void write_on_first() { cudaMemcpyAsync(shared, source, kBytes, cudaMemcpyDeviceToDevice, first); }
  void read_on_second() { cudaMemcpyAsync(target, shared, kBytes, cudaMemcpyDeviceToDevice, second); }
  float first_target_value() {
    float value = 0;
    cudaMemcpyAsync(&value, target, sizeof value, cudaMemcpyDeviceToHost, second);
    return value;
  }

  static constexpr size_t kBytes = 1024;
  cudaStream_t first = nullptr, second = nullptr;
  void *source = nullptr, *shared = nullptr, *target = nullptr;
  std::promise<void> gate;
};

TEST_F(TwoStreams, AReadNothingOrdersAfterAPendingWriteIsARace) {
  EXPECT_DEATH(
      {
        block_first();
        write_on_first();
        read_on_second();
      },
      "race on a device block: memcpy D2D \\(reading\\).*memcpy D2D \\(writing\\)");
  release();
}

TEST_F(TwoStreams, AnEventOrdersTheReadAfterTheWrite) {
  cudaEvent_t written;
  ASSERT_EQ(cudaEventCreateWithFlags(&written, cudaEventDisableTiming), cudaSuccess);
  block_first();
  write_on_first();
  cudaEventRecord(written, first);
  cudaStreamWaitEvent(second, written, 0);
  read_on_second();  // queued while the write is pending: ordered by the event, no report
  release();
  EXPECT_EQ(first_target_value(), 1.0f);  // and the read did see the write
  cudaEventDestroy(written);
}

TEST_F(TwoStreams, AnEventRecordedBeforeTheWriteDoesNotOrderIt) {
  cudaEvent_t too_early;
  ASSERT_EQ(cudaEventCreateWithFlags(&too_early, cudaEventDisableTiming), cudaSuccess);
  EXPECT_DEATH(
      {
        block_first();
        cudaEventRecord(too_early, first);
        write_on_first();
        cudaStreamWaitEvent(second, too_early, 0);
        read_on_second();
      },
      "race on a device block");
  release();
  cudaEventDestroy(too_early);
}

TEST_F(TwoStreams, AHostWaitOrdersTheReadAfterTheWrite) {
  write_on_first();
  cudaStreamSynchronize(first);
  read_on_second();
  EXPECT_EQ(first_target_value(), 1.0f);
}

// C (2 x 3) = A (2 x 0) B (0 x 3), column-major: nothing is read, yet cuBLAS wants lda >= 1
// (and ldb >= k, at least 1), as a GPU would answer.
TEST(EmulatedCublas, RejectsLeadingDimensionsBelowOne) {
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  float* c = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&c), 6 * sizeof(float)), cudaSuccess);
  const float alpha = 1.0f, beta = 0.0f;
  EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 3, 0, &alpha, c, 2, c, 0, &beta, c, 2),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 3, 0, &alpha, c, 2, c, 1, &beta, c, 2),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, 2, 3, 4, &alpha, c, 2, c, 4, &beta, c, 2),
            CUBLAS_STATUS_INVALID_VALUE);  // op(A) = A^T reads A as 4 x 2: lda >= 4
  cudaStreamSynchronize(nullptr);  // the handle's stream
  cudaFree(c);
  cublasDestroy(handle);
}

}  // namespace

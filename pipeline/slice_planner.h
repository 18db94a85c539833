#pragma once
// TeraPipe's slice planner (Li et al. 2021, section 3.3 and its appendix). A later token
// slice attends over more context and costs more, so equal slices leave the pipeline waiting
// on the last ones. With K stages, slices of forward+backward times t_1..t_n (per micro-batch,
// M micro-batches) finish after about
//
//     M * sum_i t_i  +  (K - 1) * max_j t_j,
//
// the work of one stage plus K - 1 steps of the slowest slice to fill and drain the pipeline.
// The planner measures t(length, context) on the real stages, fits a cost model, and chooses
// the slicing (and the split of the batch into micro-batches) that minimises that latency.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nn/sequential.h"

namespace minipipe::pipeline {

// Forward + backward seconds of a token slice of `length` tokens whose sequences have
// `context` tokens before it, for a micro-batch of `batch` sequences.
using SliceCost = std::function<double(int64_t batch, int64_t length, int64_t context)>;

struct SliceTiming {
  int64_t batch, length, context;
  double seconds;
};

// t = a + b (batch * length) + c (batch * length * context) + d (batch * length^2)
//       + e (batch * context):
// a per-slice overhead (many small kernels), the per-token layers (projections, MLP),
// attention's scores over the earlier context and within the slice, and reading (and
// handing gradients back to) the earlier slices' keys and values.
struct SliceCostModel {
  double overhead = 0, per_token = 0, per_token_context = 0, per_token_squared = 0, per_context = 0;
  double operator()(int64_t batch, int64_t length, int64_t context) const;
  // Least squares on relative errors (a short slice's time counts as much as a long one's)
  // over the timings: at least five, spread over lengths and contexts. No term comes out
  // negative.
  static SliceCostModel fit(const std::vector<SliceTiming>& timings);
  std::string str() const;
};

// Times forward + backward of slices on the calling thread, for every (length, context) of
// the grid with length + context <= the sequence length: on each stage of `stages` (the
// model cut as it will run), the slowest stage's time counts, since it sets the pipeline's
// pace. Each point is the median of `repeats` runs after a warm-up. `sample` is a batch of
// token ids [batch, tokens].
std::vector<SliceTiming> measure_slice_costs(const std::vector<std::shared_ptr<nn::Sequential>>& stages,
                                             const Tensor& sample, const std::vector<int64_t>& lengths,
                                             const std::vector<int64_t>& contexts, int repeats = 3);
// The same with stage s built by stage_at(s) when its turn comes and dropped after it, so that
// one stage is held at a time (a process of a pipeline across processes timing the others').
using StageAt = std::function<std::shared_ptr<nn::Sequential>(int stage)>;
std::vector<SliceTiming> measure_slice_costs(int stages, const StageAt& stage_at, const Tensor& sample,
                                             const std::vector<int64_t>& lengths, const std::vector<int64_t>& contexts,
                                             int repeats = 3);

// measure_slice_costs on a default grid for T tokens in `sample`: lengths from the default
// granularity up, doubling, to T; contexts 0, T/4, T/2, 3T/4; fitted.
SliceCostModel profile_slice_costs(const std::vector<std::shared_ptr<nn::Sequential>>& stages, const Tensor& sample,
                                   int repeats = 3);
SliceCostModel profile_slice_costs(int stages, const StageAt& stage_at, const Tensor& sample, int repeats = 3);

struct SlicePlan {
  int micro_batches = 1;          // the batch's outer split
  std::vector<int64_t> lengths;   // the token slices of each micro-batch
  double seconds = 0;             // predicted: M * sum t_i + (K - 1) * max t_j
};

// The predicted latency of a slicing.
double slicing_seconds(const SliceCost& cost, int64_t batch, const std::vector<int64_t>& lengths, int stages,
                       int micro_batches = 1);

// The dynamic program of section 3.3: for every candidate t_max (the cost of some slice),
//   S*(j) = min over i < j with t(i -> j) <= t_max of S*(i) + t(i -> j),
// the least total time of slicing the first j units with no slice over t_max; the answer
// minimises M * S*(n) + (K - 1) * t_max. Candidates run from the cheapest up and stop once
// (K - 1) * t_max alone cannot beat the best. Slices are whole multiples of `granularity`
// tokens (the last takes what remains). `batch` sequences form one micro-batch.
SlicePlan plan_token_slices(const SliceCost& cost, int64_t batch, int64_t tokens, int stages, int64_t granularity = 1,
                            int micro_batches = 1);

// Also chooses the outer split: every micro-batch count M that divides `batch`, each with its
// own best slicing; the fastest wins.
SlicePlan plan_batch_and_token_slices(const SliceCost& cost, int64_t batch, int64_t tokens, int stages,
                                      int64_t granularity = 1);

// Granularity for `tokens` that keeps the dynamic program to at most 64 units.
int64_t default_slice_granularity(int64_t tokens);

}  // namespace minipipe::pipeline

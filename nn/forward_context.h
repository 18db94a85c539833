#pragma once
// What random layers need to know about the forward pass they are in (DESIGN.md decision
// 9): the run's seed, the training step, and where this (micro-)batch starts within the
// mini-batch. Dropout keys its mask by (seed, step, layer id) and numbers elements from
// sample_offset, so the masks do not depend on partitioning, schedule or micro-batch count.
// The context is per thread: each pipeline stage thread sets its own.
#include <cstdint>

namespace minipipe::nn {

struct ForwardContext {
  uint64_t seed = 0;
  uint64_t step = 0;
  int64_t sample_offset = 0;  // index of this batch's first sample in the mini-batch
  // True while a checkpointed forward is recomputed during backward: layers with side
  // effects (BatchNorm's running statistics) must not apply them twice.
  bool recomputing = false;
  // TeraPipe's token slices: the batch holds tokens token_offset.. of sequences of
  // sequence_tokens tokens (0: whole sequences). Position embeddings and dropout masks
  // follow the absolute position, so slicing changes nothing but the order of work.
  int64_t token_offset = 0;
  int64_t sequence_tokens = 0;
  // Which of the mini-batch's micro-batches this is. With deferred_batch_norm (torchgpipe's
  // DeferredBatchNorm), BatchNorm normalises each micro-batch by its own statistics but
  // moves its running statistics once per mini-batch, by the whole mini-batch's, as one
  // device would.
  int micro_batch = 0, micro_batches = 1;
  bool deferred_batch_norm = false;
};

const ForwardContext& forward_context();

class ForwardContextGuard {
 public:
  explicit ForwardContextGuard(const ForwardContext& context);
  ~ForwardContextGuard();
  ForwardContextGuard(const ForwardContextGuard&) = delete;
  ForwardContextGuard& operator=(const ForwardContextGuard&) = delete;

 private:
  ForwardContext previous_;
};

}  // namespace minipipe::nn

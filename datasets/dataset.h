#pragma once
// In-memory datasets and the loader that batches them.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace minipipe::datasets {

// Samples along dim 0 of `inputs` (float) with one int32 target each.
struct TensorDataset {
  Tensor inputs;
  Tensor targets;
  int64_t size() const { return inputs.defined() ? inputs.shape()[0] : 0; }
  // The samples at `indices`, copied into fresh contiguous tensors.
  TensorDataset gather(const std::vector<int64_t>& indices) const;
};

// A seeded shuffle, then the first (1 - test_fraction) for training and the rest for test.
std::pair<TensorDataset, TensorDataset> train_test_split(const TensorDataset& all, double test_fraction, uint64_t seed);

struct Batch {
  Tensor inputs, targets;
  int64_t sample_offset = 0;  // first sample's index within the mini-batch it came from
};

// Cuts a mini-batch into `count` micro-batches along dim 0 (nearly equal; the first ones
// one larger when it does not divide), each knowing where it starts.
std::vector<Batch> split_into_micro_batches(const Batch& batch, int64_t count);

// Batches of a TensorDataset in a seeded order: epoch e's order is a pure function of
// (seed, e), so a run resumed at any step sees the same batches as an uninterrupted one.
class DataLoader {
 public:
  DataLoader(TensorDataset dataset, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last = true);
  int64_t batches_per_epoch() const;
  // The `step`-th batch counted from the start of training (epoch = step / batches_per_epoch).
  Batch batch_at(int64_t step) const;
  // Every batch of one pass in order, without shuffling (for evaluation).
  std::vector<Batch> sequential_batches() const;
  const TensorDataset& dataset() const { return dataset_; }

 private:
  std::vector<int64_t> order_of_epoch(int64_t epoch) const;
  TensorDataset dataset_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
};

// Byte-level text: tokens are bytes (vocabulary 256).
struct TextCorpus {
  std::vector<int32_t> tokens;
  // The first (1 - validation_fraction) as training text, the rest as validation text.
  std::pair<TextCorpus, TextCorpus> split(double validation_fraction) const;
  // `batch` windows of context+1 tokens at offsets drawn from (seed, step): inputs [B, T]
  // and targets shifted by one, both int32.
  Batch sample(int64_t batch, int64_t context, uint64_t seed, int64_t step) const;
  // Evenly spaced windows covering the text, for a deterministic validation loss.
  std::vector<Batch> evaluation_batches(int64_t batch, int64_t context, int64_t max_batches) const;
};

// A permutation of 0..n-1 from the Philox stream (seed, stream).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream);

}  // namespace minipipe::datasets

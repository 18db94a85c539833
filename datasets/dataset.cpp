#include "datasets/dataset.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "autograd/shape_ops.h"
#include "kernels/philox.h"
#include "tensor/factories.h"

namespace minipipe::datasets {

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  // Fisher-Yates with Philox draws: the same order on every machine.
  for (int64_t i = n - 1; i > 0; --i) {
    const auto block = kernels::philox4x32(seed, stream, static_cast<uint64_t>(i));
    const uint64_t wide = (static_cast<uint64_t>(block.v[0]) << 32) | block.v[1];
    std::swap(order[i], order[static_cast<int64_t>(wide % static_cast<uint64_t>(i + 1))]);
  }
  return order;
}

TensorDataset TensorDataset::gather(const std::vector<int64_t>& indices) const {
  const Tensor in = inputs.contiguous(), tg = targets.contiguous();
  const int64_t per_sample = size() ? in.numel() / size() : 0;
  Shape in_shape = in.shape(), tg_shape = tg.shape();
  in_shape[0] = tg_shape[0] = static_cast<int64_t>(indices.size());
  TensorDataset out{empty(in_shape, in.dtype()), empty(tg_shape, tg.dtype())};
  const int64_t target_per_sample = size() ? tg.numel() / size() : 0;
  // Samples are copied as bytes, so inputs and targets may be of any dtype (class labels,
  // regression targets).
  const int64_t input_bytes = per_sample * static_cast<int64_t>(dtype_size(in.dtype())),
                target_bytes = target_per_sample * static_cast<int64_t>(dtype_size(tg.dtype()));
  const char *from_inputs = static_cast<const char*>(in.raw_data()), *from_targets = static_cast<const char*>(tg.raw_data());
  char *to_inputs = static_cast<char*>(out.inputs.raw_data()), *to_targets = static_cast<char*>(out.targets.raw_data());
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t s = indices[i];
    if (s < 0 || s >= size()) throw std::out_of_range("dataset: sample " + std::to_string(s) + " of " + std::to_string(size()));
    std::memcpy(to_inputs + i * input_bytes, from_inputs + s * input_bytes, input_bytes);
    std::memcpy(to_targets + i * target_bytes, from_targets + s * target_bytes, target_bytes);
  }
  return out;
}

std::pair<TensorDataset, TensorDataset> train_test_split(const TensorDataset& all, double test_fraction, uint64_t seed) {
  if (!(test_fraction > 0.0 && test_fraction < 1.0))
    throw std::invalid_argument("train_test_split: test fraction must be in (0, 1), got " + std::to_string(test_fraction));
  const std::vector<int64_t> order = seeded_permutation(all.size(), seed, 0xDA7A);
  const auto test_count = static_cast<int64_t>(static_cast<double>(all.size()) * test_fraction);
  const std::vector<int64_t> train(order.begin(), order.end() - test_count), test(order.end() - test_count, order.end());
  return {all.gather(train), all.gather(test)};
}

std::vector<Batch> split_into_micro_batches(const Batch& batch, int64_t count) {
  const int64_t n = batch.inputs.shape()[0];
  if (count < 1 || count > n)
    throw std::invalid_argument("cannot cut a batch of " + std::to_string(n) + " samples into " + std::to_string(count) +
                                " micro-batches (need 1 <= micro-batches <= batch size)");
  std::vector<Batch> out;
  int64_t start = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t size = n / count + (i < n % count ? 1 : 0);
    out.push_back({batch.inputs.narrow(0, start, size), batch.targets.narrow(0, start, size), batch.sample_offset + start});
    start += size;
  }
  return out;
}

DataLoader::DataLoader(TensorDataset dataset, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last)
    : dataset_(std::move(dataset)), batch_size_(batch_size), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
  if (batch_size < 1) throw std::invalid_argument("DataLoader: batch size must be at least 1, got " + std::to_string(batch_size));
  if (batches_per_epoch() == 0)
    throw std::invalid_argument("DataLoader: " + std::to_string(dataset_.size()) + " samples make no batch of " +
                                std::to_string(batch_size) + " (lower the batch size)");
}

int64_t DataLoader::batches_per_epoch() const {
  return drop_last_ ? dataset_.size() / batch_size_ : (dataset_.size() + batch_size_ - 1) / batch_size_;
}

std::vector<int64_t> DataLoader::order_of_epoch(int64_t epoch) const {
  if (shuffle_) return seeded_permutation(dataset_.size(), seed_, static_cast<uint64_t>(epoch));
  std::vector<int64_t> order(dataset_.size());
  for (int64_t i = 0; i < dataset_.size(); ++i) order[i] = i;
  return order;
}

Batch DataLoader::batch_at(int64_t step) const {
  const int64_t epoch = step / batches_per_epoch(), index = step % batches_per_epoch();
  const std::vector<int64_t> order = order_of_epoch(epoch);
  const int64_t begin = index * batch_size_, end = std::min<int64_t>(begin + batch_size_, dataset_.size());
  const TensorDataset picked = dataset_.gather(std::vector<int64_t>(order.begin() + begin, order.begin() + end));
  return {picked.inputs, picked.targets, 0};
}

std::vector<Batch> DataLoader::sequential_batches() const {
  std::vector<Batch> out;
  for (int64_t begin = 0; begin < dataset_.size(); begin += batch_size_) {
    const int64_t size = std::min(batch_size_, dataset_.size() - begin);
    out.push_back({dataset_.inputs.narrow(0, begin, size), dataset_.targets.narrow(0, begin, size), 0});
  }
  return out;
}

std::pair<TextCorpus, TextCorpus> TextCorpus::split(double validation_fraction) const {
  const auto cut = static_cast<int64_t>(static_cast<double>(tokens.size()) * (1.0 - validation_fraction));
  return {TextCorpus{std::vector<int32_t>(tokens.begin(), tokens.begin() + cut)},
          TextCorpus{std::vector<int32_t>(tokens.begin() + cut, tokens.end())}};
}

namespace {
Batch windows(const std::vector<int32_t>& tokens, const std::vector<int64_t>& offsets, int64_t context) {
  const auto b = static_cast<int64_t>(offsets.size());
  std::vector<int32_t> inputs(b * context), targets(b * context);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t < context; ++t) {
      inputs[i * context + t] = tokens[offsets[i] + t];
      targets[i * context + t] = tokens[offsets[i] + t + 1];
    }
  return {from_int_vector(inputs, {b, context}), from_int_vector(targets, {b, context}), 0};
}
}  // namespace

Batch TextCorpus::sample(int64_t batch, int64_t context, uint64_t seed, int64_t step) const {
  const int64_t positions = static_cast<int64_t>(tokens.size()) - context - 1;
  if (positions < 1)
    throw std::invalid_argument("text of " + std::to_string(tokens.size()) + " bytes is too short for a context of " +
                                std::to_string(context));
  std::vector<int64_t> offsets(batch);
  for (int64_t i = 0; i < batch; ++i) {
    const auto block = kernels::philox4x32(seed, 0x7E87 + (static_cast<uint64_t>(step) << 16), static_cast<uint64_t>(i));
    offsets[i] = static_cast<int64_t>(((static_cast<uint64_t>(block.v[0]) << 32) | block.v[1]) % static_cast<uint64_t>(positions));
  }
  return windows(tokens, offsets, context);
}

std::vector<Batch> TextCorpus::evaluation_batches(int64_t batch, int64_t context, int64_t max_batches) const {
  const int64_t positions = static_cast<int64_t>(tokens.size()) - context - 1;
  if (positions < 1)
    throw std::invalid_argument("validation text of " + std::to_string(tokens.size()) +
                                " bytes is too short for a context of " + std::to_string(context));
  const int64_t windows_wanted = std::min(positions / context + 1, batch * max_batches);
  std::vector<Batch> out;
  for (int64_t first = 0; first < windows_wanted; first += batch) {
    std::vector<int64_t> offsets;
    for (int64_t w = first; w < std::min(first + batch, windows_wanted); ++w) offsets.push_back(w * positions / windows_wanted);
    out.push_back(windows(tokens, offsets, context));
  }
  return out;
}

}  // namespace minipipe::datasets

#include "nn/key_value_cache.h"

#include <stdexcept>
#include <string>

#include "autograd/shape_ops.h"

namespace minipipe::nn {

namespace {
thread_local KeyValueCache* current_cache = nullptr;

Tensor leaf_copy(const Tensor& t) {
  Tensor copy = t.detach().clone();
  copy.set_requires_grad(true);
  return copy;
}
}  // namespace

KeyValueCache::Scope::Scope(KeyValueCache& cache, int slice) : previous_cache_(current_cache), previous_slice_(cache.current_) {
  if (slice < 0 || slice > cache.forwarded_)
    throw std::logic_error("token slice " + std::to_string(slice) + " forwarded before slice " +
                           std::to_string(cache.forwarded_) + ": slices run in order");
  if (cache.released_ >= 0 && slice >= cache.released_)
    throw std::logic_error("token slice " + std::to_string(slice) + " forwarded after its backward");
  current_cache = &cache;
  cache.current_ = slice;
}

KeyValueCache::Scope::~Scope() {
  KeyValueCache& cache = *current_cache;
  if (cache.current_ == cache.forwarded_) ++cache.forwarded_;
  cache.current_ = previous_slice_;
  current_cache = previous_cache_;
}

KeyValueCache* KeyValueCache::current() { return current_cache; }

std::pair<Tensor, Tensor> KeyValueCache::extend(const void* layer, const Tensor& keys, const Tensor& values) {
  std::vector<SliceKeysValues>& slices = layers_[layer];
  const int slice = current_;
  if (slice > static_cast<int>(slices.size()))
    throw std::logic_error("attention layer skipped in token slice " + std::to_string(slice - 1) +
                           ": every slice must run the same layers");
  if (slice == static_cast<int>(slices.size())) slices.push_back({leaf_copy(keys), leaf_copy(values), {}, {}});
  SliceKeysValues& own = slices[slice];
  if (keys.requires_grad()) own.graph_keys = keys, own.graph_values = values;
  if (slice == 0) return {keys, values};
  std::vector<Tensor> all_keys, all_values;
  for (int i = 0; i < slice; ++i) {
    if (!slices[i].keys.defined()) throw std::logic_error("token slice " + std::to_string(i) + " was released too early");
    all_keys.push_back(slices[i].keys);
    all_values.push_back(slices[i].values);
  }
  all_keys.push_back(keys);
  all_values.push_back(values);
  return {concat(all_keys, 2), concat(all_values, 2)};
}

void KeyValueCache::add_backward_roots(int slice, std::vector<Tensor>& roots, std::vector<Tensor>& gradients) const {
  if (slice + 1 != (released_ >= 0 ? released_ : forwarded_))
    throw std::logic_error("token slice " + std::to_string(slice) + " backwarded out of order: slices " +
                           std::to_string(slice + 1) + " and later must have run backward first, and only they");
  for (const auto& [layer, slices] : layers_) {
    const SliceKeysValues& own = slices.at(slice);
    for (const auto& [leaf, graph] : {std::pair{own.keys, own.graph_keys}, {own.values, own.graph_values}}) {
      if (!leaf.grad().defined()) continue;  // no later slice read it
      if (!graph.defined())
        throw std::logic_error("token slice " + std::to_string(slice) + " has no graph to backward: forward it with grad enabled");
      roots.push_back(graph);
      gradients.push_back(leaf.grad());
    }
  }
}

void KeyValueCache::release(int slice) {
  for (auto& [layer, slices] : layers_) slices.at(slice) = {};
  released_ = slice;
}

int64_t KeyValueCache::bytes() const {
  int64_t total = 0;
  for (const auto& [layer, slices] : layers_)
    for (const SliceKeysValues& s : slices)
      if (s.keys.defined()) total += s.keys.nbytes() + s.values.nbytes();
  return total;
}

}  // namespace minipipe::nn

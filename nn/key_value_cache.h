#pragma once
// TeraPipe (Li et al. 2021, section 3): in a causal Transformer token t at layer l depends
// only on tokens <= t at layer l - 1, so a batch of sequences can be cut into token slices
// that run one after another, and in a pipeline on different stages at once. A slice's
// attention reads the keys and values of every earlier slice of the same sequences; this
// cache holds them, per attention layer, for one batch of sequences on one stage.
//
// Forward the slices in order, each inside a Scope. Each slice's keys and values are kept
// as leaves that require grad, and later slices attend over those leaves, so a later slice's
// backward leaves its contribution in their .grad. Backward the slices in reverse: slice i's
// backward adds its own keys and values to the roots (DESIGN.md decision 4), with the
// gradients the later slices left, so the sum over slices is the unsliced gradient.
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace minipipe::nn {

class KeyValueCache {
 public:
  // While alive, attention layers on this thread read and extend `cache` as token slice
  // `slice`. Forwarding a slice again (recomputation) rebuilds its graph without storing anew.
  class Scope {
   public:
    Scope(KeyValueCache& cache, int slice);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    KeyValueCache* previous_cache_;  // the cache in scope before, and
    int previous_slice_;             // the slice this cache had in scope before (-1: none)
  };
  // The cache in scope on this thread, or nullptr (then attention sees whole sequences).
  static KeyValueCache* current();

  // CausalSelfAttention: this slice's keys and values [B, heads, L, head_dim] -> the keys
  // and values to attend over, every earlier slice's followed by these.
  std::pair<Tensor, Tensor> extend(const void* layer, const Tensor& keys, const Tensor& values);

  // Slice i's backward: adds to the roots its keys and values, with the gradients the later
  // slices left them (nothing for the last slice). Throws if a later slice has not run
  // backward yet, or if slice i's graph was not built (forward it with grad enabled first).
  void add_backward_roots(int slice, std::vector<Tensor>& roots, std::vector<Tensor>& gradients) const;
  // Slice i's backward ran: frees what it kept. Earlier slices no longer need it.
  void release(int slice);

  int64_t bytes() const;  // of the keys and values kept

 private:
  struct SliceKeysValues {
    Tensor keys, values;              // leaves: what later slices attend over
    Tensor graph_keys, graph_values;  // the same values inside the slice's own graph
  };
  std::map<const void*, std::vector<SliceKeysValues>> layers_;
  int forwarded_ = 0;     // slices 0..forwarded_-1 have been forwarded
  int released_ = -1;     // the lowest slice released so far (-1: none)
  int current_ = -1;      // the slice in scope
};

}  // namespace minipipe::nn

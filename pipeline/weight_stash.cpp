#include "pipeline/weight_stash.h"

#include <stdexcept>

#include "autograd/node.h"

namespace minipipe::pipeline {

WeightStash::WeightStash(std::vector<Tensor> parameters) : parameters_(std::move(parameters)) {
  for (const Tensor& p : parameters_)
    if (!p.is_contiguous() || p.offset() != 0 || static_cast<int64_t>(p.impl()->storage->bytes()) != p.nbytes())
      throw std::invalid_argument("weight stashing needs every parameter to own its memory; one of shape " +
                                  shape_str(p.shape()) + " is a view into a larger block");
}

void WeightStash::stash(int version) {
  NoGradGuard no_grad;
  std::vector<Tensor>& copy = copies_[version];
  for (const Tensor& p : parameters_) {
    copy.push_back(p.detach().clone());
    bytes_ += copy.back().nbytes();
  }
}

void WeightStash::load(int version, int live) {
  std::vector<Tensor> copy = std::move(copies_.at(version));
  copies_.erase(version);
  for (size_t i = 0; i < parameters_.size(); ++i) parameters_[i].impl()->storage->swap_memory(*copy[i].impl()->storage);
  if (copies_.count(live)) drop(live);  // a second copy of the same version is not worth keeping
  copies_[live] = std::move(copy);
}

void WeightStash::drop(int version) {
  for (const Tensor& t : copies_.at(version)) bytes_ -= t.nbytes();
  copies_.erase(version);
}

void WeightStash::restore_latest(const WeightVersionState& versions) {
  if (versions.live() != versions.latest() && copies_.count(versions.latest())) load(versions.latest(), versions.live());
}

}  // namespace minipipe::pipeline

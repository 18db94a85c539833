#include "nn/losses.h"

#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/reduction.h"

namespace minipipe::nn {

Tensor mse_loss(const Tensor& prediction, const Tensor& target) {
  if (prediction.shape() != target.shape())
    throw std::invalid_argument("mse_loss: prediction " + shape_str(prediction.shape()) + " and target " +
                                shape_str(target.shape()) + " must have the same shape");
  const Tensor difference = sub(prediction, target);
  return mean(mul(difference, difference));
}

}  // namespace minipipe::nn

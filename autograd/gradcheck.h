#pragma once
// Finite-difference gradient check. For a function f of float inputs, compares the
// gradient that backward() computes with central differences of L(x) = sum(f(x) * r),
// r a fixed random tensor (so every output element is exercised, each with its own
// weight). L is accumulated in double; f itself runs in float32, which sets the
// tolerances: the difference quotient carries a rounding error of about
// ulp(f) * sqrt(numel) / eps.
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

struct GradcheckOptions {
  float eps = 1e-2f;   // step of the central difference
  float atol = 2e-3f;  // pass if |analytic - numeric| <= atol + rtol * |numeric|
  float rtol = 1e-2f;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string report;  // the worst element per input, and every failure (first few)
};

// Checks the gradient with respect to every input that requires grad; inputs must be
// contiguous float32 leaves (their values are nudged in place and restored).
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace minipipe

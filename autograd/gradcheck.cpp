#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "autograd/node.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {
double weighted_sum(const Tensor& output, const std::vector<float>& weights) {
  const std::vector<float> values = output.to_vector<float>();
  double total = 0.0;
  for (size_t i = 0; i < values.size(); ++i) total += static_cast<double>(values[i]) * weights[i];
  return total;
}
}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad() && (!t.is_leaf() || !t.is_contiguous() || !t.device().is_cpu()))
      throw std::invalid_argument("gradcheck: inputs that require grad must be contiguous CPU leaves");

  // Analytic gradients.
  for (const Tensor& t : inputs)
    if (t.defined()) t.zero_grad();
  const Tensor output = f(inputs);
  Generator generator(options.seed);
  const Tensor weights = rand(output.shape(), generator, -1.0f, 1.0f);
  const std::vector<float> weight_values = weights.to_vector<float>();
  if (!output.requires_grad()) throw std::invalid_argument("gradcheck: the output does not require grad");
  output.backward(weights);

  GradcheckResult result;
  std::ostringstream report;
  int failures = 0;
  for (size_t input_index = 0; input_index < inputs.size(); ++input_index) {
    const Tensor& x = inputs[input_index];
    if (!x.defined() || !x.requires_grad()) continue;
    const std::vector<float> analytic = x.grad().defined() ? x.grad().to_vector<float>()
                                                           : std::vector<float>(x.numel(), 0.0f);
    float* values = x.data<float>();
    double worst = 0.0;
    int64_t worst_index = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float original = values[i];
      double plus, minus;
      {
        NoGradGuard no_grad;
        values[i] = original + options.eps;
        plus = weighted_sum(f(inputs), weight_values);
        values[i] = original - options.eps;
        minus = weighted_sum(f(inputs), weight_values);
      }
      values[i] = original;
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double error = std::abs(analytic[i] - numeric);
      if (error > worst) worst = error, worst_index = i;
      if (error > options.atol + options.rtol * std::abs(numeric)) {
        result.ok = false;
        if (++failures <= 8)
          report << "input " << input_index << " element " << i << ": analytic " << analytic[i]
                 << ", numeric " << numeric << "\n";
      }
    }
    result.max_abs_error = std::max(result.max_abs_error, worst);
    report << "input " << input_index << " " << shape_str(x.shape()) << ": worst |error| " << worst
           << " at element " << worst_index << "\n";
  }
  result.report = report.str();
  return result;
}

}  // namespace minipipe

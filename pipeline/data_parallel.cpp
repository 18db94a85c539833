#include "pipeline/data_parallel.h"

#include <exception>
#include <string>
#include <thread>

#include "autograd/elementwise.h"
#include "autograd/node.h"

namespace minipipe::pipeline {

datasets::Batch data_parallel_share(const datasets::Batch& batch, int replica, int replicas) {
  const int64_t size = batch.inputs.shape()[0];
  if (size % replicas != 0)
    throw std::invalid_argument("--data-parallel " + std::to_string(replicas) + " shares each mini-batch of " +
                                std::to_string(size) + " samples equally: make --batch-size a multiple of " +
                                std::to_string(replicas));
  const int64_t share = size / replicas, first = replica * share;
  return {batch.inputs.narrow(0, first, share).contiguous(), batch.targets.narrow(0, first, share).contiguous(),
          batch.sample_offset + first};
}

Tensor average_in_replica_order(const std::vector<Tensor>& gradients) {
  NoGradGuard no_grad;
  Tensor sum = gradients.at(0);
  for (size_t r = 1; r < gradients.size(); ++r) sum = add(sum, gradients[r]);
  return scale(sum, 1.0f / static_cast<float>(gradients.size()));
}

PipelineReplicas::PipelineReplicas(int replicas, const std::function<std::shared_ptr<nn::Sequential>()>& make_model,
                                   const StagePlan& plan, const Schedule& schedule, const PipelineOptions& options,
                                   const LossFunction& loss) {
  if (!make_model)
    throw std::invalid_argument("--data-parallel in one process needs a function that builds the model again "
                                "(TrainerOptions::model_factory, or a Trainer made from an nn::ModelRecipe)");
  for (int r = 1; r < replicas; ++r) others_.push_back(std::make_unique<Pipeline>(make_model(), plan, schedule, options, loss));
}

StepResult PipelineReplicas::run(Pipeline& first, const datasets::Batch& batch, uint64_t step) {
  const nn::Sequential& model = *first.model();
  {  // every replica starts the step from the first's weights (and, once, its buffers)
    NoGradGuard no_grad;
    const auto state = started_ ? std::map<std::string, Tensor>{} : model.state_dict();
    for (const auto& other : others_) {
      if (!started_) other->model()->load_state_dict(state);
      const std::vector<Tensor> from = model.parameters(), to = other->model()->parameters();
      for (size_t i = 0; i < from.size(); ++i) copy_(to[i], from[i]);
      other->model()->train(model.is_training());
    }
    started_ = true;
  }
  const int replicas = static_cast<int>(others_.size()) + 1;
  std::vector<StepResult> results(replicas);
  std::vector<std::exception_ptr> errors(replicas);
  {
    std::vector<std::jthread> threads;
    for (int r = 0; r < replicas; ++r)
      threads.emplace_back([&, r] {
        try {
          results[r] = (r == 0 ? first : *others_[r - 1]).run(data_parallel_share(batch, r, replicas), step);
        } catch (...) {
          errors[r] = std::current_exception();
        }
      });
  }
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
  NoGradGuard no_grad;
  std::vector<std::vector<Tensor>> parameters = {model.parameters()};  // [replica][parameter]
  for (const auto& other : others_) parameters.push_back(other->model()->parameters());
  for (size_t i = 0; i < parameters[0].size(); ++i) {
    std::vector<Tensor> gradients;
    for (int r = 0; r < replicas; ++r) {
      const Tensor& p = parameters[r][i];
      gradients.push_back(p.grad().defined() ? p.grad().contiguous() : zeros_like(p));
      if (r > 0) p.zero_grad();  // the next step's backward starts from none
    }
    parameters[0][i].set_grad(average_in_replica_order(gradients));
  }
  double loss = 0;  // in replica order, as ProcessGroup::sum adds the ranks'
  for (const StepResult& result : results) loss += result.loss;
  StepResult averaged = std::move(results[0]);
  averaged.loss = static_cast<float>(loss / replicas);
  averaged.losses = {averaged.loss};
  return averaged;
}

}  // namespace minipipe::pipeline

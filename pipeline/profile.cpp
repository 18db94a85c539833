#include "pipeline/profile.h"

#include <algorithm>
#include <chrono>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "tensor/factories.h"

namespace minipipe::pipeline {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

double median_seconds(std::vector<double> timings) {
  std::sort(timings.begin(), timings.end());
  return timings[timings.size() / 2];
}

std::vector<LayerProfile> profile_layers(nn::Sequential& model, const Tensor& sample, int repeats) {
  std::vector<std::vector<double>> forward(model.size()), backward_times(model.size()), weight_times(model.size());
  std::vector<LayerProfile> profiles(model.size());
  for (int r = -1; r < std::max(1, repeats); ++r) {  // pass -1 warms up: first touches, allocator caches
    Tensor x = sample;
    for (size_t i = 0; i < model.size(); ++i) {
      const Tensor input = x.dtype() == DType::Float32 ? x.detach().set_requires_grad() : x;
      auto start = std::chrono::steady_clock::now();
      const Tensor output = model[i]->forward(input);
      const double forward_seconds = seconds_since(start);
      const Tensor gradient = ones(output.shape(), DType::Float32, output.device());
      start = std::chrono::steady_clock::now();
      backward({output}, {gradient});
      const double backward_seconds = seconds_since(start);
      // The same backward split: B (the input's gradient) now, W (the weights') after.
      const Tensor again = model[i]->forward(input);
      DeferredWeightGradients weights =
          backward_inputs({again}, {gradient}, input.requires_grad() ? std::vector<Tensor>{input} : std::vector<Tensor>{});
      start = std::chrono::steady_clock::now();
      weights.run();
      const double weight_seconds = seconds_since(start);
      if (r >= 0) {
        forward[i].push_back(forward_seconds), backward_times[i].push_back(backward_seconds);
        weight_times[i].push_back(weight_seconds);
      }
      profiles[i].output_bytes = output.nbytes();
      x = output.detach();
    }
  }
  model.zero_grad();
  for (size_t i = 0; i < model.size(); ++i) {
    profiles[i].forward_seconds = median_seconds(forward[i]);
    profiles[i].backward_seconds = median_seconds(backward_times[i]);
    profiles[i].weight_seconds = std::min(median_seconds(weight_times[i]), profiles[i].backward_seconds);
    for (const Tensor& p : model[i]->parameters()) profiles[i].parameter_bytes += p.nbytes();
  }
  return profiles;
}

std::vector<LayerProfile> profile_layers(const nn::ModelRecipe& recipe, const Tensor& sample, Device device, int repeats) {
  std::vector<LayerProfile> profiles;
  Tensor x = sample;
  for (size_t i = 0; i < recipe.size(); ++i) {
    std::vector<bool> only(recipe.size(), false);
    only[i] = true;
    const nn::ModulePtr layer = (*recipe.build(only))[i];
    layer->to(device);
    nn::Sequential alone;
    alone.add(layer, recipe.names[i]);
    profiles.push_back(profile_layers(alone, x, repeats)[0]);
    NoGradGuard no_grad;
    x = layer->forward(x);  // the next layer's input
  }
  return profiles;
}

}  // namespace minipipe::pipeline

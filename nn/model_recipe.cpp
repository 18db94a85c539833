#include "nn/model_recipe.h"

#include <stdexcept>

#include "nn/skip.h"

namespace minipipe::nn {

Generator layer_generator(uint64_t seed, size_t index) {
  Generator generator(seed);
  generator.set_state({seed, static_cast<uint64_t>(index) << 32});
  return generator;
}

Tensor AbsentLayer::forward(const Tensor&) {
  throw std::logic_error("layer '" + name_ + "' is held by another process of the pipeline, not this one");
}

std::shared_ptr<AbsentLayer> AbsentLayer::standing_for(const std::string& name, const Module& layer) {
  return std::make_shared<AbsentLayer>(name, layer.parameter_count(), nn::skips_stashed(layer), nn::skips_popped(layer));
}

bool is_absent(const Module& layer) { return dynamic_cast<const AbsentLayer*>(&layer) != nullptr; }

int64_t layer_parameter_count(const Module& layer) {
  if (const auto* absent = dynamic_cast<const AbsentLayer*>(&layer)) {
    if (absent->stands_for_parameters() < 0)
      throw std::logic_error("an absent layer's parameters were not counted (ModelRecipe::build with count_absent)");
    return absent->stands_for_parameters();
  }
  return layer.parameter_count();
}

std::shared_ptr<Sequential> ModelRecipe::build() const { return build(std::vector<bool>(size(), true)); }

std::shared_ptr<Sequential> ModelRecipe::build(const std::vector<bool>& wanted, bool count_absent) const {
  if (!build_layer) throw std::invalid_argument("ModelRecipe: build_layer is empty");
  if (wanted.size() != size())
    throw std::invalid_argument("ModelRecipe: " + std::to_string(wanted.size()) + " flags for " + std::to_string(size()) +
                                " layers");
  auto model = std::make_shared<Sequential>();
  for (size_t i = 0; i < size(); ++i) {
    if (wanted[i]) {
      model->add(build_layer(i, *model), names[i]);
      continue;
    }
    model->add(count_absent ? AbsentLayer::standing_for(names[i], *build_layer(i, *model)) : std::make_shared<AbsentLayer>(names[i]),
               names[i]);
  }
  return model;
}

}  // namespace minipipe::nn

#include "nn/model_file.h"

#include <cstdlib>
#include <set>
#include <stdexcept>
#include <vector>

#include "nn/checkpoint_files.h"
#include "nn/json_reader.h"
#include "nn/safetensors.h"

namespace minipipe::nn {

namespace {
const std::string kTrainingStatePrefix = "optimizer.";

std::string listed(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 8; ++i) out += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > 8) out += " and " + std::to_string(names.size() - 8) + " more";
  return out;
}

std::string model_kind(const Metadata& metadata, const std::string& path, const std::string& wanted) {
  const std::string kind = metadata_text(metadata, "model", path);
  if (kind != wanted)
    throw std::runtime_error("checkpoint '" + path + "' holds a " + printable_excerpt(kind, 40) + " model, not a " + wanted);
  return kind;
}
}  // namespace

void load_model(const std::string& path, Module& model) {
  SafetensorsFile file = load_checkpoint(path);
  std::map<std::string, Tensor> tensors;
  for (auto& [name, t] : file.tensors)
    if (name.rfind(kTrainingStatePrefix, 0) != 0) tensors[name] = t;
  std::map<std::string, Tensor> expected = model.state_dict();
  std::vector<std::string> missing, unexpected;
  for (const auto& [name, t] : expected)
    if (!tensors.count(name)) missing.push_back(name);
  for (const auto& [name, t] : tensors)
    if (!expected.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty())
    throw std::runtime_error("checkpoint '" + path + "' does not fit this model: " +
                             (missing.empty() ? "" : std::to_string(missing.size()) + " missing (" + listed(missing) + ")") +
                             (missing.empty() || unexpected.empty() ? "" : "; ") +
                             (unexpected.empty() ? "" : std::to_string(unexpected.size()) + " unexpected (" + listed(unexpected) + ")") +
                             ": build the model the file was saved from (make_gpt_from and make_resnet_from read it)");
  try {
    model.load_state_dict(tensors);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "' does not fit this model: " + e.what());
  }
}

GPTConfig gpt_config_from(const Metadata& m, const std::string& path) {
  model_kind(m, path, "gpt");
  GPTConfig c;
  c.vocabulary = metadata_integer(m, "vocabulary", path, 1, 1 << 24);
  c.context = metadata_integer(m, "context", path, 1, 1 << 20);
  c.dim = metadata_integer(m, "dim", path, 1, 1 << 16);
  c.layers = metadata_integer(m, "layers", path, 1, 1 << 12);
  c.heads = metadata_integer(m, "heads", path, 1, c.dim);
  c.dropout = static_cast<float>(metadata_number(m, "dropout", path, 0.0, 0.99));
  // Files from before tying was offered hold untied models.
  if (m.count("tie_embeddings")) c.tie_embeddings = metadata_integer(m, "tie_embeddings", path, 0, 1) == 1;
  return c;
}

ResNetConfig resnet_config_from(const Metadata& m, const std::string& path) {
  model_kind(m, path, "cnn");
  ResNetConfig c;
  c.width = metadata_integer(m, "width", path, 1, 1 << 12);
  c.blocks_per_stage = metadata_integer(m, "blocks_per_stage", path, 1, 1 << 10);
  c.stages = metadata_integer(m, "stages", path, 1, 8);
  c.in_channels = metadata_integer(m, "in_channels", path, 1, 1 << 10);
  // Files from before "classes" was recorded hold the digits' ten.
  if (m.count("classes")) c.classes = metadata_integer(m, "classes", path, 1, 1 << 20);
  return c;
}

std::shared_ptr<Sequential> make_gpt_from(const std::string& path) {
  auto model = make_gpt(gpt_config_from(read_checkpoint_metadata(path), path));
  load_model(path, *model);
  return model;
}

std::shared_ptr<Sequential> make_resnet_from(const std::string& path) {
  auto model = make_resnet(resnet_config_from(read_checkpoint_metadata(path), path));
  load_model(path, *model);
  return model;
}

Metadata gpt_metadata(const GPTConfig& c) {
  return {{"model", "gpt"}, {"vocabulary", std::to_string(c.vocabulary)}, {"context", std::to_string(c.context)},
          {"dim", std::to_string(c.dim)}, {"layers", std::to_string(c.layers)}, {"heads", std::to_string(c.heads)},
          {"dropout", std::to_string(c.dropout)}, {"tie_embeddings", c.tie_embeddings ? "1" : "0"}};
}

Metadata resnet_metadata(const ResNetConfig& c) {
  return {{"model", "cnn"}, {"width", std::to_string(c.width)}, {"blocks_per_stage", std::to_string(c.blocks_per_stage)},
          {"stages", std::to_string(c.stages)}, {"in_channels", std::to_string(c.in_channels)},
          {"classes", std::to_string(c.classes)}};
}

std::string metadata_text(const Metadata& metadata, const std::string& key, const std::string& path) {
  auto it = metadata.find(key);
  if (it == metadata.end())
    throw std::runtime_error("checkpoint '" + path + "' lacks metadata '" + key + "' (not written by minipipe train?)");
  return it->second;
}

int64_t metadata_integer(const Metadata& metadata, const std::string& key, const std::string& path, int64_t lowest,
                         int64_t highest) {
  const std::string text = metadata_text(metadata, key, path);
  size_t digits = text.size() > 0 && text[0] == '-' ? 1 : 0;
  bool whole = text.size() > digits && text.size() - digits <= 18;  // 18 digits cannot overflow
  for (size_t i = digits; i < text.size(); ++i) whole = whole && text[i] >= '0' && text[i] <= '9';
  const int64_t value = whole ? std::stoll(text) : 0;
  if (!whole || value < lowest || value > highest)
    throw std::runtime_error("checkpoint '" + path + "': metadata '" + key + "' is '" + printable_excerpt(text, 40) +
                             "', not a whole number from " + std::to_string(lowest) + " to " + std::to_string(highest));
  return value;
}

double metadata_number(const Metadata& metadata, const std::string& key, const std::string& path, double lowest,
                       double highest) {
  const std::string text = metadata_text(metadata, key, path);
  char* end = nullptr;
  const double value = text.empty() ? 0 : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(value >= lowest && value <= highest))
    throw std::runtime_error("checkpoint '" + path + "': metadata '" + key + "' is '" + printable_excerpt(text, 40) +
                             "', not a number from " + std::to_string(lowest) + " to " + std::to_string(highest));
  return value;
}

}  // namespace minipipe::nn

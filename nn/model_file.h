#pragma once
// Models in files. `minipipe train --save` writes one safetensors file: the model's tensors
// under their state-dict names, the optimizers' state under "optimizer." names, and string
// metadata that describes the model ("model": "gpt" or "cnn", and its configuration). These
// functions read the model back without the training state: for sampling, evaluation or
// fine-tuning, and with the configuration taken from the file itself.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "nn/convolutional.h"
#include "nn/module.h"
#include "nn/sequential.h"
#include "nn/transformer.h"

namespace minipipe::nn {

using Metadata = std::map<std::string, std::string>;

// Loads the model's tensors from `path` into `model` (parameters and buffers, by name),
// ignoring the training state. Throws naming every missing and unexpected name (and any
// misshapen tensor), so that a file of another model says how it differs.
void load_model(const std::string& path, Module& model);

// The configuration a file's metadata records, and a model built from it with the file's
// values: what `minipipe train gpt|cnn --save` wrote.
GPTConfig gpt_config_from(const Metadata& metadata, const std::string& path);
ResNetConfig resnet_config_from(const Metadata& metadata, const std::string& path);
std::shared_ptr<Sequential> make_gpt_from(const std::string& path);
std::shared_ptr<Sequential> make_resnet_from(const std::string& path);
// The metadata that records a configuration ("model" included).
Metadata gpt_metadata(const GPTConfig& config);
Metadata resnet_metadata(const ResNetConfig& config);

// metadata[key]; read strictly as a whole number in [lowest, highest]; or as a number in
// [lowest, highest]. Each throws naming the file, the key and the value otherwise.
std::string metadata_text(const Metadata& metadata, const std::string& key, const std::string& path);
int64_t metadata_integer(const Metadata& metadata, const std::string& key, const std::string& path, int64_t lowest,
                         int64_t highest);
double metadata_number(const Metadata& metadata, const std::string& key, const std::string& path, double lowest,
                       double highest);

}  // namespace minipipe::nn

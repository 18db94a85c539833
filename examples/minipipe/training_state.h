#pragma once
// A training checkpoint: the model's state dict, the optimizer's state (prefixed
// "optimizer.") and string metadata (the step, the model's configuration) in one
// safetensors file. PyTorch's safetensors.torch.load_file reads it.
#include <map>
#include <string>
#include <vector>

#include "nn/checkpoint_files.h"
#include "nn/model_file.h"
#include "nn/module.h"
#include "nn/optim/optimizer.h"
#include "pipeline/process_group.h"

namespace minipipe::cli {

using Metadata = nn::Metadata;

// The optimizers may be one over the whole model or one per pipeline stage (PipeDream): the
// file holds the same tensors either way, so a run may resume under another schedule.
// Under mpirun (`group`) each rank holds part of the model: every rank of replica 0 writes a
// shard of what it holds, and rank 0 then the index (nn/checkpoint_files.h), whose rename
// makes the new checkpoint the checkpoint: a save cut short leaves the previous one whole.
// `tied_copies` (pipeline::Trainer::tied_copies): tensors held here as copies of a weight
// another rank saves; they are left out.
void save_training_state(const std::string& path, const nn::Module& model, const std::vector<nn::Optimizer*>& optimizers,
                         const Metadata& metadata, const pipeline::ProcessGroup* group = nullptr,
                         const std::map<std::string, std::string>& tied_copies = {});
// Loads into an existing model (and optimizers, if any: each takes its parameters' state);
// returns the metadata. `path` is a single file or a sharded checkpoint, saved by any number
// of processes; a model holding some layers only (nn::AbsentLayer for the others) reads its
// own tensors alone.
// A tied copy (its name here -> the saved name) is loaded from the saved weight.
Metadata load_training_state(const std::string& path, nn::Module& model, const std::vector<nn::Optimizer*>& optimizers,
                             const std::map<std::string, std::string>& tied_copies = {});
// A note when `path`.tmp is left from a save that was interrupted (the next --save to `path`
// replaces it); empty otherwise.
std::string stale_temporary_note(const std::string& path);
}  // namespace minipipe::cli

#pragma once
// Checkpoints as files: one safetensors file, or a sharded checkpoint in the layout Hugging
// Face's libraries use: an index NAME.index.json, {"metadata": {...}, "weight_map": {tensor
// name: shard file}}, with the shard files beside it. A pipeline across processes saves the
// latter, each rank a shard of the tensors it holds. Every reader here takes either: the
// file's own name, or NAME when only NAME.index.json exists (or is newer).
#include <functional>
#include <map>
#include <string>

#include "nn/safetensors.h"

namespace minipipe::nn {

// NAME.index.json for NAME (a name already ending in .index.json is the index itself).
std::string checkpoint_index_path(const std::string& path);
// Whether `path` names a sharded checkpoint: its index exists, and no single file of that
// name newer than it.
bool is_sharded_checkpoint(const std::string& path);
// The metadata, and the tensors for which `wanted` says yes (every tensor without it). Of a
// sharded checkpoint only the shards holding wanted tensors are read. Throws naming the file
// and what is wrong (a missing shard, a broken index).
SafetensorsFile load_checkpoint(const std::string& path, const std::function<bool(const std::string&)>& wanted = {});
// Its metadata alone (a single file is still read whole).
std::map<std::string, std::string> read_checkpoint_metadata(const std::string& path);

// One shard's place: the file beside the index that holds `rank`'s tensors of `ranks`
// shards, in a save identified by `save_id` (new names for every save, so that the
// previous checkpoint's shards stay whole until the new index replaces its own).
std::string shard_file_name(const std::string& path, uint64_t save_id, int rank, int ranks);
// Writes the index (atomically: a temporary file renamed into place), then removes the files
// the previous index of `path` named and this one does not, and a single file at `path`.
void write_checkpoint_index(const std::string& path, const std::map<std::string, std::string>& metadata,
                            const std::map<std::string, std::string>& weight_map);
// After a single-file save to `path`: a sharded checkpoint of that name is removed (index
// first, then its shards), so that the name means one checkpoint.
void remove_sharded_checkpoint(const std::string& path);

}  // namespace minipipe::nn

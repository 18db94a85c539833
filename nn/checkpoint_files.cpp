#include "nn/checkpoint_files.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "nn/json_reader.h"

namespace minipipe::nn {

namespace {
const std::string kIndexSuffix = ".index.json";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("checkpoint '" + path + "': cannot open it");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Index {
  std::map<std::string, std::string> metadata, weight_map;
};

// Shard names are plain file names beside the index: nothing may reach elsewhere.
Index read_index(const std::string& index_path) {
  Index index;
  try {
    const JsonValue root = parse_json(read_file(index_path));
    if (root.kind != JsonValue::Kind::Object) throw JsonError("the index is " + std::string(root.kind_name()) + ", not an object");
    for (const char* field : {"metadata", "weight_map"}) {
      const auto it = root.object.find(field);
      if (it == root.object.end()) {
        if (std::string(field) == "metadata") continue;
        throw JsonError("it has no \"weight_map\"");
      }
      if (it->second.kind != JsonValue::Kind::Object) throw JsonError(std::string("\"") + field + "\" is not an object");
      for (const auto& [key, value] : it->second.object) {
        if (value.kind != JsonValue::Kind::String) continue;  // total_size, a number, is not kept
        (std::string(field) == "metadata" ? index.metadata : index.weight_map)[key] = value.string;
      }
    }
    for (const auto& [name, file] : index.weight_map)
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
        throw JsonError("tensor " + printable_quoted(name) + " is mapped to " + printable_quoted(file) +
                        ", not a file name beside the index");
  } catch (const JsonError& e) {
    throw std::runtime_error("checkpoint index '" + index_path + "' is broken: " + e.what());
  }
  return index;
}

std::string beside(const std::string& index_path, const std::string& file) {
  return (std::filesystem::path(index_path).parent_path() / file).string();
}
}  // namespace

std::string checkpoint_index_path(const std::string& path) { return ends_with(path, kIndexSuffix) ? path : path + kIndexSuffix; }

bool is_sharded_checkpoint(const std::string& path) {
  std::error_code ignored;
  const std::string index = checkpoint_index_path(path);
  if (!std::filesystem::exists(index, ignored)) return false;
  if (index == path || !std::filesystem::exists(path, ignored)) return true;
  return std::filesystem::last_write_time(index, ignored) >= std::filesystem::last_write_time(path, ignored);
}

SafetensorsFile load_checkpoint(const std::string& path, const std::function<bool(const std::string&)>& wanted) {
  if (!is_sharded_checkpoint(path)) {
    SafetensorsFile file = load_safetensors(path);
    if (wanted)
      for (auto it = file.tensors.begin(); it != file.tensors.end();) it = wanted(it->first) ? std::next(it) : file.tensors.erase(it);
    return file;
  }
  const std::string index_path = checkpoint_index_path(path);
  const Index index = read_index(index_path);
  SafetensorsFile out{{}, index.metadata};
  std::set<std::string> shards;
  for (const auto& [name, file] : index.weight_map)
    if (!wanted || wanted(name)) shards.insert(file);
  for (const std::string& shard : shards) {
    SafetensorsFile file = load_safetensors(beside(index_path, shard));
    for (auto& [name, t] : file.tensors) {
      const auto mapped = index.weight_map.find(name);
      if (mapped == index.weight_map.end() || mapped->second != shard || (wanted && !wanted(name))) continue;
      out.tensors[name] = t;
    }
  }
  for (const auto& [name, file] : index.weight_map)
    if ((!wanted || wanted(name)) && !out.tensors.count(name))
      throw std::runtime_error("checkpoint index '" + index_path + "' maps tensor '" + name + "' to '" + file +
                               "', which does not hold it (a shard of another save?)");
  return out;
}

std::map<std::string, std::string> read_checkpoint_metadata(const std::string& path) {
  return load_checkpoint(path, [](const std::string&) { return false; }).metadata;
}

std::string shard_file_name(const std::string& path, uint64_t save_id, int rank, int ranks) {
  std::string stem = std::filesystem::path(path).filename().string();
  if (ends_with(stem, ".safetensors")) stem.resize(stem.size() - std::string(".safetensors").size());
  char name[96];
  std::snprintf(name, sizeof name, "-%012llx-%05d-of-%05d.safetensors", static_cast<unsigned long long>(save_id), rank + 1,
                ranks);
  return stem + name;
}

void write_checkpoint_index(const std::string& path, const std::map<std::string, std::string>& metadata,
                            const std::map<std::string, std::string>& weight_map) {
  const std::string index_path = checkpoint_index_path(path);
  std::set<std::string> old_files;
  std::error_code ignored;
  if (std::filesystem::exists(index_path, ignored)) {
    try {
      for (const auto& [name, file] : read_index(index_path).weight_map) old_files.insert(file);
    } catch (const std::exception&) {  // a broken old index: its shards are left where they are
    }
  }
  std::ostringstream json;
  json << "{\"metadata\": {";
  for (auto it = metadata.begin(); it != metadata.end(); ++it)
    json << (it == metadata.begin() ? "" : ", ") << json_quoted(it->first) << ": " << json_quoted(it->second);
  json << "},\n\"weight_map\": {";
  for (auto it = weight_map.begin(); it != weight_map.end(); ++it)
    json << (it == weight_map.begin() ? "\n" : ",\n") << "  " << json_quoted(it->first) << ": " << json_quoted(it->second);
  json << "\n}}\n";
  const std::string temporary = index_path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << json.str();
    out.flush();
    if (!out) throw std::runtime_error("checkpoint '" + index_path + "': writing '" + temporary + "' failed (disk full?)");
  }
  if (std::rename(temporary.c_str(), index_path.c_str()) != 0)
    throw std::runtime_error("checkpoint '" + index_path + "': cannot rename '" + temporary + "' into place");
  std::set<std::string> new_files;
  for (const auto& [name, file] : weight_map) new_files.insert(file);
  for (const std::string& file : old_files)
    if (!new_files.count(file)) std::filesystem::remove(beside(index_path, file), ignored);
  if (path != index_path) std::filesystem::remove(path, ignored);
}

void remove_sharded_checkpoint(const std::string& path) {
  const std::string index_path = checkpoint_index_path(path);
  std::error_code ignored;
  if (index_path == path || !std::filesystem::exists(index_path, ignored)) return;
  std::set<std::string> files;
  try {
    for (const auto& [name, file] : read_index(index_path).weight_map) files.insert(file);
  } catch (const std::exception&) {
  }
  std::filesystem::remove(index_path, ignored);
  for (const std::string& file : files) std::filesystem::remove(beside(index_path, file), ignored);
}

}  // namespace minipipe::nn

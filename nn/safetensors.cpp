#include "nn/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <tuple>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "nn/json_reader.h"
#include "tensor/factories.h"

namespace minipipe::nn {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("checkpoint '" + path + "': " + what);
}

}  // namespace

std::string json_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
      continue;
    }
    out += c;
  }
  return out + "\"";
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::ostringstream header;
  header << "{";
  bool first = true;
  if (!metadata.empty()) {
    header << "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it)
      header << (it == metadata.begin() ? "" : ",") << json_quoted(it->first) << ":" << json_quoted(it->second);
    header << "}";
    first = false;
  }
  std::vector<Tensor> host;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail(path, "no tensor may be named __metadata__");
    const Tensor h = t.detach().to(Device::cpu()).contiguous();
    const char* dtype = h.dtype() == DType::Float32 ? "F32" : h.dtype() == DType::Int32 ? "I32" : "BF16";
    header << (first ? "" : ",") << json_quoted(name) << ":{\"dtype\":\"" << dtype << "\",\"shape\":[";
    for (size_t d = 0; d < h.shape().size(); ++d) header << (d ? "," : "") << h.shape()[d];
    header << "],\"data_offsets\":[" << offset << "," << offset + h.nbytes() << "]}";
    offset += h.nbytes();
    first = false;
    host.push_back(h);
  }
  header << "}";
  std::string text = header.str();
  text.append((8 - text.size() % 8) % 8, ' ');  // the format pads the header to 8 bytes

  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, "cannot open '" + temporary + "' for writing");
    const uint64_t size = text.size();
    unsigned char size_bytes[8];
    for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<unsigned char>(size >> (8 * i));
    out.write(reinterpret_cast<const char*>(size_bytes), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Tensor& h : host) out.write(static_cast<const char*>(h.raw_data()), h.nbytes());
    out.flush();
    if (!out) fail(path, "writing '" + temporary + "' failed (disk full?)");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) fail(path, "cannot rename '" + temporary + "' into place");
}

namespace {

// The reference implementation's limit on the header (safetensors' MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Bytes per element of every dtype the format defines; minipipe reads F32 and I32.
int64_t dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, int64_t> sizes{{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                                    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
                                                    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

struct TensorEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// One tensor's header entry checked against the format's rules; `data_bytes` is what the
// file holds after the header.
TensorEntry read_entry(const std::string& path, const std::string& name, const JsonValue& entry) {
  const std::string what = "tensor " + printable_quoted(name);
  if (entry.kind != JsonValue::Kind::Object) fail(path, what + " is " + entry.kind_name() + ", not an object");
  auto field = [&](const char* key, JsonValue::Kind kind) -> const JsonValue& {
    auto it = entry.object.find(key);
    if (it == entry.object.end()) fail(path, what + " has no \"" + key + "\"");
    if (it->second.kind != kind) fail(path, what + "'s \"" + key + "\" is " + it->second.kind_name());
    return it->second;
  };
  const std::string dtype = field("dtype", JsonValue::Kind::String).string;
  const int64_t element_bytes = dtype_bytes(dtype);
  if (element_bytes == 0) fail(path, what + " has dtype " + printable_quoted(dtype) + ", which is not a safetensors dtype");
  if (dtype != "F32" && dtype != "I32") fail(path, what + " has dtype " + dtype + "; minipipe reads F32 and I32");
  Shape shape;
  int64_t bytes = element_bytes;
  for (const JsonValue& d : field("shape", JsonValue::Kind::Array).array) {
    if (d.kind != JsonValue::Kind::Number || d.number < 0) fail(path, what + "'s shape holds something other than sizes >= 0");
    if (__builtin_mul_overflow(bytes, d.number, &bytes))
      fail(path, what + "'s shape has more elements than 64 bits can count");
    shape.push_back(d.number);
  }
  const auto& offsets = field("data_offsets", JsonValue::Kind::Array).array;
  if (offsets.size() != 2 || offsets[0].kind != JsonValue::Kind::Number || offsets[1].kind != JsonValue::Kind::Number ||
      offsets[0].number < 0 || offsets[1].number < offsets[0].number)
    fail(path, what + " needs data_offsets [begin, end] with 0 <= begin <= end");
  const uint64_t begin = static_cast<uint64_t>(offsets[0].number), end = static_cast<uint64_t>(offsets[1].number);
  if (end - begin != static_cast<uint64_t>(bytes))
    fail(path, what + " of shape " + shape_str(shape) + " and dtype " + dtype + " needs " + std::to_string(bytes) +
                   " bytes, its data_offsets give " + std::to_string(end - begin));
  return {name, dtype == "F32" ? DType::Float32 : DType::Int32, shape, begin, end};
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (std::filesystem::is_directory(path)) fail(path, "is a folder, not a file");
  if (!in) fail(path, "cannot open it for reading (does it exist?)");
  in.seekg(0, std::ios::end);
  const uint64_t file_bytes = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  return read_safetensors(in, file_bytes, path);
}

SafetensorsFile read_safetensors(std::istream& in, uint64_t file_bytes, const std::string& path) {
  if (file_bytes < 8) fail(path, "truncated: " + std::to_string(file_bytes) + " bytes, too short for a safetensors file");
  unsigned char size_bytes[8];
  in.read(reinterpret_cast<char*>(size_bytes), 8);
  uint64_t header_bytes = 0;
  for (int i = 0; i < 8; ++i) header_bytes |= static_cast<uint64_t>(size_bytes[i]) << (8 * i);
  if (header_bytes > kMaxHeaderBytes)
    fail(path, "not a safetensors file: its first 8 bytes give a header of " + std::to_string(header_bytes) +
                   " bytes, over the format's limit of " + std::to_string(kMaxHeaderBytes));
  if (header_bytes > file_bytes - 8)
    fail(path, "truncated or not a safetensors file: the header claims " + std::to_string(header_bytes) +
                   " bytes but only " + std::to_string(file_bytes - 8) + " follow");
  std::string header_text(header_bytes, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_bytes));
  if (header_text.empty() || header_text[0] != '{') fail(path, "not a safetensors file: its header does not start with '{'");
  JsonValue header;
  try {
    header = parse_json(header_text);
  } catch (const JsonError& e) {
    fail(path, std::string("the header is not valid JSON: ") + e.what());
  }
  if (header.kind != JsonValue::Kind::Object) fail(path, "the header is not a JSON object");

  SafetensorsFile file;
  std::vector<TensorEntry> entries;
  for (const auto& [name, entry] : header.object) {
    if (name != "__metadata__") {
      entries.push_back(read_entry(path, name, entry));
      continue;
    }
    if (entry.kind != JsonValue::Kind::Object) fail(path, "__metadata__ is " + std::string(entry.kind_name()) + ", not an object");
    for (const auto& [key, value] : entry.object) {
      if (value.kind != JsonValue::Kind::String)
        fail(path, "metadata " + printable_quoted(key) + " is " + value.kind_name() + "; the format allows only strings");
      file.metadata[key] = value.string;
    }
  }
  // The tensors' bytes must tile the data exactly: in offset order, each begins where the
  // one before ended, and the last ends where the file does.
  std::sort(entries.begin(), entries.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  const uint64_t data_bytes = file_bytes - 8 - header_bytes;
  uint64_t expected = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const TensorEntry& e = entries[i];
    if (e.begin < expected)
      fail(path, "tensors " + printable_quoted(entries[i - 1].name) + " and " + printable_quoted(e.name) + " overlap in the data");
    if (e.begin > expected)
      fail(path, "data bytes " + std::to_string(expected) + ".." + std::to_string(e.begin) + " belong to no tensor");
    if (e.end > data_bytes)
      fail(path, "truncated: tensor " + printable_quoted(e.name) + " needs data bytes " + std::to_string(e.begin) + ".." +
                     std::to_string(e.end) + " but the file holds " + std::to_string(data_bytes));
    expected = e.end;
  }
  if (expected < data_bytes)
    fail(path, std::to_string(data_bytes - expected) + " trailing bytes after the last tensor's data");
  // Only now, with every size checked against the file's, is memory allocated.
  const std::streamoff data_start = static_cast<std::streamoff>(8 + header_bytes);
  for (const TensorEntry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    in.seekg(data_start + static_cast<std::streamoff>(e.begin));
    in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) fail(path, "reading tensor " + printable_quoted(e.name) + " failed");
    file.tensors[e.name] = t;
  }
  return file;
}

}  // namespace minipipe::nn

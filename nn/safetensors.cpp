#include "nn/safetensors.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "tensor/factories.h"

namespace minipipe::nn {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("checkpoint '" + path + "': " + what);
}

std::string json_string(const std::string& s) {
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

// Just enough JSON for a safetensors header: objects, arrays, strings, integers.
struct JsonValue {
  enum class Kind { Object, Array, String, Number } kind = Kind::Number;
  std::map<std::string, JsonValue> object;
  std::vector<JsonValue> array;
  std::string string;
  long long number = 0;
};

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& path) : text_(text), path_(path) {}
  JsonValue parse_document() {
    JsonValue v = parse();
    skip_space();
    if (pos_ != text_.size()) error("trailing characters");
    return v;
  }

 private:
  JsonValue parse() {
    skip_space();
    if (pos_ >= text_.size()) error("unexpected end");
    const char c = text_[pos_];
    JsonValue v;
    if (c == '{') {
      v.kind = JsonValue::Kind::Object;
      ++pos_;
      skip_space();
      if (peek() == '}') { ++pos_; return v; }
      while (true) {
        skip_space();
        const std::string key = parse_string();
        skip_space();
        expect(':');
        v.object[key] = parse();
        skip_space();
        if (peek() == ',') { ++pos_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = JsonValue::Kind::Array;
      ++pos_;
      skip_space();
      if (peek() == ']') { ++pos_; return v; }
      while (true) {
        v.array.push_back(parse());
        skip_space();
        if (peek() == ',') { ++pos_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = JsonValue::Kind::String;
      v.string = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t used = 0;
      v.number = std::stoll(text_.substr(pos_, 24), &used);
      pos_ += used;
      return v;
    }
    error(std::string("unexpected character '") + c + "'");
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c == '\\') {
        if (pos_ >= text_.size()) break;
        const char e = text_[pos_++];
        if (e == 'u' && pos_ + 4 <= text_.size()) {
          out += static_cast<char>(std::stoi(text_.substr(pos_, 4), nullptr, 16));
          pos_ += 4;
          continue;
        }
        c = e == 'n' ? '\n' : e == 't' ? '\t' : e;
      }
      out += c;
    }
    expect('"');
    return out;
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  [[noreturn]] void error(const std::string& what) const {
    fail(path_, "the header is not valid JSON (" + what + " at byte " + std::to_string(pos_) + ")");
  }

  const std::string& text_;
  const std::string& path_;
  size_t pos_ = 0;
};

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::ostringstream header;
  header << "{";
  bool first = true;
  if (!metadata.empty()) {
    header << "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it)
      header << (it == metadata.begin() ? "" : ",") << json_string(it->first) << ":" << json_string(it->second);
    header << "}";
    first = false;
  }
  std::vector<Tensor> host;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail(path, "no tensor may be named __metadata__");
    const Tensor h = t.detach().to(Device::cpu()).contiguous();
    const char* dtype = h.dtype() == DType::Float32 ? "F32" : h.dtype() == DType::Int32 ? "I32" : "BF16";
    header << (first ? "" : ",") << json_string(name) << ":{\"dtype\":\"" << dtype << "\",\"shape\":[";
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

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open it for reading (does it exist?)");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8) fail(path, "truncated: " + std::to_string(bytes.size()) + " bytes, too short for a safetensors file");
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (header_size > bytes.size() - 8)
    fail(path, "truncated or not a safetensors file: the header claims " + std::to_string(header_size) +
                   " bytes but only " + std::to_string(bytes.size() - 8) + " follow");
  const std::string header_text(bytes.data() + 8, header_size);
  const JsonValue header = JsonParser(header_text, path).parse_document();
  if (header.kind != JsonValue::Kind::Object) fail(path, "the header is not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - header_size;
  const char* data = bytes.data() + 8 + header_size;

  SafetensorsFile file;
  for (const auto& [name, entry] : header.object) {
    if (name == "__metadata__") {
      for (const auto& [key, value] : entry.object) file.metadata[key] = value.string;
      continue;
    }
    auto field = [&](const char* key) -> const JsonValue& {
      auto it = entry.object.find(key);
      if (it == entry.object.end()) fail(path, "tensor '" + name + "' has no \"" + key + "\"");
      return it->second;
    };
    const std::string dtype = field("dtype").string;
    if (dtype != "F32" && dtype != "I32")
      fail(path, "tensor '" + name + "' has dtype " + dtype + "; minipipe reads F32 and I32");
    Shape shape;
    for (const JsonValue& d : field("shape").array) shape.push_back(d.number);
    const auto& offsets = field("data_offsets").array;
    if (offsets.size() != 2) fail(path, "tensor '" + name + "' needs two data_offsets");
    const uint64_t begin = offsets[0].number, end = offsets[1].number;
    const uint64_t expected = static_cast<uint64_t>(shape_numel(shape)) * 4;
    if (begin > end || end > data_size)
      fail(path, "truncated: tensor '" + name + "' needs bytes " + std::to_string(begin) + ".." + std::to_string(end) +
                     " of the data but the file holds " + std::to_string(data_size));
    if (end - begin != expected)
      fail(path, "tensor '" + name + "' of shape " + shape_str(shape) + " needs " + std::to_string(expected) +
                     " bytes, its offsets give " + std::to_string(end - begin));
    Tensor t = empty(shape, dtype == "F32" ? DType::Float32 : DType::Int32);
    std::memcpy(t.raw_data(), data + begin, expected);
    file.tensors[name] = t;
  }
  return file;
}

}  // namespace minipipe::nn

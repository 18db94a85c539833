#include "datasets/readers.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "nn/json_reader.h"
#include "tensor/factories.h"

namespace minipipe::datasets {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("dataset file '" + path + "': " + what);
}

uint32_t big_endian_u32(const std::string& bytes, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
}

// Checks an IDX header and returns its dims; the data follows at 4 + 4 * dims.size().
std::vector<int64_t> idx_dims(const std::string& bytes, const std::string& path, uint32_t magic, size_t dims) {
  if (bytes.size() < 4) fail(path, "truncated: " + std::to_string(bytes.size()) + " bytes, shorter than an IDX header");
  const uint32_t found = big_endian_u32(bytes, 0);
  if (found != magic) {
    char text[64];
    std::snprintf(text, sizeof text, "wrong magic number 0x%08x (expected 0x%08x)", found, magic);
    fail(path, std::string(text) + (found == 0x00000801 || found == 0x00000803 ? ": images and labels swapped?" : ""));
  }
  if (bytes.size() < 4 + 4 * dims) fail(path, "truncated: " + std::to_string(bytes.size()) + " bytes, shorter than an IDX header");
  std::vector<int64_t> out;
  int64_t total = 1;
  for (size_t d = 0; d < dims; ++d) {
    out.push_back(big_endian_u32(bytes, 4 + 4 * d));
    if (__builtin_mul_overflow(total, out.back(), &total))
      fail(path, "the header's dimensions multiply past 2^63 bytes: a damaged IDX file");
  }
  if (static_cast<uint64_t>(total) > bytes.size() - 4 - 4 * dims)
    fail(path, "truncated: the header promises " + std::to_string(total) + " data bytes but the file has " +
                   std::to_string(bytes.size() - 4 - 4 * dims));
  return out;
}

}  // namespace

std::string describe_binary(const std::string& bytes) {
  auto magic = [&](uint32_t m) { return bytes.size() >= 4 && big_endian_u32(bytes, 0) == m; };
  if (magic(0x00000803)) return "MNIST-style IDX images";
  if (magic(0x00000801)) return "MNIST-style IDX labels";
  if (bytes.size() >= 9 && bytes[8] == '{' && bytes.find("\"dtype\"") != std::string::npos) return "a safetensors checkpoint";
  const size_t head = std::min<size_t>(bytes.size(), 1 << 16);
  size_t control = 0;
  for (size_t i = 0; i < head; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    control += c < 0x20 && c != '\n' && c != '\r' && c != '\t';
  }
  if (head == 0 || control * 100 < head) return "";  // text: under 1% control bytes
  if (bytes.size() % 3073 == 0) return "CIFAR-10 binary records";
  return "binary data";
}

std::string read_file_maybe_gzip(const std::string& path, uint64_t max_bytes) {
  if (std::filesystem::is_directory(path)) fail(path, "is a folder; give a file");
  gzFile file = gzopen(path.c_str(), "rb");  // reads uncompressed files unchanged
  if (!file) fail(path, "cannot open it (does it exist?)");
  std::string out;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof buffer)) > 0) {
    out.append(buffer, n);
    if (out.size() > max_bytes) {
      gzclose(file);
      fail(path, "holds more than " + std::to_string(max_bytes >> 20) + " MiB (after decompression); that is not a dataset "
                 "minipipe reads");
    }
  }
  int error = Z_OK;
  const char* message = gzerror(file, &error);
  const bool failed = n < 0 || (error != Z_OK && error != Z_STREAM_END);
  const std::string why = failed ? message : "";
  gzclose(file);
  if (failed) fail(path, "cannot be decompressed (" + why + "); is it a truncated .gz?");
  return out;
}

TensorDataset load_idx(const std::string& images_path, const std::string& labels_path) {
  return parse_idx(read_file_maybe_gzip(images_path), read_file_maybe_gzip(labels_path), images_path, labels_path);
}

TensorDataset parse_idx(const std::string& images, const std::string& labels, const std::string& images_path,
                        const std::string& labels_path) {
  const std::vector<int64_t> image_dims = idx_dims(images, images_path, 0x00000803, 3);
  const std::vector<int64_t> label_dims = idx_dims(labels, labels_path, 0x00000801, 1);
  if (image_dims[0] != label_dims[0])
    fail(labels_path, std::to_string(label_dims[0]) + " labels for " + std::to_string(image_dims[0]) + " images in '" +
                          images_path + "'");
  const int64_t n = image_dims[0], h = image_dims[1], w = image_dims[2];
  TensorDataset out{empty({n, 1, h, w}), empty({n}, DType::Int32)};
  float* pixels = out.inputs.data<float>();
  for (int64_t i = 0; i < n * h * w; ++i) pixels[i] = static_cast<unsigned char>(images[16 + i]) / 255.0f;
  for (int64_t i = 0; i < n; ++i) {
    const int label = static_cast<unsigned char>(labels[8 + i]);
    if (label > 9) fail(labels_path, "label " + std::to_string(label) + " at position " + std::to_string(i) + " is not a class 0..9");
    out.targets.data<int32_t>()[i] = label;
  }
  return out;
}

TensorDataset load_cifar10(const std::vector<std::string>& batch_paths) {
  if (batch_paths.empty()) throw std::invalid_argument("load_cifar10: no files given");
  std::string all;
  for (const std::string& path : batch_paths) {
    const std::string bytes = read_file_maybe_gzip(path);
    parse_cifar10(bytes, path);  // each file must hold whole records on its own
    all += bytes;
  }
  return parse_cifar10(all, batch_paths.front());
}

TensorDataset parse_cifar10(const std::string& bytes, const std::string& path) {
  constexpr int64_t record = 1 + 3 * 32 * 32;
  if (bytes.empty() || bytes.size() % record != 0)
    fail(path, std::to_string(bytes.size()) + " bytes is not a whole number of " + std::to_string(record) +
                   "-byte CIFAR-10 records (truncated, or not a CIFAR-10 binary batch)");
  const int64_t n = static_cast<int64_t>(bytes.size()) / record;
  TensorDataset out{empty({n, 3, 32, 32}), empty({n}, DType::Int32)};
  for (int64_t i = 0; i < n; ++i) {
    const int label = static_cast<unsigned char>(bytes[i * record]);
    if (label > 9) fail(path, "record " + std::to_string(i) + " has label " + std::to_string(label));
    out.targets.data<int32_t>()[i] = label;
    for (int64_t p = 0; p < record - 1; ++p)
      out.inputs.data<float>()[i * (record - 1) + p] = static_cast<unsigned char>(bytes[i * record + 1 + p]) / 255.0f;
  }
  return out;
}

TensorDataset load_digits_csv(const std::string& path) { return parse_digits_csv(read_file_maybe_gzip(path), path); }

TensorDataset parse_digits_csv(const std::string& bytes, const std::string& path) {
  const std::string kind = describe_binary(bytes);
  if (!kind.empty())
    fail(path, "looks like " + kind + ", not a digits CSV; the cnn reads the digits CSV or a folder of MNIST-style IDX files");
  std::istringstream text(bytes);
  std::vector<float> pixels;
  std::vector<int32_t> labels;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(text, line)) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<float> values;
    std::istringstream fields(line);
    std::string field;
    while (std::getline(fields, field, ',')) {
      char* end = nullptr;
      const float value = std::strtof(field.c_str(), &end);
      if (field.empty() || end != field.c_str() + field.size() || !std::isfinite(value))
        fail(path, "line " + std::to_string(line_number) + ": '" + nn::printable_excerpt(field, 20) + "' is not a number");
      values.push_back(value);
    }
    if (values.size() != 65)
      fail(path, "line " + std::to_string(line_number) + " has " + std::to_string(values.size()) +
                     " fields; a digits row has 64 pixels and a label");
    for (int i = 0; i < 64; ++i) pixels.push_back(values[i] / 16.0f);
    if (values[64] < 0 || values[64] > 9) fail(path, "line " + std::to_string(line_number) + ": label is not 0..9");
    labels.push_back(static_cast<int32_t>(values[64]));
  }
  if (labels.empty()) fail(path, "no rows");
  const auto n = static_cast<int64_t>(labels.size());
  return {from_vector(pixels, {n, 1, 8, 8}), from_int_vector(labels, {n})};
}

TextCorpus load_text(const std::string& path) { return parse_text(read_file_maybe_gzip(path), path); }

TextCorpus parse_text(const std::string& bytes, const std::string& path) {
  if (bytes.empty()) fail(path, "is empty; a text dataset needs some text");
  const std::string kind = describe_binary(bytes);
  if (!kind.empty()) fail(path, "looks like " + kind + ", not text; the gpt trains on a text file (plain or .gz)");
  TextCorpus corpus;
  corpus.tokens.reserve(bytes.size());
  for (char c : bytes) corpus.tokens.push_back(static_cast<unsigned char>(c));
  return corpus;
}

}  // namespace minipipe::datasets

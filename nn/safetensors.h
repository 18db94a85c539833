#pragma once
// Checkpoint files in the safetensors format (the one PyTorch and Hugging Face use):
//   8 bytes  little-endian u64 N, the header's length
//   N bytes  JSON: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//                   "__metadata__": {"key": "value", ...}}
//   data     the tensors' bytes, row-major, little-endian
// Files are written to a temporary name and renamed, so a crash never leaves half a file.
#include <cstdint>
#include <istream>
#include <map>
#include <string>

#include "tensor/tensor.h"

namespace minipipe::nn {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Throws naming the file and what is wrong (truncated, bad header, offsets out of range...).
// The reader holds to the format's rules as its reference implementation does, and allocates
// nothing before every size in the header has been checked against the file's.
SafetensorsFile load_safetensors(const std::string& path);
// `text` as a JSON string, quoted and escaped.
std::string json_quoted(const std::string& text);
// The same from a stream of `bytes` bytes (the fuzzer reads from memory); `path` names it.
SafetensorsFile read_safetensors(std::istream& in, uint64_t bytes, const std::string& path);

}  // namespace minipipe::nn

#include "pipeline/token_slices.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace minipipe::pipeline {

std::vector<int64_t> uniform_token_slices(int64_t tokens, int slices) {
  if (slices < 1 || tokens < slices)
    throw std::invalid_argument("cannot cut " + std::to_string(tokens) + " tokens into " + std::to_string(slices) +
                                " token slices: use between 1 and " + std::to_string(tokens) + " slices");
  std::vector<int64_t> lengths(slices, tokens / slices);
  for (int64_t i = 0; i < tokens % slices; ++i) ++lengths[i];
  return lengths;
}

void check_token_slices(const std::vector<int64_t>& lengths, int64_t tokens) {
  for (int64_t length : lengths)
    if (length < 1) throw std::invalid_argument("token slices " + format_token_slices(lengths) + ": every slice needs a token or more");
  const int64_t total = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  if (total != tokens)
    throw std::invalid_argument("token slices " + format_token_slices(lengths) + " cover " + std::to_string(total) +
                                " tokens, but the sequences have " + std::to_string(tokens) +
                                ": the lengths must add up to the sequence length");
}

std::vector<int64_t> token_slice_offsets(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> offsets(lengths.size(), 0);
  for (size_t i = 1; i < lengths.size(); ++i) offsets[i] = offsets[i - 1] + lengths[i - 1];
  return offsets;
}

std::vector<int64_t> parse_token_slices(const std::string& text) {
  std::vector<int64_t> lengths;
  for (size_t at = 0;;) {
    const size_t plus = std::min(text.find('+', at), text.size());
    const std::string length = text.substr(at, plus - at);
    if (length.empty() || length.size() > 9 || length.find_first_not_of("0123456789") != std::string::npos ||
        std::stol(length) < 1)
      throw std::invalid_argument("token slices '" + text + "': give positive lengths joined by '+', like 40+24");
    lengths.push_back(std::stol(length));
    if (plus == text.size()) return lengths;
    at = plus + 1;
  }
}

std::string format_token_slices(const std::vector<int64_t>& lengths) {
  std::string text;
  for (int64_t length : lengths) text += (text.empty() ? "" : "+") + std::to_string(length);
  return text;
}

}  // namespace minipipe::pipeline

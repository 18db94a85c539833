// `minipipe sample gpt`: text from a trained byte-level GPT.
#include <cstdio>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "autograd/softmax.h"
#include "commands.h"
#include "kernels/philox.h"
#include "nn/model_file.h"
#include "nn/checkpoint_files.h"
#include "tensor/factories.h"
#include "text_generation.h"

namespace minipipe::cli {

std::string generate_text(nn::Module& model, const ModelForward& forward, const nn::GPTConfig& config,
                          const std::string& prompt, int64_t length, float temperature, uint64_t seed,
                          const std::function<bool()>& stop_requested) {
  if (!(temperature > 0.0f)) throw std::invalid_argument("temperature must be positive, got " + std::to_string(temperature));
  NoGradGuard no_grad;
  model.eval();
  std::vector<int32_t> tokens;
  for (unsigned char c : prompt.empty() ? std::string("\n") : prompt) tokens.push_back(c);
  std::string text = prompt;
  for (int64_t i = 0; i < length && !(stop_requested && stop_requested()); ++i) {
    const int64_t window = std::min<int64_t>(static_cast<int64_t>(tokens.size()), config.context);
    const std::vector<int32_t> recent(tokens.end() - window, tokens.end());
    const Tensor logits = forward(from_int_vector(recent, {1, window}));
    const std::vector<float> p = softmax(scale(logits.narrow(1, window - 1, 1), 1.0f / temperature)).to_vector<float>();
    const float u = kernels::philox_uniform(seed, 0x5A3B1E, static_cast<uint64_t>(i));
    float cumulative = 0.0f;
    int32_t next = static_cast<int32_t>(p.size()) - 1;
    for (size_t c = 0; c < p.size(); ++c)
      if ((cumulative += p[c]) > u) {
        next = static_cast<int32_t>(c);
        break;
      }
    tokens.push_back(next);
    text += static_cast<char>(next);
  }
  return text;
}

namespace {

// The length of the well-formed UTF-8 character of two to four bytes at `at`, or 0 (RFC
// 3629: no overlong forms, no surrogates, nothing past U+10FFFF), and 0 for the C1 controls
// U+0080..U+009F, which some terminals obey.
size_t utf8_character_length(const std::string& bytes, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned lead = byte(at);
  size_t length = 0;
  unsigned low = 0x80, high = 0xBF;  // the range of the second byte; later ones are always 80..BF
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    if (lead == 0xC2) low = 0xA0;  // C2 80..C2 9F: the C1 controls
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong below
    if (lead == 0xED) high = 0x9F;  // surrogates above
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong below
    if (lead == 0xF4) high = 0x8F;  // past U+10FFFF above
  }
  if (length == 0 || at + length > bytes.size() || byte(at + 1) < low || byte(at + 1) > high) return 0;
  for (size_t i = 2; i < length; ++i)
    if (byte(at + i) < 0x80 || byte(at + i) > 0xBF) return 0;
  return length;
}

}  // namespace

std::string printable_text(const std::string& bytes) {
  std::string text;
  for (size_t at = 0; at < bytes.size();) {
    const unsigned char c = static_cast<unsigned char>(bytes[at]);
    if ((c >= 0x20 && c < 0x7F) || c == '\n' || c == '\t') {
      text += static_cast<char>(c);
      ++at;
    } else if (const size_t length = utf8_character_length(bytes, at); length > 0) {
      text.append(bytes, at, length);
      at += length;
    } else {
      static const char kHex[] = "0123456789abcdef";
      text += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
      ++at;
    }
  }
  return text;
}

int sample_gpt(const SampleOptions& options) {
  const nn::GPTConfig config = nn::gpt_config_from(nn::read_checkpoint_metadata(options.checkpoint), options.checkpoint);
  auto model = nn::make_gpt_from(options.checkpoint);
  const ModelForward forward = [&model](const Tensor& ids) { return (*model)(ids); };
  const std::string text =
      generate_text(*model, forward, config, options.prompt, options.length, options.temperature, options.seed);
  std::printf("%s\n", printable_text(text).c_str());
  return 0;
}

}  // namespace minipipe::cli

// `minipipe sample gpt`: text from a trained byte-level GPT.
#include <cstdio>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "autograd/softmax.h"
#include "commands.h"
#include "gpt_metadata.h"
#include "kernels/philox.h"
#include "tensor/factories.h"
#include "text_generation.h"

namespace minipipe::cli {

std::string generate_text(nn::Module& model, const ModelForward& forward, const nn::GPTConfig& config,
                          const std::string& prompt, int64_t length, float temperature, uint64_t seed) {
  if (!(temperature > 0.0f)) throw std::invalid_argument("temperature must be positive, got " + std::to_string(temperature));
  NoGradGuard no_grad;
  model.eval();
  std::vector<int32_t> tokens;
  for (unsigned char c : prompt.empty() ? std::string("\n") : prompt) tokens.push_back(c);
  std::string text = prompt;
  for (int64_t i = 0; i < length; ++i) {
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

int sample_gpt(const SampleOptions& options) {
  const nn::GPTConfig config = gpt_config_from(read_metadata(options.checkpoint), options.checkpoint);
  auto model = nn::make_gpt(config);
  load_training_state(options.checkpoint, *model, nullptr);
  const ModelForward forward = [&model](const Tensor& ids) { return (*model)(ids); };
  std::printf("%s\n",
              generate_text(*model, forward, config, options.prompt, options.length, options.temperature, options.seed)
                  .c_str());
  return 0;
}

}  // namespace minipipe::cli

// `minipipe eval gpt|cnn --checkpoint F`: the validation loss (and the CNN's accuracy) of a
// saved model, computed as `train` computes it (evaluation.h), on one device.
#include <cstdio>

#include "commands.h"
#include "evaluation.h"
#include "nn/model_file.h"
#include "nn/checkpoint_files.h"
#include "training_log.h"

namespace minipipe::cli {

int evaluate(const EvalOptions& options) {
  const Device device = Device::parse(options.device);
  const nn::Metadata metadata = nn::read_checkpoint_metadata(options.checkpoint);
  const std::string kind = nn::metadata_text(metadata, "model", options.checkpoint);
  if (kind != options.model)
    throw std::runtime_error("checkpoint '" + options.checkpoint + "' holds a " + kind + " model: use `minipipe eval " + kind +
                             "`");
  JsonObject result = JsonObject().add("event", std::string("evaluation")).add("model", options.model)
                          .add("checkpoint", options.checkpoint);
  std::string text;
  if (options.model == "gpt") {
    auto model = nn::make_gpt_from(options.checkpoint);
    model->to(device);
    const nn::GPTConfig config = nn::gpt_config_from(metadata, options.checkpoint);
    // The windows training evaluated: as many per batch as its mini-batches had sequences.
    const int64_t batch = options.batch_size > 0 ? options.batch_size
                          : metadata.count("validation_batch_size")
                              ? nn::metadata_integer(metadata, "validation_batch_size", options.checkpoint, 1, 1 << 20)
                              : 16;
    const TextData data = load_text_data(options.data);
    const std::vector<datasets::Batch> batches = gpt_validation_batches(data.validation, batch, config.context);
    const double loss = gpt_validation_loss(*model, [&](const Tensor& x) { return (*model)(x.to(device)); }, batches);
    result.add("data", data.path).add("batch_size", batch).add("windows", static_cast<int64_t>(batches.size()) * batch)
        .add_exact("validation_loss", loss);
    char line[256];
    std::snprintf(line, sizeof line, "validation loss %.17g nats/byte (%zu batches of %lld windows of %lld bytes, %s)", loss,
                  batches.size(), static_cast<long long>(batch), static_cast<long long>(config.context), data.path.c_str());
    text = line;
  } else {
    auto model = nn::make_resnet_from(options.checkpoint);
    model->to(device);
    const ImageData data = load_image_data(options.data);
    const CnnEvaluation e = evaluate_cnn(*model, [&](const Tensor& x) { return (*model)(x.to(device)); }, data.test);
    result.add("data", data.name).add("images", static_cast<int64_t>(data.test.size())).add_exact("validation_loss", e.loss)
        .add_exact("accuracy", e.accuracy);
    char line[256];
    std::snprintf(line, sizeof line, "test loss %.17g, accuracy %.4f%% (%lld test images, %s)", e.loss, 100 * e.accuracy,
                  static_cast<long long>(data.test.size()), data.name.c_str());
    text = line;
  }
  std::printf("%s\n", options.json ? result.str().c_str() : text.c_str());
  return 0;
}

}  // namespace minipipe::cli

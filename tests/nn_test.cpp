// nn/: modules and their names, state dicts, layers against the ops they stand for, keyed
// dropout, attention over token slices, optimizers and schedules, safetensors files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <tuple>

#include "autograd/elementwise.h"
#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/matmul.h"
#include "autograd/reduction.h"
#include "autograd/shape_ops.h"
#include "nn/convolutional.h"
#include "nn/forward_context.h"
#include "nn/key_value_cache.h"
#include "nn/losses.h"
#include "nn/model_file.h"
#include "nn/model_recipe.h"
#include "nn/optim/optimizer.h"
#include "nn/safetensors.h"
#include "nn/transformer.h"
#include "tensor/factories.h"
#include "test_helpers.h"

namespace minipipe::nn {
namespace {

using testing::expect_same_values;
using testing::expect_values;

std::string temporary_path(const std::string& name) { return ::testing::TempDir() + "/" + name; }

TEST(Module, ParametersAndBuffersAreNamedByPath) {
  Generator g(0);
  Sequential model;
  model.add(std::make_shared<Linear>(3, 4, g), "input");
  model.add(std::make_shared<Sequential>(std::initializer_list<ModulePtr>{std::make_shared<BatchNorm2d>(4)}));
  std::vector<std::string> names;
  for (auto& [name, t] : model.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"input.weight", "input.bias", "1.0.weight", "1.0.bias"}));
  EXPECT_EQ(model.named_buffers()[0].first, "1.0.running_mean");
  EXPECT_EQ(model.parameter_count(), 12 + 4 + 4 + 4);
  EXPECT_EQ(model.at("input")->type_name(), "Linear");
  EXPECT_EQ(model[1]->type_name(), "Sequential");
  EXPECT_EQ(model.name_of(1), "1");
  EXPECT_THROW_WITH(model[2], "index 2", "2 children");
  EXPECT_THROW_WITH(model.at("output"), "'output'");
}

TEST(Module, StateDictRoundTripsAndNamesWhatDoesNotFit) {
  Generator g(1);
  auto a = make_resnet({.width = 4, .stages = 2, .seed = 1}), b = make_resnet({.width = 4, .stages = 2, .seed = 2});
  b->load_state_dict(a->state_dict());
  for (auto& [name, t] : a->state_dict()) expect_same_values(b->state_dict().at(name), t, 0, 0);
  auto state = a->state_dict();
  state.erase("classifier.bias");
  EXPECT_THROW_WITH(b->load_state_dict(state), "missing", "classifier.bias");
  state = a->state_dict();
  state["extra"] = zeros({1});
  EXPECT_THROW_WITH(b->load_state_dict(state), "unexpected", "extra");
  state = a->state_dict();
  state["classifier.bias"] = zeros({3});
  EXPECT_THROW_WITH(b->load_state_dict(state), "classifier.bias", "[3]", "[10]");
}

// A process of a pipeline builds its own layers alone (nn/model_recipe.h): each must equal the
// same layer of the whole model, for any set of layers, tied head included.
TEST(ModelRecipe, LayersBuiltAloneEqualTheWholeModels) {
  for (bool tied : {false, true}) {
    const GPTConfig config{.vocabulary = 23, .context = 8, .dim = 16, .layers = 3, .heads = 2, .seed = 5, .tie_embeddings = tied};
    const ModelRecipe recipe = gpt_recipe(config);
    const auto whole = recipe.build()->state_dict();
    const auto skeleton = recipe.skeleton(true);
    for (std::vector<bool> wanted : {std::vector<bool>{false, true, true, false, false}, {false, false, false, true, true},
                                     {true, false, false, false, true}}) {
      const auto part = recipe.build(wanted);
      EXPECT_EQ(part->size(), recipe.size());
      int64_t held = 0;
      for (size_t i = 0; i < part->size(); ++i) {
        EXPECT_EQ(is_absent(*(*part)[i]), !wanted[i]) << part->name_of(i);
        if (wanted[i]) held += (*part)[i]->parameter_count();
        // The skeleton's absent layers count what the layer they stand for holds.
        EXPECT_EQ(layer_parameter_count(*(*skeleton)[i]), recipe.build()->operator[](i)->parameter_count()) << i;
      }
      EXPECT_GT(held, 0);
      for (const auto& [name, t] : part->state_dict()) {
        // A head without its embedding holds a copy of the tied weight: equal to the embedding's.
        const std::string whole_name = tied && name == "head.logits.weight" ? "embedding.tokens.weight" : name;
        ASSERT_TRUE(whole.count(whole_name)) << name;
        EXPECT_EQ(t.to_vector<float>(), whole.at(whole_name).to_vector<float>()) << name << (tied ? " (tied)" : "");
      }
    }
    EXPECT_THROW((*skeleton)[1]->forward(zeros({1, 8, 16})), std::logic_error);
  }
}

TEST(Layers, LinearIsXTimesWeightTransposedPlusBias) {
  Generator g(2);
  Linear linear(3, 2, g);
  EXPECT_EQ(linear.weight.shape(), (Shape{2, 3}));  // PyTorch's [out, in]
  const Tensor x = randn({4, 3}, g);
  expect_same_values(linear(x), add(matmul(x, linear.weight.transpose(0, 1).contiguous()), linear.bias));
  EXPECT_THROW_WITH(linear(zeros({4, 5})), "[4, 5]", "3 features");
}

TEST(Layers, TrainAndEvalSwitchDropoutAndBatchNorm) {
  Dropout dropout(0.5f, 7);
  const Tensor x = ones({4, 8});
  EXPECT_NE(dropout(x).to_vector<float>(), x.to_vector<float>());
  dropout.eval();
  EXPECT_EQ(dropout(x).impl(), x.impl());
  BatchNorm2d bn(2);
  const Tensor images = randn({4, 2, 3, 3});
  bn(images);
  EXPECT_NE(bn.running_mean.at({0}), 0.0f);  // training updated the running statistics
  EXPECT_NE(bn.running_var.at({1}), 1.0f);
  bn.eval();
  const Tensor before = bn.running_mean.clone();
  bn(images);
  expect_same_values(bn.running_mean, before, 0, 0);  // eval leaves it alone
}

TEST(Layers, DropoutMaskDoesNotDependOnHowTheBatchIsCut) {
  // DESIGN.md decision 9: the mask is keyed by (seed, step, layer) and numbered from the
  // sample's position in the mini-batch, so two micro-batches draw what the whole batch draws.
  Dropout dropout(0.3f, 5);
  const Tensor x = randn({6, 10});
  Tensor whole, first, second;
  {
    ForwardContextGuard context({11, 3, 0});
    whole = dropout(x);
  }
  {
    ForwardContextGuard context({11, 3, 0});
    first = dropout(x.narrow(0, 0, 2));
  }
  {
    ForwardContextGuard context({11, 3, 2});
    second = dropout(x.narrow(0, 2, 4));
  }
  expect_same_values(concat({first, second}, 0), whole, 0, 0);
  ForwardContextGuard next_step({11, 4, 0});
  EXPECT_NE(dropout(x).to_vector<float>(), whole.to_vector<float>());
}

TEST(Transformer, AttentionOverTokenSlicesEqualsTheWholeSequence) {
  // TeraPipe section 3: a later slice attends over the keys and values of earlier ones;
  // backwarding the slices in reverse hands those their gradients.
  Generator g(3);
  CausalSelfAttention attention(16, 4, 0.0f, 1, g);
  Tensor x = randn({2, 10, 16}, g);
  x.set_requires_grad(true);
  const Tensor upstream = randn({2, 10, 16}, g);
  const Tensor whole = attention(x);
  const std::vector<Tensor> expected = grad({whole}, {upstream}, {x, attention.qkv->weight});

  KeyValueCache cache;
  std::vector<Tensor> slices, outputs;
  for (auto [slice, first, length] : {std::tuple{0, 0, 6}, {1, 6, 1}, {2, 7, 3}}) {
    KeyValueCache::Scope scope(cache, slice);
    slices.push_back(x.detach().narrow(1, first, length).contiguous());
    slices.back().set_requires_grad(true);
    outputs.push_back(attention(slices.back()));
  }
  expect_same_values(concat(outputs, 1), whole, 1e-5f);
  attention.zero_grad();
  for (int slice = 2, end = 10; slice >= 0; --slice) {
    const int64_t length = outputs[slice].shape()[1];
    std::vector<Tensor> roots{outputs[slice]}, gradients{upstream.narrow(1, end - length, length).contiguous()};
    cache.add_backward_roots(slice, roots, gradients);
    EXPECT_EQ(roots.size(), slice == 2 ? 1u : 3u);  // the output, then keys and values read later
    backward(roots, gradients);
    cache.release(slice);
    end -= length;
  }
  expect_same_values(concat({slices[0].grad(), slices[1].grad(), slices[2].grad()}, 1), expected[0], 1e-5f);
  expect_same_values(attention.qkv->weight.grad(), expected[1], 1e-5f);
  EXPECT_EQ(cache.bytes(), 0);
}

TEST(Transformer, TokenSlicesOutOfOrderAreRefused) {
  Generator g(3);
  CausalSelfAttention attention(16, 4, 0.0f, 1, g);
  KeyValueCache cache;
  EXPECT_THROW_WITH(KeyValueCache::Scope(cache, 1), "slice 1 forwarded before slice 0");
  Tensor out0, out1;
  {
    KeyValueCache::Scope scope(cache, 0);
    out0 = attention(randn({1, 2, 16}, g));
  }
  {
    KeyValueCache::Scope scope(cache, 1);
    out1 = attention(randn({1, 2, 16}, g));
  }
  std::vector<Tensor> roots, gradients;
  EXPECT_THROW_WITH(cache.add_backward_roots(0, roots, gradients), "slice 0 backwarded out of order");
}

TEST(Transformer, SlicedGPTForwardMatchesTheWholeSequenceWithDropout) {
  // Positions and dropout masks follow the absolute token position (TeraPipe: slicing
  // changes nothing but the order of work).
  auto gpt = make_gpt({.vocabulary = 50, .context = 16, .dim = 32, .layers = 2, .heads = 4, .dropout = 0.2f});
  Generator g(5);
  const Tensor ids = randint(0, 50, {3, 12}, g);
  NoGradGuard no_grad;
  Tensor whole;
  {
    ForwardContextGuard context({.seed = 9, .step = 2, .sample_offset = 4});
    whole = (*gpt)(ids);
  }
  KeyValueCache cache;
  std::vector<Tensor> pieces;
  int64_t first = 0;
  for (int64_t length : {5, 1, 6}) {
    ForwardContextGuard context({.seed = 9, .step = 2, .sample_offset = 4, .token_offset = first, .sequence_tokens = 12});
    KeyValueCache::Scope scope(cache, static_cast<int>(pieces.size()));
    pieces.push_back((*gpt)(ids.narrow(1, first, length).contiguous()));
    first += length;
  }
  expect_same_values(concat(pieces, 1), whole, 1e-5f);
}

TEST(Transformer, GPTIsASequentialOfEmbeddingBlocksAndHead) {
  auto gpt = make_gpt({.vocabulary = 50, .context = 16, .dim = 32, .layers = 3, .heads = 4, .dropout = 0.1f});
  ASSERT_EQ(gpt->size(), 5u);
  EXPECT_EQ(gpt->name_of(0), "embedding");
  EXPECT_EQ((*gpt)[2]->type_name(), "TransformerBlock");
  EXPECT_EQ(gpt->name_of(4), "head");
  Generator g(4);
  const Tensor ids = randint(0, 50, {2, 16}, g);
  EXPECT_EQ((*gpt)(ids).shape(), (Shape{2, 16, 50}));
  EXPECT_THROW_WITH((*gpt)(randint(0, 50, {2, 17}, g)), "17 tokens", "context of 16");
  // A causal model: changing a later token leaves earlier logits alone.
  gpt->eval();
  Tensor changed = ids.clone();
  changed.data<int32_t>()[10] = (changed.data<int32_t>()[10] + 1) % 50;
  expect_same_values((*gpt)(changed).narrow(1, 0, 10), (*gpt)(ids).narrow(1, 0, 10), 0, 0);
}

TEST(Optim, ClipGradNormScalesToTheLimit) {
  const Tensor a = zeros({2}).set_requires_grad(), b = zeros({1}).set_requires_grad();
  a.set_grad(from_vector({3, 0}, {2}));
  b.set_grad(from_vector({4}, {1}));
  EXPECT_FLOAT_EQ(clip_grad_norm({a, b}, 1.0f), 5.0f);  // sqrt(9 + 16)
  expect_values(a.grad(), {0.6f, 0.0f});
  expect_values(b.grad(), {0.8f});
}

// The trainer clips by handing clip_factor's factor to step(), which scales each gradient as it
// reads it; the oracle is the pass it replaces: clip_grad_norm's scaled gradients, then a step.
TEST(Optim, AStepWithTheClipFactorIsClippingThenAStepBitForBit) {
  Generator g(9);
  const Tensor start_w = randn({37, 29}, g), start_b = randn({1003}, g);  // decayed, not decayed; ragged vectors
  std::vector<std::vector<Tensor>> grads;
  for (int step = 0; step < 3; ++step) grads.push_back({randn({37, 29}, g), randn({1003}, g)});
  for (const float max_norm : {0.5f, 1e6f}) {  // clips every step, never clips
    for (const bool adamw : {true, false}) {
      std::vector<Tensor> results[2];
      for (const bool folded : {false, true}) {
        const Tensor w = start_w.clone().set_requires_grad(), b = start_b.clone().set_requires_grad();
        const NamedTensors named{{"w", w}, {"b", b}};
        std::unique_ptr<Optimizer> optimizer;
        if (adamw) optimizer = std::make_unique<AdamW>(named, AdamWOptions{.lr = 0.01f, .weight_decay = 0.1f});
        else optimizer = std::make_unique<SGD>(named, SgdOptions{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .nesterov = true});
        for (const std::vector<Tensor>& step_grads : grads) {
          w.set_grad(step_grads[0].clone());
          b.set_grad(step_grads[1].clone());
          if (folded) {
            optimizer->step(clip_factor(squared_gradient_norms({w, b}), max_norm));
          } else {
            clip_grad_norm({w, b}, max_norm);
            optimizer->step();
          }
        }
        results[folded] = {w, b};
        for (const auto& [name, state] : optimizer->state_dict()) results[folded].push_back(state);
      }
      ASSERT_EQ(results[0].size(), results[1].size());
      for (size_t i = 0; i < results[0].size(); ++i) {
        SCOPED_TRACE((adamw ? "AdamW, tensor " : "SGD, tensor ") + std::to_string(i) + ", max norm " + std::to_string(max_norm));
        expect_same_values(results[1][i], results[0][i], 0.0f, 0.0f);
      }
    }
  }
  EXPECT_FLOAT_EQ(clip_factor({9.0, 16.0}, 1.0f), 0.2f);  // norm 5
  EXPECT_EQ(clip_factor({9.0, 16.0}, 5.0f), 1.0f);
}

TEST(Optim, GradientNormsSumEveryEntryOfRaggedRuns) {
  // 2500 entries: two full runs of 1024 and a ragged third, read through a transposed view.
  Generator g(3);
  const Tensor a = zeros({50, 50}).set_requires_grad(), b = zeros({7}).set_requires_grad();
  a.set_grad(randn({50, 50}, g).transpose(0, 1));
  b.set_grad(randn({7}, g));
  const std::vector<double> squares = squared_gradient_norms({a, b});
  ASSERT_EQ(squares.size(), 2u);
  for (int which = 0; which < 2; ++which) {
    const Tensor grad = (which == 0 ? a : b).grad().contiguous();
    double expected = 0.0;  // the oracle: one double per entry, in order
    for (int64_t i = 0; i < grad.numel(); ++i) expected += double{grad.data<float>()[i]} * grad.data<float>()[i];
    EXPECT_NEAR(squares[static_cast<size_t>(which)], expected, 1e-6 * expected);
  }
}

TEST(Optim, WarmupCosineSchedule) {
  const LearningRateSchedule s{LearningRateSchedule::Kind::WarmupCosine, 1.0f, 10, 110, 0.1f};
  EXPECT_FLOAT_EQ(s.at(0), 0.1f);    // (0 + 1) / 10 of the peak
  EXPECT_FLOAT_EQ(s.at(9), 1.0f);
  EXPECT_FLOAT_EQ(s.at(10), 1.0f);   // cosine starts at the peak
  EXPECT_NEAR(s.at(60), 0.55f, 1e-6);  // halfway: min + (1 - min) / 2
  EXPECT_NEAR(s.at(110), 0.1f, 1e-6);
}

TEST(Optim, StateDictResumesTheSameTrajectory) {
  Generator g(5);
  const Tensor x = randn({8, 4}, g), y = randn({8, 1}, g);
  auto run = [&](Linear& model, Optimizer& optimizer, int steps) {
    std::vector<float> losses;
    for (int i = 0; i < steps; ++i) {
      const Tensor loss = mse_loss(model(x), y);
      loss.backward();
      optimizer.step();
      optimizer.zero_grad();
      losses.push_back(loss.item());
    }
    return losses;
  };
  Generator ga(6), gb(6);
  Linear a(4, 1, ga), b(4, 1, gb);
  AdamW opt_a(a.named_parameters(), {.lr = 0.05f}), opt_b(b.named_parameters(), {.lr = 0.05f});
  const std::vector<float> straight = run(a, opt_a, 10);
  std::vector<float> resumed = run(b, opt_b, 4);
  Generator gc(99);
  Linear c(4, 1, gc);
  AdamW opt_c(c.named_parameters(), {.lr = 0.05f});
  c.load_state_dict(b.state_dict());
  opt_c.load_state_dict(opt_b.state_dict());
  for (float loss : run(c, opt_c, 6)) resumed.push_back(loss);
  EXPECT_EQ(resumed, straight);
}

TEST(Safetensors, RoundTripsTensorsAndMetadata) {
  const std::string path = temporary_path("round_trip.safetensors");
  const Tensor a = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), b = from_int_vector({7, -8}, {2});
  save_safetensors(path, {{"a", a.transpose(0, 1)}, {"b", b}}, {{"step", "12"}, {"note", "quote\" and \\"}});
  const SafetensorsFile file = load_safetensors(path);
  expect_values(file.tensors.at("a"), {1, 4, 2, 5, 3, 6});
  EXPECT_EQ(file.tensors.at("b").to_vector<int32_t>(), (std::vector<int32_t>{7, -8}));
  EXPECT_EQ(file.metadata.at("step"), "12");
  EXPECT_EQ(file.metadata.at("note"), "quote\" and \\");
  // The header begins with its little-endian length, and the JSON is padded to 8 bytes.
  std::ifstream in(path, std::ios::binary);
  unsigned char size_bytes[8];
  in.read(reinterpret_cast<char*>(size_bytes), 8);
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= static_cast<uint64_t>(size_bytes[i]) << (8 * i);
  EXPECT_EQ(size % 8, 0u);
}

TEST(ModelFile, LoadsTheModelWithoutTheTrainingStateAndRebuildsItFromTheMetadata) {
  const GPTConfig config{.vocabulary = 31, .context = 8, .dim = 16, .layers = 2, .heads = 2, .dropout = 0.0f, .seed = 9};
  auto trained = make_gpt(config);
  std::map<std::string, Tensor> tensors = trained->state_dict();
  tensors["optimizer.step"] = full({}, 3.0f);  // training state, as `minipipe train --save` adds it
  Metadata metadata = gpt_metadata(config);
  metadata["step"] = "3";
  const std::string path = temporary_path("model_file.safetensors");
  save_safetensors(path, tensors, metadata);

  auto fresh = make_gpt({.vocabulary = 31, .context = 8, .dim = 16, .layers = 2, .heads = 2, .seed = 1});
  load_model(path, *fresh);
  for (const auto& [name, t] : trained->state_dict()) EXPECT_EQ(fresh->state_dict().at(name).to_vector<float>(), t.to_vector<float>()) << name;
  auto rebuilt = make_gpt_from(path);  // configuration from the file's metadata
  EXPECT_EQ(rebuilt->parameter_count(), trained->parameter_count());
  for (const auto& [name, t] : trained->state_dict()) EXPECT_EQ(rebuilt->state_dict().at(name).to_vector<float>(), t.to_vector<float>()) << name;

  auto deeper = make_gpt({.vocabulary = 31, .context = 8, .dim = 16, .layers = 3, .heads = 2});
  EXPECT_THROW_WITH(load_model(path, *deeper), "does not fit this model", "missing", "block2.", "make_gpt_from");
  auto resnet = make_resnet({.width = 4, .stages = 2});
  EXPECT_THROW_WITH(load_model(path, *resnet), "32 missing (", "classifier.weight", "29 unexpected (", "block0.ln1.weight");
  EXPECT_THROW_WITH(make_resnet_from(path), "holds a gpt model, not a cnn");
  metadata["layers"] = "two";
  save_safetensors(path, tensors, metadata);
  EXPECT_THROW_WITH(make_gpt_from(path), "metadata 'layers' is 'two', not a whole number");
  std::remove(path.c_str());
}

TEST(Safetensors, TruncatedOrCorruptFilesAreRefused) {
  const std::string path = temporary_path("bad.safetensors");
  save_safetensors(path, {{"w", zeros({100})}});
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto write = [&](const std::string& content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
  };
  write(bytes.substr(0, bytes.size() - 10));
  EXPECT_THROW_WITH(load_safetensors(path), path, "truncated", "\"w\"");
  write(bytes.substr(0, 5));
  EXPECT_THROW_WITH(load_safetensors(path), "truncated");
  std::string corrupt = bytes;
  corrupt[9] = '#';
  write(corrupt);
  EXPECT_THROW_WITH(load_safetensors(path), "not valid JSON");
  EXPECT_THROW_WITH(load_safetensors(temporary_path("missing.safetensors")), "cannot open");
}

}  // namespace
}  // namespace minipipe::nn

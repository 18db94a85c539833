// datasets/: readers on files written here (good and broken), the loader's seeded order
// and resumability, micro-batch splitting, text windows.
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>

#include "datasets/readers.h"
#include "tensor/factories.h"
#include "test_helpers.h"

namespace minipipe::datasets {
namespace {

using testing::expect_values;

std::string path_of(const std::string& name) { return ::testing::TempDir() + "/" + name; }

void write(const std::string& path, const std::string& bytes, bool gzip = false) {
  if (gzip) {
    gzFile file = gzopen(path.c_str(), "wb");
    gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(file);
    return;
  }
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string u32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// Two 2x3 images and their labels, in IDX format.
std::string idx_images(uint32_t count = 2) {
  std::string bytes = u32(0x803) + u32(count) + u32(2) + u32(3);
  for (uint32_t i = 0; i < count * 6; ++i) bytes += static_cast<char>(i * 51 % 256);
  return bytes;
}
std::string idx_labels(uint32_t count = 2) {
  std::string bytes = u32(0x801) + u32(count);
  for (uint32_t i = 0; i < count; ++i) bytes += static_cast<char>(i * 7 % 10);
  return bytes;
}

TEST(Readers, IdxReadsRawAndGzipFiles) {
  write(path_of("images"), idx_images());
  write(path_of("labels.gz"), idx_labels(), true);
  const TensorDataset data = load_idx(path_of("images"), path_of("labels.gz"));
  EXPECT_EQ(data.inputs.shape(), (Shape{2, 1, 2, 3}));
  expect_values(data.inputs.narrow(0, 0, 1), {0, 51 / 255.0f, 102 / 255.0f, 153 / 255.0f, 204 / 255.0f, 1.0f});
  EXPECT_EQ(data.targets.to_vector<int32_t>(), (std::vector<int32_t>{0, 7}));
}

TEST(Readers, BadIdxFilesNameTheFileAndTheProblem) {
  write(path_of("images"), idx_images());
  write(path_of("labels"), idx_labels());
  EXPECT_THROW_WITH(load_idx(path_of("labels"), path_of("images")), "labels", "wrong magic number", "swapped");
  write(path_of("short"), idx_images().substr(0, 20));
  EXPECT_THROW_WITH(load_idx(path_of("short"), path_of("labels")), "short", "truncated");
  write(path_of("three_labels"), idx_labels(3));
  EXPECT_THROW_WITH(load_idx(path_of("images"), path_of("three_labels")), "3 labels for 2 images");
  EXPECT_THROW_WITH(load_idx(path_of("nowhere"), path_of("labels")), "nowhere", "cannot open");
  write(path_of("broken.gz"), std::string("\x1f\x8b\x08\x00garbage", 12));
  EXPECT_THROW_WITH(load_idx(path_of("broken.gz"), path_of("labels")), "broken.gz");
}

TEST(Readers, Cifar10RecordsAndTheirErrors) {
  std::string record(1 + 3072, '\0');
  record[0] = 3;
  record[1] = static_cast<char>(255);
  write(path_of("cifar.bin"), record + record);
  const TensorDataset data = load_cifar10({path_of("cifar.bin")});
  EXPECT_EQ(data.inputs.shape(), (Shape{2, 3, 32, 32}));
  EXPECT_EQ(data.targets.to_vector<int32_t>(), (std::vector<int32_t>{3, 3}));
  EXPECT_FLOAT_EQ(data.inputs.at({1, 0, 0, 0}), 1.0f);
  write(path_of("cifar_short.bin"), record.substr(0, 100));
  EXPECT_THROW_WITH(load_cifar10({path_of("cifar_short.bin")}), "cifar_short.bin", "3073-byte");
}

TEST(Readers, DigitsCsvAndText) {
  std::string row;
  for (int i = 0; i < 64; ++i) row += std::to_string(i % 17) + ",";
  write(path_of("digits.csv"), row + "4\n" + row + "9\n");
  const TensorDataset digits = load_digits_csv(path_of("digits.csv"));
  EXPECT_EQ(digits.inputs.shape(), (Shape{2, 1, 8, 8}));
  EXPECT_FLOAT_EQ(digits.inputs.at({0, 0, 2, 0}), 16 / 16.0f);  // pixel 16 has value 16
  EXPECT_EQ(digits.targets.to_vector<int32_t>(), (std::vector<int32_t>{4, 9}));
  write(path_of("digits_bad.csv"), "1,2,3\n");
  EXPECT_THROW_WITH(load_digits_csv(path_of("digits_bad.csv")), "line 1", "3 fields");
  write(path_of("empty.txt"), "");
  EXPECT_THROW_WITH(load_text(path_of("empty.txt")), "empty.txt", "empty");
  write(path_of("text.txt.gz"), "hello", true);
  EXPECT_EQ(load_text(path_of("text.txt.gz")).tokens, (std::vector<int32_t>{'h', 'e', 'l', 'l', 'o'}));
}

TEST(Readers, BundledDataIsThere) {
  const TensorDataset digits = load_digits_csv(MINIPIPE_SOURCE_DATA_DIR "/digits.csv.gz");
  EXPECT_EQ(digits.size(), 1797);
  EXPECT_GT(load_text(MINIPIPE_SOURCE_DATA_DIR "/tom-sawyer.txt.gz").tokens.size(), 380000u);
}

TensorDataset numbered(int64_t n) {
  std::vector<float> values(n);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<float>(i), labels[i] = static_cast<int32_t>(i);
  return {from_vector(values, {n, 1}), from_int_vector(labels, {n})};
}

TEST(DataLoader, SeededShuffleVisitsEverySampleOncePerEpoch) {
  const DataLoader loader(numbered(10), 3, true, 42);  // drop_last: 3 batches an epoch
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  std::vector<int32_t> seen;
  for (int64_t step = 0; step < 3; ++step)
    for (int32_t v : loader.batch_at(step).targets.to_vector<int32_t>()) seen.push_back(v);
  std::vector<int32_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());  // no repeats
  EXPECT_NE(seen, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));          // shuffled
  // Another loader with the same seed gives the same batch at any step (resume), and the
  // next epoch is ordered differently.
  const DataLoader again(numbered(10), 3, true, 42);
  EXPECT_EQ(again.batch_at(7).targets.to_vector<int32_t>(), loader.batch_at(7).targets.to_vector<int32_t>());
  EXPECT_NE(loader.batch_at(3).targets.to_vector<int32_t>(), loader.batch_at(0).targets.to_vector<int32_t>());
  EXPECT_THROW_WITH(DataLoader(numbered(2), 3, true, 0), "2 samples", "batch of 3");
}

TEST(DataLoader, TargetsAndInputsOfAnyDtype) {
  // Regression targets (float) and integer inputs (token ids) batch like images and labels.
  const TensorDataset regression{from_vector({0, 1, 2, 3, 4, 5}, {3, 2}), from_vector({10, 11, 12}, {3, 1})};
  const Batch batch = DataLoader(regression, 2, false, 0).batch_at(1);  // drop_last: batch 1 is batch 0 of epoch 1
  EXPECT_EQ(batch.targets.dtype(), DType::Float32);
  EXPECT_EQ(batch.targets.to_vector<float>(), (std::vector<float>{10, 11}));
  EXPECT_EQ(batch.inputs.to_vector<float>(), (std::vector<float>{0, 1, 2, 3}));
  const TensorDataset tokens{from_int_vector({5, 6, 7, 8}, {2, 2}), from_int_vector({1, 2}, {2})};
  const std::vector<Batch> all = DataLoader(tokens, 2, false, 0, false).sequential_batches();
  EXPECT_EQ(all.at(0).inputs.to_vector<int32_t>(), (std::vector<int32_t>{5, 6, 7, 8}));
}

TEST(DataLoader, MicroBatchesKnowWhereTheyStart) {
  const Batch batch{numbered(7).inputs, numbered(7).targets, 0};
  const std::vector<Batch> parts = split_into_micro_batches(batch, 3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].inputs.shape()[0], 3);
  EXPECT_EQ(parts[1].sample_offset, 3);
  EXPECT_EQ(parts[2].sample_offset, 5);
  EXPECT_EQ(parts[2].targets.to_vector<int32_t>(), (std::vector<int32_t>{5, 6}));
  EXPECT_THROW_WITH(split_into_micro_batches(batch, 8), "7 samples", "8 micro-batches");
}

TEST(TextCorpus, WindowsAreShiftedByOneAndReproducible) {
  TextCorpus text;
  for (int i = 0; i < 100; ++i) text.tokens.push_back(i);
  const Batch batch = text.sample(4, 8, 1, 5);
  EXPECT_EQ(batch.inputs.shape(), (Shape{4, 8}));
  const std::vector<int32_t> in = batch.inputs.to_vector<int32_t>(), target = batch.targets.to_vector<int32_t>();
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(target[i], in[i] + 1);
  EXPECT_EQ(text.sample(4, 8, 1, 5).inputs.to_vector<int32_t>(), in);
  EXPECT_NE(text.sample(4, 8, 1, 6).inputs.to_vector<int32_t>(), in);
  const auto [train, validation] = text.split(0.1);
  EXPECT_EQ(train.tokens.size(), 90u);
  EXPECT_EQ(validation.tokens.front(), 90);
  EXPECT_THROW_WITH(validation.sample(1, 20, 0, 0), "too short");
}

}  // namespace
}  // namespace minipipe::datasets

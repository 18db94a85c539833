#pragma once
// Readers for dataset files in their own formats. Every reader throws std::runtime_error
// naming the file and what is wrong with it (missing, wrong magic number, truncated, counts
// that disagree, empty).
#include <cstdint>
#include <string>

#include "datasets/dataset.h"

namespace minipipe::datasets {

// MNIST / Fashion-MNIST IDX files, gzip-compressed or raw: images (magic 0x00000803)
// become float [N, 1, H, W] in [0, 1], labels (magic 0x00000801) int32 [N].
TensorDataset load_idx(const std::string& images_path, const std::string& labels_path);

// CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (3 x 32 x 32).
// Several files are concatenated. Images become float [N, 3, 32, 32] in [0, 1].
TensorDataset load_cifar10(const std::vector<std::string>& batch_paths);

// The sklearn digits set: CSV (optionally gzip) of 64 pixel values 0..16 and a label per
// line. Images become float [N, 1, 8, 8] in [0, 1].
TensorDataset load_digits_csv(const std::string& path);

// A text file as bytes (gzip read transparently).
TextCorpus load_text(const std::string& path);

// The same readers over bytes already in memory, `path` naming them in messages (the file
// readers above call these; so does the fuzzer, tests/fuzz).
TensorDataset parse_idx(const std::string& images, const std::string& labels, const std::string& images_path,
                        const std::string& labels_path);
TensorDataset parse_cifar10(const std::string& bytes, const std::string& path);
TensorDataset parse_digits_csv(const std::string& bytes, const std::string& path);
TextCorpus parse_text(const std::string& bytes, const std::string& path);

// Reads a whole file, gunzipping it if it is gzip-compressed; refuses a folder, and a file
// that holds (or decompresses to) more than max_bytes.
std::string read_file_maybe_gzip(const std::string& path, uint64_t max_bytes = uint64_t{4} << 30);

// What a file's bytes look like when they are not text: "MNIST-style IDX images",
// "CIFAR-10 binary records", "a safetensors checkpoint", "binary data"; "" for text.
std::string describe_binary(const std::string& bytes);

}  // namespace minipipe::datasets

// Hostile input: damaged and malicious files fail fast, each with its own message, without a
// crash and without allocating what their headers claim.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

#include "nn/safetensors.h"
#include "tensor/allocator.h"
#include "tensor/factories.h"
#include "test_helpers.h"

namespace minipipe::nn {
namespace {

std::string temporary_path(const std::string& name) { return ::testing::TempDir() + "/" + name; }

// A safetensors file with this header text and `data_bytes` zero bytes of data.
std::string write_safetensors(const std::string& name, const std::string& header, size_t data_bytes, uint64_t header_size = 0) {
  const std::string path = temporary_path(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t size = header_size ? header_size : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(size >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
  return path;
}

// The load fails within a second, its message holds every fragment, and no tensor memory
// was taken.
void expect_refused(const std::string& path, const std::vector<std::string>& fragments) {
  reset_peak_memory(Device::cpu());
  const int64_t before = memory_stats(Device::cpu()).current_bytes;
  const auto start = std::chrono::steady_clock::now();
  try {
    load_safetensors(path);
    ADD_FAILURE() << path << " was accepted";
  } catch (const std::runtime_error& error) {
    for (const std::string& fragment : fragments)
      EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what() << " lacks " << fragment;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1)) << path;
  EXPECT_EQ(memory_stats(Device::cpu()).peak_bytes, before) << path;
}

const std::string kTwoTensors =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";

TEST(HostileSafetensors, AWellFormedFileLoads) {
  const SafetensorsFile file = load_safetensors(write_safetensors("good.safetensors", kTwoTensors, 12));
  EXPECT_EQ(file.tensors.size(), 2u);
}

TEST(HostileSafetensors, AHeaderNested100000DeepIsRefusedWithoutRecursing) {
  const std::string deep = R"({"a":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_refused(write_safetensors("deep.safetensors", deep, 0), {"nesting deeper than 64 levels"});
}

TEST(HostileSafetensors, AHeaderLengthOneByteShortIsRefused) {
  // The old reader shifted every tensor by a byte and trained on garbage.
  expect_refused(write_safetensors("short.safetensors", kTwoTensors + " ", 12, kTwoTensors.size()),
                 {"1 trailing bytes after the last tensor's data"});
  expect_refused(write_safetensors("short2.safetensors", kTwoTensors, 12, kTwoTensors.size() - 1), {"not valid JSON"});
}

TEST(HostileSafetensors, DuplicateNamesGapsOverlapsAndTrailingBytesAreRefused) {
  expect_refused(write_safetensors("duplicate.safetensors",
                                   R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                   8),
                 {"the key \"a\" a second time"});
  expect_refused(write_safetensors("gap.safetensors",
                                   R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                   12),
                 {"data bytes 4..8 belong to no tensor"});
  expect_refused(write_safetensors("overlap.safetensors",
                                   R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                   8),
                 {"\"a\" and \"b\" overlap"});
  expect_refused(write_safetensors("trailing.safetensors", kTwoTensors, 20), {"8 trailing bytes"});
  expect_refused(write_safetensors("truncated.safetensors", kTwoTensors, 10), {"truncated", "\"b\""});
}

TEST(HostileSafetensors, HugeSizesAreRefusedBeforeAllocating) {
  expect_refused(write_safetensors("huge-header.safetensors", "{}", 0, uint64_t{1} << 60), {"over the format's limit"});
  expect_refused(write_safetensors("past-end.safetensors", "{}", 0, 1000), {"the header claims 1000 bytes but only 2 follow"});
  expect_refused(write_safetensors("huge-shape.safetensors",
                                   R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
                 {"more elements than 64 bits can count"});
  expect_refused(write_safetensors("huge-tensor.safetensors",
                                   R"({"a":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}})", 0),
                 {"truncated", "\"a\""});
  expect_refused(write_safetensors("huge-number.safetensors",
                                   R"({"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}})", 4),
                 {"too large for 64 bits"});
  expect_refused(write_safetensors("negative.safetensors", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                 {"sizes >= 0"});
  expect_refused(write_safetensors("mismatch.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                 {"needs 12 bytes, its data_offsets give 8"});
}

TEST(HostileSafetensors, TheHeadersOtherRulesEachHaveTheirMessage) {
  expect_refused(write_safetensors("dtype.safetensors", R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4),
                 {"\"Q7\", which is not a safetensors dtype"});
  expect_refused(write_safetensors("bf16.safetensors", R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4),
                 {"minipipe reads F32 and I32"});
  expect_refused(write_safetensors("metadata.safetensors", R"({"__metadata__":{"step":12}})", 0),
                 {"metadata \"step\" is a number; the format allows only strings"});
  expect_refused(write_safetensors("utf8.safetensors", "{\"a\xff\":1}", 0), {"malformed UTF-8"});
  expect_refused(write_safetensors("control.safetensors", "{\"a\x01\":1}", 0), {"control character"});
  expect_refused(write_safetensors("float.safetensors", R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
                 {"not whole"});
  expect_refused(write_safetensors("literal.safetensors", R"({"a":true})", 0), {"only objects, arrays, strings and whole numbers"});
  expect_refused(write_safetensors("not-object.safetensors", R"({"a":[1,2]})", 0), {"tensor \"a\" is an array"});
  expect_refused(write_safetensors("no-brace.safetensors", "[1]", 0), {"does not start with '{'"});
  expect_refused(write_safetensors("missing-field.safetensors", R"({"a":{"dtype":"F32","shape":[1]}})", 4),
                 {"has no \"data_offsets\""});
  const std::string folder = ::testing::TempDir();
  EXPECT_THROW_WITH(load_safetensors(folder), "is a folder");
}

TEST(HostileSafetensors, EscapesDecodeToUtf8) {
  const SafetensorsFile file = load_safetensors(write_safetensors(
      "escapes.safetensors", R"({"__metadata__":{"k":"\u00e9\ud83d\ude00\n"}})", 0));
  EXPECT_EQ(file.metadata.at("k"), "\xc3\xa9\xf0\x9f\x98\x80\n");
  expect_refused(write_safetensors("surrogate.safetensors", R"({"__metadata__":{"k":"\ud83d"}})", 0), {"lone UTF-16 surrogate"});
}

}  // namespace
}  // namespace minipipe::nn

#pragma once
// TeraPipe's token slices (Li et al. 2021): the lengths that cut each sequence of a batch,
// in order. Slice i covers tokens offset(i) .. offset(i) + lengths[i] - 1.
#include <cstdint>
#include <string>
#include <vector>

namespace minipipe::pipeline {

// `slices` lengths as equal as possible, the longer ones first.
std::vector<int64_t> uniform_token_slices(int64_t tokens, int slices);
// Throws, naming the fix, unless every length is positive and they add up to `tokens`.
void check_token_slices(const std::vector<int64_t>& lengths, int64_t tokens);
// The first token of each slice.
std::vector<int64_t> token_slice_offsets(const std::vector<int64_t>& lengths);
// "128+128+64" (lengths joined by '+').
std::string format_token_slices(const std::vector<int64_t>& lengths);
// The lengths of "128+128+64", as format_token_slices writes them (and TeraPipe's planner
// prints them); throws, naming the text, unless each is a positive number.
std::vector<int64_t> parse_token_slices(const std::string& text);

}  // namespace minipipe::pipeline

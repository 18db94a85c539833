#pragma once
// A strict reader for the JSON of a safetensors header: objects, arrays, strings and whole
// numbers, nothing else; or, where the caller asks for all of JSON (traces and logs), fractions,
// true, false and null too. Untrusted input, so it bounds its own work: nesting deeper than
// kMaxJsonDepth is refused (no recursion can overflow the stack), every string must be valid
// UTF-8, numbers must fit in 64 bits, and an object may not repeat a key. Each violation
// throws JsonError saying what and at which byte.
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace minipipe::nn {

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr int kMaxJsonDepth = 64;

struct JsonValue {
  enum class Kind { Object, Array, String, Number, Boolean, Null } kind = Kind::Number;
  std::map<std::string, JsonValue> object;
  std::vector<JsonValue> array;
  std::string string;
  int64_t number = 0;  // a whole number
  double real = 0;     // any number (the whole one too)
  bool boolean = false;
  const char* kind_name() const;  // "an object", "an array", "a string", "a number", "a boolean", "null"
};

// `all_of_json`: numbers with a fraction or an exponent (into `real`), true, false and null are
// read instead of refused.
JsonValue parse_json(const std::string& text, bool all_of_json = false);

// "text" with control bytes written as \xNN, for messages about untrusted names.
std::string printable_quoted(const std::string& text);
// At most `most` bytes of untrusted text for a message, every byte outside printable ASCII
// written as \xNN, and "..." when cut.
std::string printable_excerpt(const std::string& text, size_t most);

}  // namespace minipipe::nn

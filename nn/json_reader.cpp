#include "nn/json_reader.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace minipipe::nn {

const char* JsonValue::kind_name() const {
  switch (kind) {
    case Kind::Object: return "an object";
    case Kind::Array: return "an array";
    case Kind::String: return "a string";
    case Kind::Number: return "a number";
    case Kind::Boolean: return "a boolean";
    case Kind::Null: return "null";
  }
  return "?";
}

std::string printable_quoted(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7F) {
      char code[8];
      std::snprintf(code, sizeof code, "\\x%02x", c);
      out += code;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string printable_excerpt(const std::string& text, size_t most) {
  std::string out;
  for (unsigned char c : text.substr(0, most)) {
    char code[8];
    std::snprintf(code, sizeof code, "\\x%02x", c);
    out += c < 0x20 || c >= 0x7F ? std::string(code) : std::string(1, static_cast<char>(c));
  }
  return text.size() > most ? out + "..." : out;
}

namespace {

class Reader {
 public:
  Reader(const std::string& text, bool fractions) : text_(text), fractions_(fractions) {}

  JsonValue document() {
    JsonValue v = value(1);
    skip_space();
    if (pos_ != text_.size()) error("trailing characters after the JSON value");
    return v;
  }

 private:
  JsonValue value(int depth) {
    if (depth > kMaxJsonDepth) error("nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    skip_space();
    JsonValue v;
    const char c = peek();
    if (c == '{') {
      v.kind = JsonValue::Kind::Object;
      ++pos_;
      if (next_is('}')) return v;
      do {
        skip_space();
        const size_t at = pos_;
        std::string key = string();
        skip_space();
        expect(':');
        JsonValue member = value(depth + 1);
        if (v.object.count(key)) error_at(at, "the key " + printable_quoted(key) + " a second time");
        v.object.emplace(std::move(key), std::move(member));
      } while (next_is(','));
      expect('}');
    } else if (c == '[') {
      v.kind = JsonValue::Kind::Array;
      ++pos_;
      if (next_is(']')) return v;
      do v.array.push_back(value(depth + 1));
      while (next_is(','));
      expect(']');
    } else if (c == '"') {
      v.kind = JsonValue::Kind::String;
      v.string = string();
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      number(v);
    } else if (fractions_ && (c == 't' || c == 'f')) {
      v.kind = JsonValue::Kind::Boolean;
      v.boolean = word("true");
      if (!v.boolean && !word("false")) error("a malformed literal");
    } else if (fractions_ && c == 'n') {
      v.kind = JsonValue::Kind::Null;
      if (!word("null")) error("a malformed literal");
    } else if (pos_ >= text_.size()) {
      error("an unexpected end");
    } else {
      error(std::string("an unexpected character (byte ") + std::to_string(static_cast<unsigned char>(c)) +
            "): only objects, arrays, strings and " + (fractions_ ? "numbers, true, false and null are read" : "whole numbers belong in a safetensors header"));
    }
    return v;
  }

  void number(JsonValue& v) {
    const size_t start = pos_;
    const bool negative = next_is('-');
    if (!std::isdigit(static_cast<unsigned char>(peek()))) error("a malformed number");
    uint64_t magnitude = 0;
    const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
    bool fits = true;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      const uint64_t digit = static_cast<uint64_t>(text_[pos_++] - '0');
      if (magnitude > (limit - digit) / 10) fits = false;
      if (fits) magnitude = magnitude * 10 + digit;
    }
    const bool whole = peek() != '.' && peek() != 'e' && peek() != 'E';
    if (!whole && !fractions_) error_at(start, "a number that is not whole");
    if (!whole) {
      if (next_is('.')) digits(start);
      if (next_is('e') || next_is('E')) {
        if (!next_is('+')) next_is('-');
        digits(start);
      }
    } else if (!fits) {
      if (!fractions_) error_at(start, "a number too large for 64 bits");
    } else {
      v.number = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
    }
    v.real = std::strtod(text_.substr(start, pos_ - start).c_str(), nullptr);
  }
  bool word(const char* literal) {  // consumes `literal` if it comes next
    const size_t n = std::char_traits<char>::length(literal);
    if (text_.compare(pos_, n, literal) != 0) return false;
    pos_ += n;
    return true;
  }
  void digits(size_t start) {  // one or more, after a decimal point or an exponent's sign
    if (!std::isdigit(static_cast<unsigned char>(peek()))) error_at(start, "a malformed number");
    while (std::isdigit(static_cast<unsigned char>(peek()))) ++pos_;
  }

  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) error("a string that never ends");
      const unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') break;
      if (c < 0x20) error("a control character inside a string");
      if (c == '\\') {
        escape(out);
        continue;
      }
      utf8_sequence(out);
    }
    ++pos_;
    return out;
  }

  // One UTF-8 sequence copied as it is, after checking it is well formed (RFC 3629).
  void utf8_sequence(std::string& out) {
    const size_t start = pos_;
    const unsigned char lead = static_cast<unsigned char>(text_[pos_]);
    const int length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || pos_ + length > text_.size()) error("malformed UTF-8");
    uint32_t code = length == 1 ? lead : lead & (0x7F >> length);
    for (int i = 1; i < length; ++i) {
      const unsigned char next = static_cast<unsigned char>(text_[pos_ + i]);
      if ((next >> 6) != 0x2) error("malformed UTF-8");
      code = (code << 6) | (next & 0x3F);
    }
    static const uint32_t smallest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) error("malformed UTF-8");
    out.append(text_, start, length);
    pos_ += length;
  }

  void escape(std::string& out) {
    ++pos_;  // the backslash
    const char e = pos_ < text_.size() ? text_[pos_++] : '\0';
    switch (e) {
      case '"': out += '"'; return;
      case '\\': out += '\\'; return;
      case '/': out += '/'; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': break;
      default: error("an unknown escape in a string");
    }
    uint32_t code = hex4();
    if (code >= 0xD800 && code <= 0xDBFF) {  // a surrogate pair: \uD83D\uDE00
      if (text_.compare(pos_, 2, "\\u") != 0) error("a lone UTF-16 surrogate");
      pos_ += 2;
      const uint32_t low = hex4();
      if (low < 0xDC00 || low > 0xDFFF) error("a lone UTF-16 surrogate");
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    } else if (code >= 0xDC00 && code <= 0xDFFF) {
      error("a lone UTF-16 surrogate");
    }
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  uint32_t hex4() {
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = pos_ < text_.size() ? text_[pos_++] : '\0';
      if (!std::isxdigit(static_cast<unsigned char>(h))) error("a malformed \\u escape");
      code = code * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return code;
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool next_is(char c) {
    skip_space();
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) error(std::string("a missing '") + c + "'");
    ++pos_;
  }
  [[noreturn]] void error(const std::string& what) const { error_at(pos_, what); }
  [[noreturn]] void error_at(size_t at, const std::string& what) const {
    throw JsonError(what + " at byte " + std::to_string(at));
  }

  const std::string& text_;
  const bool fractions_;
  size_t pos_ = 0;
};

}  // namespace

JsonValue parse_json(const std::string& text, bool fractions) { return Reader(text, fractions).document(); }

}  // namespace minipipe::nn

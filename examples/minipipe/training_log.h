#pragma once
// What a training run reports: JSON Lines for machines (--log-json FILE), and a progress
// bar with rate and ETA on a terminal, or plain lines when output is not a terminal.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace minipipe::cli {

// One number in printf's words: format_value("%.2f", 1.5) is "1.50".
std::string format_value(const char* pattern, double value);

// A flat JSON object built field by field.
class JsonObject {
 public:
  JsonObject& add(const std::string& key, double value);        // 6 significant digits
  JsonObject& add_exact(const std::string& key, double value);  // every digit (%.17g): reads back bit for bit
  JsonObject& add(const std::string& key, int64_t value);
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add_raw(const std::string& key, const std::string& json);  // an already-encoded value
  JsonObject& merge(const JsonObject& other);                            // appends other's fields
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
};

// [1,2,3]: a JSON array of whole numbers.
template <class Integer>
std::string json_list(const std::vector<Integer>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "]";
}

class TrainingLog {
 public:
  // json_path may be empty (no JSON Lines file); `unit` names what the rate counts.
  TrainingLog(const std::string& json_path, int64_t first_step, int64_t total_steps, std::string unit);
  ~TrainingLog();

  // `step` is the index of the step just taken; logs count completed steps (step + 1).
  void step(int64_t step, float loss, float learning_rate, int64_t items) { steps(step, {loss}, {learning_rate}, items); }
  // Steps first_step, first_step + 1, ... that finished together (pipedream streams several
  // mini-batches at once): one rate for all of them, and at most one line on the screen.
  void steps(int64_t first_step, const std::vector<float>& losses, const std::vector<float>& learning_rates,
             int64_t items_per_step);
  void evaluation(int64_t step, const JsonObject& fields, const std::string& text);
  void summary(const JsonObject& fields);
  void message(const std::string& text);  // a line for people only
  double elapsed_seconds() const;

 private:
  void write_json(const JsonObject& object);
  void clear_bar();

  std::FILE* json_ = nullptr;
  bool terminal_;
  int64_t first_step_, total_steps_;
  std::string unit_;
  std::chrono::steady_clock::time_point start_, last_print_;
  double items_ = 0;
  bool bar_shown_ = false;
};

}  // namespace minipipe::cli

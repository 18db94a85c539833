#include "training_log.h"

#include <unistd.h>

#include <cmath>
#include <stdexcept>

namespace minipipe::cli {

void JsonObject::key(const std::string& k) {
  if (!body_.empty()) body_ += ",";
  body_ += "\"" + k + "\":";
}
std::string format_value(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

namespace {
std::string json_number(double value, const char* format) {
  return std::isfinite(value) ? format_value(format, value) : "null";
}
}  // namespace

JsonObject& JsonObject::add(const std::string& k, double value) {
  key(k);
  body_ += json_number(value, "%.6g");
  return *this;
}
JsonObject& JsonObject::add_exact(const std::string& k, double value) {
  key(k);
  body_ += json_number(value, "%.17g");
  return *this;
}
JsonObject& JsonObject::add(const std::string& k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}
JsonObject& JsonObject::add(const std::string& k, const std::string& value) {
  key(k);
  body_ += "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') body_ += '\\';
    if (c == '\n') { body_ += "\\n"; continue; }
    body_ += c;
  }
  body_ += "\"";
  return *this;
}
JsonObject& JsonObject::merge(const JsonObject& other) {
  if (!other.body_.empty()) body_ += (body_.empty() ? "" : ",") + other.body_;
  return *this;
}
JsonObject& JsonObject::add_raw(const std::string& k, const std::string& json) {
  key(k);
  body_ += json;
  return *this;
}

TrainingLog::TrainingLog(const std::string& json_path, int64_t first_step, int64_t total_steps, std::string unit)
    : terminal_(isatty(fileno(stderr)) != 0), first_step_(first_step), total_steps_(total_steps), unit_(std::move(unit)),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {
  if (!json_path.empty()) {
    json_ = std::fopen(json_path.c_str(), first_step > 0 ? "a" : "w");
    if (!json_) throw std::runtime_error("cannot open --log-json file '" + json_path + "' for writing");
  }
}

TrainingLog::~TrainingLog() {
  clear_bar();
  if (json_) std::fclose(json_);
}

double TrainingLog::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void TrainingLog::write_json(const JsonObject& object) {
  if (!json_) return;
  std::fprintf(json_, "%s\n", object.str().c_str());
  std::fflush(json_);
}

void TrainingLog::clear_bar() {
  if (bar_shown_) std::fprintf(stderr, "\r\033[K");
  bar_shown_ = false;
}

void TrainingLog::steps(int64_t first_step, const std::vector<float>& losses, const std::vector<float>& learning_rates,
                        int64_t items_per_step) {
  const int64_t count = static_cast<int64_t>(losses.size());
  items_ += static_cast<double>(items_per_step * count);
  const double elapsed = elapsed_seconds();
  const double rate = elapsed > 0 ? items_ / elapsed : 0.0;
  for (int64_t i = 0; i < count; ++i)
    write_json(JsonObject().add("event", std::string("step")).add("step", first_step + i + 1)
                   .add_exact("loss", static_cast<double>(losses[i])).add("lr", static_cast<double>(learning_rates[i]))
                   .add(unit_ + "_per_second", rate));
  const int64_t step = first_step + count - 1;
  const float loss = losses.back(), learning_rate = learning_rates.back();
  const int64_t done = step + 1 - first_step_, total = total_steps_ - first_step_;
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : 0.0;
  const auto now = std::chrono::steady_clock::now();
  const bool last = step + 1 == total_steps_;
  if (terminal_) {
    if (!last && now - last_print_ < std::chrono::milliseconds(100)) return;
    constexpr int width = 30;
    const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\r\033[K[%s%s] %lld/%lld loss %.4f  %.0f %s/s  ETA %dm%02ds", std::string(filled, '=').c_str(),
                 std::string(width - filled, ' ').c_str(), static_cast<long long>(step + 1), static_cast<long long>(total_steps_),
                 loss, rate, unit_.c_str(), static_cast<int>(eta) / 60, static_cast<int>(eta) % 60);
    bar_shown_ = true;
  } else {
    // Plain lines, about every 10% (once for steps that finished together) and at the end.
    const int64_t every = std::max<int64_t>(1, total / 10), done_before = done - count;
    if (done / every == done_before / every && !last && done_before != 0) return;
    std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  %.0f %s/s  ETA %ds\n", static_cast<long long>(step + 1),
                 static_cast<long long>(total_steps_), loss, learning_rate, rate, unit_.c_str(), static_cast<int>(eta));
  }
  last_print_ = now;
}

void TrainingLog::evaluation(int64_t step, const JsonObject& fields, const std::string& text) {
  write_json(JsonObject().add("event", std::string("eval")).add("step", step + 1).merge(fields));
  message("eval at step " + std::to_string(step + 1) + ": " + text);
}

void TrainingLog::summary(const JsonObject& fields) { write_json(fields); }

void TrainingLog::message(const std::string& text) {
  clear_bar();
  std::fprintf(stderr, "%s\n", text.c_str());
}

}  // namespace minipipe::cli

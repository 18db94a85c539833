// A mutation fuzzer for the readers of untrusted input: the safetensors loader, the IDX,
// CIFAR-10, digits CSV and text readers, and the command-line parser (a seed there is a
// command line, one argument per line). It starts from the seed files under
// tests/fuzz/corpus/<target>/, applies a few random mutations (bit flips, interesting
// bytes and integers, insertions, deletions, copies, splices with another seed), and feeds
// the result to the reader in memory. An exception is the expected answer to a bad input;
// anything else (a crash, a sanitizer report, a hang) is a bug. Before it dies the program
// writes the input that killed it to --crash-dir, so that a longer campaign
// (scripts/fuzz.sh) can count distinct crashes and a developer can replay one.
//
//   fuzz_readers TARGET CORPUS_DIR [--runs N] [--seconds S] [--seed K] [--crash-dir DIR] [--replay FILE]
#include <algorithm>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "command_line.h"
#include "datasets/readers.h"
#include "nn/safetensors.h"
#include "pipeline/trace.h"

using namespace minipipe;

namespace {

std::string current_input;  // what the reader is working on, for the crash handler
std::string crash_dir = ".";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

extern "C" void write_crashing_input(int) {
  char name[64];
  std::snprintf(name, sizeof name, "/crash-%016llx", static_cast<unsigned long long>(fnv1a(current_input)));
  if (FILE* f = std::fopen((crash_dir + name).c_str(), "wb")) {
    std::fwrite(current_input.data(), 1, current_input.size(), f);
    std::fclose(f);
  }
}

extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));
void on_sanitizer_death() { write_crashing_input(0); }

// `minipipe` with the input's lines as arguments, parsed and not run. A refusal must be one
// line that starts "minipipe: error:" and holds only printable bytes; an exception that
// escapes the parser (main() would die of it) is a bug, reported as a crash.
void parse_command_line(const std::string& bytes) {
  std::vector<std::string> args{"minipipe"};
  std::istringstream lines(bytes);
  for (std::string line; std::getline(lines, line) && args.size() < 64;) args.push_back(line);
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  cli::CommandLine parsed;
  std::ostringstream out, err;
  int status = 0;
  bool runs = false;
  try {
    runs = cli::parse_command_line(static_cast<int>(argv.size()), argv.data(), parsed, status, out, err);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "an exception escaped the command-line parser: %s\n", e.what());
    std::abort();
  }
  if (runs || status == 0) return;
  const std::string message = err.str();
  const bool printable = std::all_of(message.begin(), message.end() - (message.empty() ? 0 : 1),
                                     [](char c) { return c >= 0x20 && c < 0x7F; });
  if (message.rfind("minipipe: error: ", 0) != 0 || message.back() != '\n' || !printable) {
    std::fprintf(stderr, "not one printable line: %s\n", message.c_str());
    std::abort();
  }
  throw std::invalid_argument(message);
}

// The readers under test, each over one input in memory.
const std::map<std::string, std::function<void(const std::string&)>> kTargets{
    {"safetensors",
     [](const std::string& bytes) {
       std::istringstream in(bytes);
       nn::read_safetensors(in, bytes.size(), "fuzz");
     }},
    {"idx",  // images and labels in one input: a 4-byte length of the images, then both
     [](const std::string& bytes) {
       const size_t split = bytes.size() >= 4 ? std::min<size_t>(bytes.size() - 4, static_cast<unsigned char>(bytes[0]) |
                                                                                        static_cast<unsigned char>(bytes[1]) << 8)
                                              : 0;
       const std::string rest = bytes.size() >= 4 ? bytes.substr(4) : "";
       datasets::parse_idx(rest.substr(0, split), rest.substr(std::min(split, rest.size())), "images", "labels");
     }},
    {"cifar", [](const std::string& bytes) { datasets::parse_cifar10(bytes, "fuzz"); }},
    {"csv", [](const std::string& bytes) { datasets::parse_digits_csv(bytes, "fuzz"); }},
    {"text", [](const std::string& bytes) { datasets::parse_text(bytes, "fuzz"); }},
    {"cli", [](const std::string& bytes) { parse_command_line(bytes); }},
    {"trace",  // a Chrome trace, then what `minipipe explain` computes from it
     [](const std::string& bytes) {
       const std::vector<pipeline::TraceEvent> events = pipeline::parse_chrome_trace(bytes);
       const int workers = pipeline::workers_in(events);
       pipeline::where_time_went(events, workers);
       pipeline::summarize(events, workers);
     }},
};

class Mutator {
 public:
  Mutator(uint64_t seed, const std::vector<std::string>& corpus) : random_(seed), corpus_(corpus) {}

  std::string next() {
    std::string input = corpus_[pick(corpus_.size())];
    for (size_t n = 1 + pick(5); n > 0; --n) mutate(input);
    return input;
  }

 private:
  size_t pick(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(random_); }

  void mutate(std::string& s) {
    static const unsigned char interesting_bytes[] = {0, 1, 0x7F, 0x80, 0xFF, '{', '}', '[', ']', '"', ':', ',', '\\', '-', '0',
                                                      '9', 'e', '.', '\n'};
    static const uint64_t interesting_numbers[] = {0, 1, 7, 8, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                                                   0x7FFFFFFFFFFFFFFFull, 0xFFFFFFFFFFFFFFFFull, 100000000, 3073};
    switch (pick(s.empty() ? 2 : 9)) {
      case 0:  // insert random bytes
        s.insert(pick(s.size() + 1), std::string(1 + pick(8), static_cast<char>(pick(256))));
        break;
      case 1: {  // splice with another seed
        const std::string& other = corpus_[pick(corpus_.size())];
        s = s.substr(0, pick(s.size() + 1)) + other.substr(pick(other.size() + 1));
        break;
      }
      case 2: s[pick(s.size())] ^= static_cast<char>(1 << pick(8)); break;
      case 3: s[pick(s.size())] = static_cast<char>(interesting_bytes[pick(sizeof interesting_bytes)]); break;
      case 4: {  // an interesting integer, little- or big-endian, 4 or 8 bytes wide
        const uint64_t value = interesting_numbers[pick(std::size(interesting_numbers))];
        const size_t width = pick(2) ? 8 : 4, at = pick(s.size());
        const bool big = pick(2);
        for (size_t i = 0; i < width && at + i < s.size(); ++i)
          s[at + i] = static_cast<char>(value >> (8 * (big ? width - 1 - i : i)));
        break;
      }
      case 5: s.erase(pick(s.size()), 1 + pick(16)); break;
      case 6: {  // copy a range elsewhere
        const size_t from = pick(s.size()), length = 1 + pick(32);
        s.insert(pick(s.size() + 1), s.substr(from, length));
        break;
      }
      case 7: s.resize(pick(s.size() + 1)); break;  // truncate
      case 8: {  // a run of digits in text made longer or another number
        const size_t at = s.find_first_of("0123456789", pick(s.size()));
        if (at != std::string::npos) s.insert(at, std::to_string(interesting_numbers[pick(std::size(interesting_numbers))]));
        break;
      }
    }
  }

  std::mt19937_64 random_;
  const std::vector<std::string>& corpus_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || !kTargets.count(argv[1])) {
    std::fprintf(stderr, "usage: fuzz_readers safetensors|idx|cifar|csv|text|cli CORPUS_DIR [--runs N] [--seconds S] [--seed K] "
                         "[--crash-dir DIR] [--replay FILE]\n");
    return 2;
  }
  const std::string target = argv[1];
  uint64_t runs = 0, seed = 1;
  double seconds = 10;
  std::string replay;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--runs") runs = std::stoull(value), seconds = 1e9;
    else if (flag == "--seconds") seconds = std::stod(value);
    else if (flag == "--seed") seed = std::stoull(value);
    else if (flag == "--crash-dir") crash_dir = value;
    else if (flag == "--replay") replay = value;
  }
  const auto& run = kTargets.at(target);
  std::signal(SIGSEGV, write_crashing_input);
  std::signal(SIGABRT, write_crashing_input);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(on_sanitizer_death);
  if (!replay.empty()) {
    current_input = read_file(replay);
    try {
      run(current_input);
      std::printf("%s: accepted\n", replay.c_str());
    } catch (const std::exception& e) {
      std::printf("%s: refused: %s\n", replay.c_str(), e.what());
    }
    return 0;
  }
  std::vector<std::string> corpus;
  for (const auto& entry : std::filesystem::directory_iterator(argv[2]))
    if (entry.is_regular_file()) corpus.push_back(read_file(entry.path()));
  if (corpus.empty()) {
    std::fprintf(stderr, "no seed files in %s\n", argv[2]);
    return 2;
  }
  Mutator mutator(seed, corpus);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  uint64_t executions = 0, refused = 0;
  double slowest = 0;
  while ((runs == 0 || executions < runs) && elapsed() < seconds) {
    current_input = executions < corpus.size() ? corpus[executions] : mutator.next();
    const double before = elapsed();
    try {
      run(current_input);
    } catch (const std::exception&) {
      ++refused;
    }
    slowest = std::max(slowest, elapsed() - before);
    ++executions;
  }
  std::printf("%s: %llu executions in %.1f s (%llu refused, %llu accepted), slowest %.3f s, 0 crashes\n", target.c_str(),
              static_cast<unsigned long long>(executions), elapsed(), static_cast<unsigned long long>(refused),
              static_cast<unsigned long long>(executions - refused), slowest);
  if (slowest > 1.0) {
    std::printf("an input took over a second: a hang?\n");
    return 1;
  }
  return 0;
}

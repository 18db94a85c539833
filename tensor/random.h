#pragma once
// Seeded random numbers. A Generator hands out streams of the counter-based Philox
// generator: (seed, stream) names a sequence, and element i of it is computed directly, so
// a given seed gives the same numbers on every machine and device.
#include <cstdint>

namespace minipipe {

struct RandomKey {
  uint64_t seed = 0;
  uint64_t stream = 0;
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  // Each draw (a random tensor, a dropout mask) takes the next stream.
  RandomKey next_key() { return {seed_, next_stream_++}; }

  // Saving and restoring lets checkpoint() replay the same draws during recomputation.
  struct State {
    uint64_t seed, next_stream;
  };
  State state() const { return {seed_, next_stream_}; }
  void set_state(State s) { seed_ = s.seed; next_stream_ = s.next_stream; }

 private:
  uint64_t seed_;
  uint64_t next_stream_ = 0;
};

// Each thread has its own default generator, so threads that train side by side each draw
// reproducible numbers.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace minipipe

#include "nn/forward_context.h"

namespace minipipe::nn {

namespace {
thread_local ForwardContext current_context;
}

const ForwardContext& forward_context() { return current_context; }
ForwardContextGuard::ForwardContextGuard(const ForwardContext& context) : previous_(current_context) {
  current_context = context;
}
ForwardContextGuard::~ForwardContextGuard() { current_context = previous_; }

}  // namespace minipipe::nn

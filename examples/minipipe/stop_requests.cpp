#include "stop_requests.h"

#include <csignal>
#include <cstring>

namespace minipipe::cli {

namespace {

volatile std::sig_atomic_t received_signal = 0;

void record_signal(int signal_number) { received_signal = signal_number; }

}  // namespace

StopRequests::StopRequests() {
  received_signal = 0;
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESETHAND: the second signal takes the default action; SA_RESTART: the stage
  // threads' blocking calls go on instead of failing with EINTR.
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGINT, &action, &previous_interrupt_);
  sigaction(SIGTERM, &action, &previous_terminate_);
  // A signal the caller ignores stays ignored: a shell starts background jobs with SIGINT
  // ignored so that Ctrl-C does not reach them, and nohup does the same for SIGHUP.
  if (previous_interrupt_.sa_handler == SIG_IGN) sigaction(SIGINT, &previous_interrupt_, nullptr);
  if (previous_terminate_.sa_handler == SIG_IGN) sigaction(SIGTERM, &previous_terminate_, nullptr);
}

StopRequests::~StopRequests() {
  sigaction(SIGINT, &previous_interrupt_, nullptr);
  sigaction(SIGTERM, &previous_terminate_, nullptr);
}

bool StopRequests::requested() const { return received_signal != 0; }

bool StopRequests::ends_run_after(int64_t step, int64_t& end_step, TrainingLog& log, const std::string& save,
                                  const std::function<bool(bool)>& any_process) const {
  const bool here = requested();
  if (!(any_process ? any_process(here) : here)) return false;
  end_step = step + 1;
  const std::string stopped = std::string("stopped by ") +
                              (!here ? "a signal to another process" : received_signal == SIGINT ? "Ctrl-C" : "SIGTERM") +
                              " after step " + std::to_string(end_step);
  log.message(stopped + (save.empty() ? "; nothing saved (pass --save FILE to keep a run that may be stopped)"
                                      : "; continue with --resume " + save));
  return true;
}

int StopRequests::exit_status() const { return received_signal == 0 ? 0 : 128 + received_signal; }

}  // namespace minipipe::cli

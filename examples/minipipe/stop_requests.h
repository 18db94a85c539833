#pragma once
// Ctrl-C (SIGINT) or SIGTERM during `minipipe train` ends the run after the step under way,
// and the run then saves (--save) as at its planned end, so that --resume continues it with
// the losses of a run never stopped. A second signal ends the program at once: the handler
// gives way to the default action after its first signal.
#include <cstdint>
#include <functional>
#include <signal.h>
#include <string>

#include "training_log.h"

namespace minipipe::cli {

class StopRequests {
 public:
  StopRequests();   // installs the handlers
  ~StopRequests();  // puts back the ones it replaced
  StopRequests(const StopRequests&) = delete;
  StopRequests& operator=(const StopRequests&) = delete;

  bool requested() const;
  // Called after each step of the loop: when a stop was requested, sets end_step to the
  // steps taken (for saving and the summary), tells the user how to go on (`save` is
  // --save) and returns true, for the loop to break. Under mpirun, `any_process` says
  // whether any process was asked (given whether this one was), so that all stop together.
  bool ends_run_after(int64_t step, int64_t& end_step, TrainingLog& log, const std::string& save,
                      const std::function<bool(bool)>& any_process = {}) const;
  // The exit status: 0 for a run that was not stopped, else 128 + the signal (as a shell does).
  int exit_status() const;

 private:
  struct sigaction previous_interrupt_ {};
  struct sigaction previous_terminate_ {};
};

}  // namespace minipipe::cli

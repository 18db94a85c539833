#pragma once
// "Where is everyone": a running pipeline can report, for every worker, the instruction it is
// at, what it waits for, and how many units it holds in flight. A hung or slow pipeline is
// otherwise a silent one. Reports are asked for by a signal (install_status_signal, which
// `minipipe train` calls for SIGUSR1), by request_status(), or by a run that exceeds
// PipelineOptions::status_after_seconds; the pipeline prints them from a watcher thread,
// never from the signal handler, and goes on running.
#include <csignal>
#include <cstdint>

namespace minipipe::pipeline {

// Makes `signal` ask every running pipeline for a report (the handler only counts).
void install_status_signal(int signal = SIGUSR1);
// Asks as the signal does.
void request_status();
// Requests so far; a pipeline reports when it sees this grow.
uint64_t status_requests();

}  // namespace minipipe::pipeline

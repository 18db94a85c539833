#pragma once
// Zero bubble's automatic scheduler (Qi et al. ICLR 2024, section 3): F, B and W placed from
// each stage's measured costs, not unit ones, under a limit of micro-batches in flight per
// stage. The paper's heuristic places the units greedily in time (a B when one is ready, a W
// when too many wait, an F when one is ready and memory allows, else a W) for several
// settings and keeps the fastest; the paper then refines with an ILP, which minipipe leaves
// out. Here the settings are the in-flight limit (ZB-H1's K - s up to `max_in_flight`) and
// the number of Ws that may wait, each timed by the simulator on the same costs, with zb-h1
// itself among the candidates: the result's predicted step is never longer than zb-h1's.
#include <string>
#include <vector>

#include "pipeline/profile.h"
#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

// `costs`: forward, backward (B + W) and backward_weight (W) per stage. `max_in_flight`: the
// most micro-batches forwarded and not yet B on a stage (0: K, 1F1B's most on stage 0).
Schedule zb_auto_schedule(int stages, int micro_batches, const CostModel& costs, int max_in_flight = 0);

// zb-auto's costs from a traced run of the same K stages (`--trace`, one chunk each): the
// median forward, backward and W per stage; a trace without split backwards leaves W half of
// the backward, which `note` says.
CostModel zb_auto_costs_from_trace(const std::string& path, int stages, std::string* note = nullptr);
// The same from each layer's timing (profile.h) added up over the stages of `layers_per_stage`.
CostModel zb_auto_costs_from_layers(const std::vector<LayerProfile>& layers, const std::vector<int>& layers_per_stage);
// Costs as text, every number exactly (hexadecimal), and back: what rank 0 sends the others.
std::string format_costs(const CostModel& costs);
CostModel parse_costs(const std::string& text);

}  // namespace minipipe::pipeline

#include "pipeline/simulate_spec.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace minipipe::pipeline {

namespace {

CostModel per_stage(int stages, const UniformCosts& c, double share) {
  CostModel costs = CostModel::uniform(stages, c.forward * share, c.backward * share);
  costs.backward_weight.assign(static_cast<size_t>(stages), c.weight_part() * share);
  costs.communication = c.communication;
  return costs;
}

}  // namespace

SimulatedSpec simulate_spec(ScheduleSpec spec, const UniformCosts& c) {
  if (!(c.forward > 0) || !(c.backward > 0) || c.communication < 0)
    throw std::invalid_argument("simulate: the forward and backward costs must be positive and a message's cost at least 0");
  if (c.weight_part() > c.backward)
    throw std::invalid_argument((std::ostringstream() << "simulate: W (" << c.weight_part() << ") is part of the backward ("
                                                      << c.backward << "); give a weight cost at most the backward's")
                                    .str());
  const bool zb_auto = spec.name == "zb-auto";
  if (zb_auto && !spec.costs) spec.costs = per_stage(spec.stages, c, 1.0);
  SimulatedSpec out;
  out.schedule = build_schedule(spec);
  const Schedule& schedule = out.schedule;
  // A chunk does 1/v of its stage's layers; zb-auto runs on the costs it was placed by.
  out.costs = zb_auto ? *spec.costs : per_stage(spec.stages, c, 1.0 / schedule.virtual_stages);
  out.result = simulate(schedule, out.costs);

  const double K = spec.stages, M = spec.micro_batches, F = c.forward, W = c.weight_part(), B = c.backward - W;
  if (spec.name == "zb-h1" || spec.name == "zb-h2") {
    // Zero bubble (Qi et al. 2024, section 2): each stage idles (K - 1)(F + B - W), against
    // 1F1B's (K - 1)(F + B + W); ZB-H2 keeps it too when every step ends with a flush. The
    // paper takes F = B = W; a W longer than B fills more than the gaps B leaves, but no
    // schedule idles less than the fill (K - 1)F, since the last stage starts only when the
    // first forward reaches it: past W = B that fill is the formula.
    const double idle = (K - 1) * (F + std::max(B - W, 0.0));
    out.formula_bubble = idle / (M * (F + B + W) + idle);
    out.formula = W <= B ? "zero bubble's (K-1)(F+B-W) / (M(F+B+W) + (K-1)(F+B-W))"
                         : "zero bubble's fill alone, as W > B: (K-1)F / (M(F+B+W) + (K-1)F)";
    out.formula_terms = c.weight < 0 ? ", W half the backward" : (std::ostringstream() << ", W = " << W).str();
  } else if (is_v_schedule(spec.name)) {
    // A V fills the pipeline with K - 1 chunk forwards and nothing else in the best case
    // (zb-v with F = B = W): the least bubble any V schedule can have.
    const double fill = (K - 1) * F / 2;
    out.formula_bubble = fill / (M * (F + B + W) + fill);
    out.formula = "a V's least, its fill: (K-1)F/2 / (M(F+B+W) + (K-1)F/2)";  // B and W: the backward's halves
  } else {
    // Token slices are units of work like micro-batches: M * S of them with equal costs.
    const int units = schedule.micro_batches * schedule.token_slices;
    out.formula_bubble = theoretical_bubble_fraction(spec.stages, units, schedule.virtual_stages);
    out.formula = schedule.virtual_stages > 1 ? "formula (K-1)/(vM+K-1)" : "formula (K-1)/(M+K-1)";
    out.formula_terms = ", M = " + std::to_string(units) + (schedule.token_slices > 1 ? " units in all" : " micro-batches in all");
    // A schedule file may order its work any way: the formula is the yardstick, not its own.
    if (!spec.file.empty()) out.formula = "for comparison, 1F1B's " + out.formula;
  }
  return out;
}

}  // namespace minipipe::pipeline

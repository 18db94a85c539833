#!/usr/bin/env bash
# `minipipe explain` and `minipipe simulate --compare` on a real run's log and trace: a row
# per stage whose parts add up to the step, one predicted instruction per measured one, an
# overlay with both timelines, and clear refusals of files that are not a run's.
set -uo pipefail
minipipe=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$minipipe" train gpt --layers 2 --dim 32 --context 32 --batch-size 8 --steps 2 --eval-interval 2 --sample-length 0 \
  --stages 2 --micro-batches 4 --schedule 1f1b --log-json run.jsonl --trace run.json > train.out 2>&1 ||
  { cat train.out; echo "FAIL: training"; exit 1; }

# --profile: the steps' kernels by phase and name, in the summary and printed. Every kernel's
# time is inside the steps, so the kernels of the 2 stage threads add up to at most twice the
# steps' wall time, and the GEMMs run in both the forward and the backward.
"$minipipe" train gpt --layers 2 --dim 32 --context 32 --batch-size 8 --steps 2 --eval-interval 2 --sample-length 0 \
  --stages 2 --micro-batches 4 --schedule zb-h1 --profile --log-json profiled.jsonl > profiled.out 2>&1 ||
  { cat profiled.out; fail "training with --profile"; }
grep -q "kernel profile of 2 steps" profiled.out || fail "--profile printed no kernel profile"
python3 - profiled.jsonl <<'PY' || fail "--profile: the summary's kernel_profile is wrong"
import json, sys
summary = [json.loads(line) for line in open(sys.argv[1])][-1]
rows = summary["pipeline"]["kernel_profile"]
kernels = {(r["phase"], r["kernel"]) for r in rows}
total = sum(r["seconds"] for r in rows)
steps = 2 * summary["pipeline"]["measured_seconds_per_mini_batch"]
print(f"ok: --profile: {len(rows)} (phase, kernel) rows, {total * 1e3:.1f} ms of kernels in {steps * 1e3:.1f} ms of steps")
sys.exit(0 if {("forward", "gemm"), ("backward", "gemm"), ("backward W", "gemm")} <= kernels and 0 < total <= 2 * steps else 1)
PY

"$minipipe" explain run.jsonl run.json > explain.txt 2>&1 || { cat explain.txt; fail "explain failed"; }
cat explain.txt
[ "$(grep -c '^stage [01] ' explain.txt)" -eq 2 ] || fail "explain: not one row per stage"
grep -q "formula (K-1)/(M+K-1) = 0.200" explain.txt || fail "explain: no bubble formula for K = 2, M = 4"
# Each stage's five parts add up to the step.
"$minipipe" explain run.jsonl run.json --json > explain.json || fail "explain --json failed"
python3 - explain.json <<'PY' || fail "explain --json: the parts do not add up to the step"
import json, sys
e = json.load(open(sys.argv[1]))
parts = ["compute_ms", "waiting_for_activations_ms", "waiting_for_gradients_ms", "idle_at_fill_and_flush_ms", "other_ms"]
for s in range(e["stages"]):
    total = sum(e[p][s] for p in parts)
    assert abs(total - e["step_ms"]) <= 1e-3 * e["step_ms"] + 1e-3, (s, total, e["step_ms"])
assert 0 < e["measured_bubble_fraction"] < 1
PY

# Untimed: the same losses, and no measured bubble in the summary rather than a false one.
"$minipipe" train gpt --layers 2 --dim 32 --context 32 --batch-size 8 --steps 2 --eval-interval 2 --sample-length 0 \
  --stages 2 --micro-batches 4 --schedule 1f1b --log-json untimed.jsonl --untimed > untimed.out 2>&1 ||
  { cat untimed.out; fail "training --untimed"; }
python3 - run.jsonl untimed.jsonl <<'PY' || fail "--untimed: other losses, or a measured bubble"
import json, sys
timed, untimed = ([json.loads(line) for line in open(path)] for path in sys.argv[1:])
losses = lambda log: [(e["event"], e["step"], e.get("loss", e.get("validation_loss"))) for e in log if e["event"] in ("step", "eval")]
assert losses(timed) == losses(untimed) and losses(timed), (losses(timed), losses(untimed))
assert untimed[-1]["pipeline"]["measured_bubble_fraction"] is None, untimed[-1]["pipeline"]
assert 0 < timed[-1]["pipeline"]["measured_bubble_fraction"] < 1
PY

"$minipipe" simulate --stages 2 --micro-batches 4 --schedule 1f1b --compare run.json --timeline both.svg > compare.txt 2>&1 ||
  { cat compare.txt; fail "simulate --compare failed"; }
grep -q "^step time" compare.txt && grep -q "^bubble" compare.txt || fail "compare: no step time and bubble"
# 2 stages x 4 micro-batches x (F, B): 16 instructions, each measured (filled) and predicted (outlined).
[ "$(grep -c '^stage [01] ' compare.txt)" -eq 16 ] || fail "compare: not 16 instructions"
[ "$(grep -c 'stroke-width' both.svg)" -eq 16 ] || fail "compare: the overlay does not outline 16 predicted instructions"
[ "$(grep -c 'fill="#[0-9a-f]*" stroke="white"' both.svg)" -eq 16 ] || fail "compare: the overlay does not fill 16 measured instructions"

expect_refusal() {  # name, text expected, command...
  local name=$1 text=$2
  shift 2
  if "$@" > refusal.out 2>&1; then fail "$name: succeeded"; return; fi
  grep -q -- "$text" refusal.out && echo "ok: $name refused" || { cat refusal.out; fail "$name: no '$text'"; }
}
expect_refusal "a trace of another schedule" "give simulate the traced run's" \
  "$minipipe" simulate --stages 2 --micro-batches 8 --schedule 1f1b --compare run.json
expect_refusal "a log for a trace" "is not a trace of" "$minipipe" explain run.jsonl run.jsonl
expect_refusal "a trace for a log" "give the --log-json file" "$minipipe" explain run.json run.json

[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "explain and compare: all checks passed"

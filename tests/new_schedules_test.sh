#!/usr/bin/env bash
# The 2024-25 schedules train the default GPT (4 blocks of width 128, context 128) on 2
# stages exactly as one stage does with the same micro-batches: zb-v, v-half, v-min and
# dualpipev (two chunks per stage in a V) and zb-auto (zero bubble placed from measured
# costs), in every recompute mode; the losses are compared digit for digit.
#   tests/new_schedules_test.sh MINIPIPE
set -uo pipefail
minipipe=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
train="train gpt --steps 2 --eval-interval 2 --batch-size 4 --micro-batches 4 --sample-length 0"
losses() {
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "loss" in e or "validation_loss" in e: print(e.get("loss", e.get("validation_loss")))' "$1"
}
"$minipipe" $train --stages 1 --schedule gpipe --log-json one.jsonl > one.out 2>&1 || { cat one.out; echo "FAIL: one stage"; exit 1; }
for schedule in zb-v v-half v-min dualpipev zb-auto; do
  for recompute in never always except_last; do
    name="$schedule-$recompute"
    "$minipipe" $train --stages 2 --schedule "$schedule" --recompute "$recompute" --log-json "$name.jsonl" > "$name.out" 2>&1 ||
      { cat "$name.out"; fail "$name: training failed"; continue; }
    if [ "$(losses one.jsonl)" == "$(losses "$name.jsonl")" ]; then
      echo "ok: $name on 2 stages equals one stage ($(losses one.jsonl | wc -l) losses)"
    else
      fail "$name: losses differ from one stage"; paste <(losses one.jsonl) <(losses "$name.jsonl")
    fi
  done
done
[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }

#!/usr/bin/env bash
# `--target-accuracy` and `--target-loss` stop a run at the first evaluation that reaches
# the target. The oracle is the same run without a target: its log names the first
# evaluation at or past the target, and the stopped run must end exactly there, with the
# same evaluations on the way (training is deterministic), and report that step. A target
# never reached runs every step and reports null.
set -euo pipefail
minipipe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() { grep '"event":"summary"' "$1" | sed -E "s/.*\"$2\":([^,}]+).*/\1/"; }
evaluations() { grep '"event":"eval"' "$1" | sed -E "s/.*\"step\":([0-9]+).*\"$2\":([^,}]+).*/\1 \2/"; }

# check NAME METRIC BETTER(le|ge) FLAG MODEL ARGS...: the target is the full run's third evaluation
check() {
  local name=$1 metric=$2 better=$3 flag=$4; shift 4
  "$minipipe" train "$@" --log-json "$work/$name-full.jsonl" >/dev/null 2>&1
  local target expected
  target=$(evaluations "$work/$name-full.jsonl" "$metric" | sed -n 3p | cut -d' ' -f2)
  expected=$(evaluations "$work/$name-full.jsonl" "$metric" | awk -v t="$target" -v b="$better" \
    '(b == "le" && $2 <= t) || (b == "ge" && $2 >= t) { print $1; exit }')
  "$minipipe" train "$@" "$flag" "$target" --log-json "$work/$name.jsonl" > "$work/$name.out" 2>&1
  local stopped_at steps
  stopped_at=$(field "$work/$name.jsonl" target_step)
  steps=$(field "$work/$name.jsonl" steps)
  if [ "$stopped_at" != "$expected" ] || [ "$steps" != "$expected" ]; then
    echo "FAIL: $name: $flag $target: the full run first reaches it after step $expected; the stopped run reports" \
         "$stopped_at and ran $steps steps"; exit 1
  fi
  if ! cmp -s <(evaluations "$work/$name.jsonl" "$metric") <(evaluations "$work/$name-full.jsonl" "$metric" | head -n \
      "$(evaluations "$work/$name.jsonl" "$metric" | wc -l)"); then
    echo "FAIL: $name: the stopped run's evaluations differ from the full run's"; exit 1
  fi
  grep -q "reached the target .* after step $expected, " "$work/$name.out" ||
    { echo "FAIL: $name: no line says the target was reached:"; cat "$work/$name.out"; exit 1; }
  echo "ok: $name: $flag $target stops after step $expected, as the full run's log says"
}

check cnn-accuracy accuracy ge --target-accuracy cnn --steps 40 --batch-size 16 --width 8 --lr 0.03 --eval-interval 5
check gpt-loss validation_loss le --target-loss gpt --steps 12 --batch-size 4 --dim 32 --layers 2 --heads 2 \
  --context 32 --sample-length 0 --eval-interval 2
check pipedream-accuracy accuracy ge --target-accuracy cnn --steps 40 --batch-size 16 --width 8 --lr 0.03 --eval-interval 5 \
  --stages 2 --schedule pipedream

"$minipipe" train cnn --steps 10 --batch-size 16 --width 8 --lr 0.03 --eval-interval 5 --target-accuracy 1 \
  --log-json "$work/never.jsonl" > "$work/never.out" 2>&1
if [ "$(field "$work/never.jsonl" target_step)" != null ] || [ "$(field "$work/never.jsonl" steps)" != 10 ] ||
   ! grep -q "the target was not reached in 10 steps" "$work/never.out"; then
  echo "FAIL: a target never reached: expected all 10 steps, target_step null and a line saying so"
  cat "$work/never.out"; exit 1
fi
echo "ok: a target never reached runs every step and reports null"

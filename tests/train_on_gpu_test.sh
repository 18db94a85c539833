#!/usr/bin/env bash
# The command line on a GPU: `minipipe train` gives the CPU's per-step and validation losses
# (within 1e-4 relative) with the whole model on cuda:0, and with a 4-stage 1F1B pipeline
# whose stages sit on GPUs and the CPU (cuda:0,cuda:1,cpu,cuda:1 where two GPUs exist). This
# covers what the library tests do not: evaluation and sampling through the stages on their
# devices, traces, and the peak-memory report. Skips (exit 77) where there is no GPU.
set -euo pipefail
minipipe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gpus=$("$minipipe" info | sed -nE 's/.*GPUs seen: ([0-9]+).*/\1/p')
if [ "${gpus:-0}" -lt 1 ]; then
  echo "skipped: no GPU here ($("$minipipe" info | grep -E '^  CUDA' || echo 'no CUDA backend'))"
  exit 77
fi
second=cuda:0
[ "$gpus" -ge 2 ] && second=cuda:1

losses() {  # "step loss" and "eval validation_loss" lines of a JSON Lines log
  sed -nE -e 's/.*"event":"step","step":([0-9]+),"loss":([^,]+),.*/step \1 \2/p' \
          -e 's/.*"event":"eval","step":([0-9]+),"validation_loss":([^,}]+).*/eval \1 \2/p' "$1"
}

# Runs `train "$@"`, logging to $work/NAME.jsonl; shows its output if it fails.
run() {
  local name=$1; shift
  "$minipipe" train "$@" --log-json "$work/$name.jsonl" >"$work/$name.out" 2>&1 ||
    { cat "$work/$name.out"; echo "FAIL: minipipe train $*"; exit 1; }
}

# Fails unless logs $1 and $2 (names under $work) have the same steps and evaluations, with
# losses within 1e-4 relative.
same_losses() {
  if ! paste <(losses "$work/$1.jsonl") <(losses "$work/$2.jsonl") | awk '
      { n++; if ($1 != $4 || $2 != $5) { print "misaligned logs: " $0; bad = 1; next }
        d = $3 - $6; if (d < 0) d = -d; r = $3 < 0 ? -$3 : $3
        if (d > 1e-4 * r) { print "differs: " $0; bad = 1 } }
      END { if (n == 0) { print "no losses logged"; bad = 1 } exit bad }'; then
    echo "FAIL: the losses of $2 differ from those of $1 ($1 left, $2 right)"
    exit 1
  fi
}

# Runs `train "$@"` on the CPU and with --device/--stage-devices from $gpu_args, and compares.
compare() {
  local name=$1; shift
  run "$name-cpu" "$@" --device cpu
  run "$name-gpu" "$@" $gpu_args --trace "$work/$name.trace.json"
  same_losses "$name-cpu" "$name-gpu"
  grep -q "peak memory .* on cuda:0" "$work/$name-gpu.out" || { echo "FAIL: $name: no peak memory for cuda:0"; exit 1; }
  grep -q '"ph":"X"' "$work/$name.trace.json" || { echo "FAIL: $name: the trace has no events"; exit 1; }
  echo "ok: $name: $(losses "$work/$name-cpu.jsonl" | wc -l) losses agree with the CPU's on $gpu_args"
}

gpt=(gpt --steps 6 --eval-interval 3 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32 --dropout 0.1
     --sample-length 20)
cnn=(cnn --steps 6 --eval-interval 3 --batch-size 16 --width 4)
gpu_args="--device cuda:0"
compare gpt-on-cuda0 "${gpt[@]}"
compare cnn-on-cuda0 "${cnn[@]}"
pipeline="--stages 4 --micro-batches 2 --schedule 1f1b"
gpu_args="--device cuda:0 --stage-devices cuda:0,$second,cpu,$second"
compare gpt-pipeline "${gpt[@]}" $pipeline
compare cnn-pipeline "${cnn[@]}" $pipeline
# Untimed, a GPU stage queues its next instructions while the stream still runs the last:
# only the stream hand-offs between stages order the work, and the losses must not change.
run gpt-pipeline-untimed "${gpt[@]}" $pipeline $gpu_args --untimed
same_losses gpt-pipeline-cpu gpt-pipeline-untimed
grep -q '"measured_bubble_fraction":null' "$work/gpt-pipeline-untimed.jsonl" ||
  { echo "FAIL: --untimed still reports a measured bubble"; exit 1; }
echo "ok: gpt-pipeline-untimed: the losses agree with the CPU's on $gpu_args"

#!/usr/bin/env bash
# Saving and resuming gives exactly the losses of an uninterrupted run: train N steps in
# one go; train the same run in two parts (--stop-after, --save, then --resume); compare
# the per-step losses of the JSON Lines logs, which must be identical. Then the same after
# a Ctrl-C. --quick (the sanitizer build): the plain GPT and CNN, an old checkpoint and the
# Ctrl-C only, without the pipeline variants.
#   tests/resume_test.sh MINIPIPE [--quick]
set -euo pipefail
minipipe=$1
quick=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

losses() {  # "step loss" of every step event
  grep '"event":"step"' "$1" | sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/'
}

check() {  # STOP=n: the step to stop at and resume from (default 5)
  local name=$1 stop=${STOP:-5}; shift
  "$minipipe" train "$@" --log-json "$work/$name-straight.jsonl" --sample-length 0 >/dev/null 2>&1 ||
    "$minipipe" train "$@" --log-json "$work/$name-straight.jsonl" >/dev/null
  "$minipipe" train "$@" --stop-after "$stop" --save "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >/dev/null 2>&1 ||
    "$minipipe" train "$@" --stop-after "$stop" --save "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >/dev/null
  "$minipipe" train "$@" --resume "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >/dev/null 2>&1
  if ! diff <(losses "$work/$name-straight.jsonl") <(losses "$work/$name-parts.jsonl"); then
    echo "FAIL: $name: resumed losses differ from the uninterrupted run (above)"
    exit 1
  fi
  echo "ok: $name: $(losses "$work/$name-straight.jsonl" | wc -l) steps identical after resuming at step $stop"
}

check cnn cnn --steps 12 --batch-size 16 --width 4
check gpt gpt --steps 12 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32
if [ "$quick" != --quick ]; then
  # PipeDream drains at evaluations, so a stop there resumes exactly too (one optimizer per
  # stage in the run, one file).
  check gpt-pipedream gpt --steps 12 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32 --stages 2 \
    --schedule pipedream --eval-interval 5
  # Replicated stages (two replicas of stage 0, each with its own optimizer) drain every 2 steps.
  STOP=6 check gpt-replicas gpt --steps 12 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32 --stages 2 \
    --schedule pipedream --replicas 2,1 --eval-interval 6
  check cnn-2bw cnn --steps 12 --batch-size 16 --width 4 --stages 2 --schedule pipedream --weights 2bw --micro-batches 2 \
    --eval-interval 5
  # TeraPipe: token slices through a 2-stage 1F1B with recomputation resume exactly, and train
  # as the unsliced run does (the same losses up to float rounding).
  check gpt-token-slices gpt --steps 12 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32 --stages 2 \
    --token-slices 3 --schedule 1f1b --micro-batches 2 --recompute always
  if ! paste <(losses "$work/gpt-straight.jsonl") <(losses "$work/gpt-token-slices-straight.jsonl") |
       awk '{ d = $2 - $4; if (d < 0) d = -d; if (d > 1e-4 * $2) { print "step " $1 ": " $2 " vs " $4; bad = 1 } } END { exit bad }'; then
    echo "FAIL: token-sliced training departs from unsliced training (above)"
    exit 1
fi
echo "ok: gpt-token-slices: 12 steps within 1e-4 of the unsliced run's losses"
fi

# A checkpoint written by minipipe at commit d006953 (before the hardened reader and strict
# metadata) resumes with the losses that version logged for the uninterrupted run.
reference=$(dirname "$0")/reference/gpt_checkpoint_d006953
"$minipipe" train gpt --steps 8 --batch-size 4 --dim 16 --layers 1 --heads 2 --context 16 --sample-length 0 \
  --eval-interval 4 --resume "$reference.safetensors" --log-json "$work/old-version.jsonl" >/dev/null 2>&1
# That version logged 6 significant digits; this one logs every digit.
if ! diff <(losses "$work/old-version.jsonl" | awk '{ printf "%s %.6g\n", $1, $2 }') "$reference.losses"; then
  echo "FAIL: a checkpoint of an earlier minipipe resumes with other losses than that version's run (above)"
  exit 1
fi
echo "ok: a checkpoint written by minipipe d006953 resumes with that version's losses"

# Ctrl-C mid-run: the run ends after its step with exit status 130, saves, and resuming
# from there gives the losses of a run never stopped (compared over the steps up to the
# interruption and five after it). Run as a 2-stage pipeline, whose stage threads may be the
# ones that take the signal. Job control (set -m) starts the background run with SIGINT not
# ignored, as a run in a terminal's foreground.
check_interrupted() {
  local name=gpt-interrupted
  local run=(gpt --steps 100000 --batch-size 4 --dim 16 --layers 1 --heads 2 --context 16 --stages 2 --micro-batches 2
             --sample-length 0 --eval-interval 100000)
  set -m
  "$minipipe" train "${run[@]}" --save "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >"$work/$name.out" 2>&1 &
  local pid=$! waited=0
  set +m
  until [ "$(losses "$work/$name-parts.jsonl" 2>/dev/null | wc -l)" -ge 20 ]; do
    sleep 0.1; waited=$((waited + 1))
    [ $waited -lt 600 ] || { kill $pid; echo "FAIL: $name: no 20 steps in 60 s"; exit 1; }
  done
  kill -INT $pid
  for waited in $(seq 300); do kill -0 $pid 2>/dev/null && sleep 0.1; done
  kill -0 $pid 2>/dev/null && { kill -KILL $pid; echo "FAIL: $name: still running 30 s after Ctrl-C"; exit 1; }
  local status=0
  wait $pid || status=$?
  [ $status -eq 130 ] || { echo "FAIL: $name: exit status $status after Ctrl-C, expected 130"; exit 1; }
  # Stopped before its first evaluation: the closing line says so, not "validation loss nan".
  grep -q "no evaluation ran" "$work/$name.out" && ! grep -q "loss nan" "$work/$name.out" ||
    { cat "$work/$name.out"; echo "FAIL: $name: the closing line does not say that no evaluation ran"; exit 1; }
  local stopped_at
  stopped_at=$(losses "$work/$name-parts.jsonl" | wc -l)
  "$minipipe" train "${run[@]}" --resume "$work/$name.safetensors" --stop-after 5 --log-json "$work/$name-parts.jsonl" >/dev/null 2>&1
  "$minipipe" train "${run[@]}" --stop-after $((stopped_at + 5)) --log-json "$work/$name-straight.jsonl" >/dev/null 2>&1
  if ! diff <(losses "$work/$name-straight.jsonl") <(losses "$work/$name-parts.jsonl"); then
    echo "FAIL: $name: losses after resuming from Ctrl-C differ from the uninterrupted run (above)"
    exit 1
  fi
  echo "ok: $name: stopped by Ctrl-C after step $stopped_at (exit 130), $((stopped_at + 5)) steps identical after resuming"
}
check_interrupted

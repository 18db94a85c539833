#!/usr/bin/env bash
# `minipipe eval` on a checkpoint gives, to the last digit, the validation loss that training
# printed at its end (the JSON log's final_validation_loss, written with every digit), for
# the GPT trained on one stage and through a 2-stage pipeline, and for the CNN; a checkpoint
# of the other model is refused with the command to use.
set -euo pipefail
minipipe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

final_loss() { grep '"event":"summary"' "$1" | sed -E 's/.*"final_validation_loss":([^,}]+).*/\1/'; }
evaluated_loss() { sed -E 's/.*"validation_loss":([^,}]+).*/\1/'; }

check() {
  local name=$1 model=$2; shift 2
  "$minipipe" train "$model" "$@" --save "$work/$name.safetensors" --log-json "$work/$name.jsonl" >/dev/null 2>&1
  local trained evaluated
  trained=$(final_loss "$work/$name.jsonl")
  evaluated=$("$minipipe" eval "$model" --checkpoint "$work/$name.safetensors" --json | evaluated_loss)
  if [ "$trained" != "$evaluated" ]; then
    echo "FAIL: $name: training ended with validation loss $trained, eval gives $evaluated"
    exit 1
  fi
  echo "ok: $name: eval reproduces the final validation loss $trained"
}

check gpt gpt --steps 6 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32 --sample-length 0 --eval-interval 3
check gpt-pipeline gpt --steps 6 --batch-size 6 --dim 32 --layers 2 --heads 2 --context 32 --sample-length 0 \
  --eval-interval 3 --stages 2 --micro-batches 2 --schedule 1f1b
check cnn cnn --steps 6 --batch-size 16 --width 4 --eval-interval 3

if output=$("$minipipe" eval cnn --checkpoint "$work/gpt.safetensors" 2>&1); then
  echo "FAIL: eval cnn accepted a GPT checkpoint"; exit 1
fi
[[ "$output" == *"use \`minipipe eval gpt\`"* ]] || { echo "FAIL: eval cnn on a GPT said: $output"; exit 1; }
echo "ok: eval cnn on a GPT checkpoint: $output"

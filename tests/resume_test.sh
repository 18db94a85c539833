#!/usr/bin/env bash
# Saving and resuming gives exactly the losses of an uninterrupted run: train N steps in
# one go; train the same run in two parts (--stop-after, --save, then --resume); compare
# the per-step losses of the JSON Lines logs, which must be identical.
set -euo pipefail
minipipe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

losses() {  # "step loss" of every step event
  grep '"event":"step"' "$1" | sed -E 's/.*"step":([0-9]+),"loss":([^,]+),.*/\1 \2/'
}

check() {
  local name=$1; shift
  "$minipipe" train "$@" --log-json "$work/$name-straight.jsonl" --sample-length 0 >/dev/null 2>&1 ||
    "$minipipe" train "$@" --log-json "$work/$name-straight.jsonl" >/dev/null
  "$minipipe" train "$@" --stop-after 5 --save "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >/dev/null 2>&1 ||
    "$minipipe" train "$@" --stop-after 5 --save "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >/dev/null
  "$minipipe" train "$@" --resume "$work/$name.safetensors" --log-json "$work/$name-parts.jsonl" >/dev/null 2>&1
  if ! diff <(losses "$work/$name-straight.jsonl") <(losses "$work/$name-parts.jsonl"); then
    echo "FAIL: $name: resumed losses differ from the uninterrupted run (above)"
    exit 1
  fi
  echo "ok: $name: $(losses "$work/$name-straight.jsonl" | wc -l) steps identical after resuming at step 5"
}

check cnn cnn --steps 12 --batch-size 16 --width 4
check gpt gpt --steps 12 --batch-size 4 --dim 32 --layers 2 --heads 2 --context 32

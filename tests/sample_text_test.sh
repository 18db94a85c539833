#!/usr/bin/env bash
# The text that `minipipe train gpt` and `minipipe sample gpt` print is safe for a terminal:
# a barely trained byte-level model draws any byte, and the program must write control
# bytes and broken UTF-8 as \xNN escapes, never raw. The oracle is Python's strict UTF-8
# decoder and the Unicode category of every character.
set -euo pipefail
minipipe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tiny=(--dim 32 --layers 1 --heads 2 --context 32 --batch-size 2)

check_printable() {  # name, file: valid UTF-8, no control characters but newline and tab, and some escapes
  python3 - "$1" "$2" <<'PY'
import sys, unicodedata
name, path = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
try:
    text = raw.decode("utf-8")
except UnicodeDecodeError as error:
    sys.exit(f"FAIL: {name}: output is not valid UTF-8: {error}")
controls = sorted({hex(ord(c)) for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"})
if controls:
    sys.exit(f"FAIL: {name}: raw control characters {controls} in the output")
if "\\x" not in text:
    sys.exit(f"FAIL: {name}: no \\xNN escape in the output; the test no longer sees unprintable bytes")
print(f"ok: {name}: {len(raw)} bytes of valid UTF-8 without control characters, {text.count(chr(92) + 'x')} escapes")
PY
}

"$minipipe" train gpt --steps 1 "${tiny[@]}" --sample-length 400 --save "$work/gpt.safetensors" > "$work/train.txt" 2>/dev/null
check_printable "train gpt" "$work/train.txt"
# The prompt is printed first, through the same filter: well-formed characters of two, three
# and four bytes stay (é, €, an emoji, a no-break space); ESC, a C1 control (C2 85), a
# surrogate (ED A0 80), an overlong form (E0 80 80), a code point past U+10FFFF (F4 90 80 80)
# and a cut-off character (E2 82) become escapes.
prompt=$'tab\tbackslash\\ é € \xf0\x9f\x98\x80 \xc2\xa0 \x1b[31m \xc2\x85 \xed\xa0\x80 \xe0\x80\x80 \xf4\x90\x80\x80 \xe2\x82 end'
expected=$'tab\tbackslash\\ é € \xf0\x9f\x98\x80 \xc2\xa0 '\
'\x1b[31m \xc2\x85 \xed\xa0\x80 \xe0\x80\x80 \xf4\x90\x80\x80 \xe2\x82 end'
"$minipipe" sample gpt --checkpoint "$work/gpt.safetensors" --length 400 --prompt "$prompt" > "$work/sample.txt"
check_printable "sample gpt" "$work/sample.txt"
[[ "$(head -n 1 "$work/sample.txt")" == "$expected"* ]] ||
  { echo "FAIL: sample gpt: the prompt was printed as '$(head -n 1 "$work/sample.txt")', expected '$expected' first"; exit 1; }
echo "ok: sample gpt: the prompt's tab, backslash and well-formed characters are kept, the rest escaped"

# SIGTERM while `train gpt` draws its closing sample ends the sample where it is (exit 143),
# rather than waiting for the million bytes asked for. Job control (set -m) starts the run
# with the signals not ignored, as a run in a terminal would be.
set -m
"$minipipe" train gpt --steps 1 "${tiny[@]}" --sample-length 1000000 --log-json "$work/long.jsonl" > "$work/long.txt" 2>&1 &
pid=$!
set +m
for _ in $(seq 300); do grep -q '"event":"summary"' "$work/long.jsonl" 2>/dev/null && break; sleep 0.1; done
sleep 0.5  # into the sampling
kill -TERM $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null && sleep 0.1; done
if kill -0 $pid 2>/dev/null; then kill -KILL $pid; echo "FAIL: train gpt still sampling 10 s after SIGTERM"; exit 1; fi
status=0
wait $pid || status=$?
[ $status -eq 143 ] || { cat "$work/long.txt"; echo "FAIL: exit status $status after SIGTERM while sampling, expected 143"; exit 1; }
grep -q "sampling stopped by a signal after [0-9]* bytes" "$work/long.txt" ||
  { cat "$work/long.txt"; echo "FAIL: no note that sampling was stopped"; exit 1; }
echo "ok: SIGTERM while sampling: $(grep -o 'sampling stopped by a signal after [0-9]* bytes' "$work/long.txt"), exit 143"

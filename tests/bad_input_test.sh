#!/usr/bin/env bash
# Bad input to `minipipe`, as a careless or hostile user gives it: damaged checkpoints, data
# files of the wrong kind, absurd sizes. Every case must exit non-zero within seconds with
# exactly one line, "minipipe: error: ...", that names the problem; no C++ library names
# (std::, stoll, basic_string, bad_alloc) and no raw bytes may reach the user.
set -uo pipefail
minipipe=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
tiny_gpt=(train gpt --dim 16 --layers 1 --heads 2 --context 16 --batch-size 2 --sample-length 0)

expect_one_line_error() {  # expected fragment, then the arguments
  local expected=$1; shift
  local output status lines
  output=$(timeout 60 "$minipipe" "$@" 2>&1); status=$?
  lines=$(printf '%s\n' "$output" | wc -l)
  if [ $status -eq 0 ] || [ $status -eq 124 ]; then
    echo "FAIL: minipipe $*: exit $status, expected an error"; failures=$((failures + 1))
  elif [ "$lines" -ne 1 ] || [[ "$output" != "minipipe: error: "* ]]; then
    echo "FAIL: minipipe $*: expected one line 'minipipe: error: ...', got $lines:"; echo "$output"; failures=$((failures + 1))
  elif [[ "$output" != *"$expected"* ]]; then
    echo "FAIL: minipipe $*: the message lacks '$expected': $output"; failures=$((failures + 1))
  elif printf '%s' "$output" | grep -qE 'std::|stoll|stoi|stof|basic_string|bad_alloc|_M_'; then
    echo "FAIL: minipipe $*: a C++ library name reached the user: $output"; failures=$((failures + 1))
  elif printf '%s' "$output" | LC_ALL=C grep -q '[^[:print:]]'; then
    echo "FAIL: minipipe $*: raw bytes reached the user"; failures=$((failures + 1))
  else
    echo "ok: $output"
  fi
}

# A good checkpoint, then damaged copies of it (rewritten by a few lines of Python).
"$minipipe" "${tiny_gpt[@]}" --steps 2 --save "$work/good.safetensors" >/dev/null 2>&1 || { echo "FAIL: cannot make a checkpoint"; exit 1; }
rewrite() {  # in out python-expression-on-(header dict, data bytes) -> (header, data)
  python3 - "$@" <<'PY'
import json, struct, sys
source, target, change = sys.argv[1], sys.argv[2], sys.argv[3]
raw = open(source, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
meta = header.setdefault("__metadata__", {})
def drop_optimizer(header, data):  # the optimizer's moments go, their bytes too
    kept, out = {"__metadata__": header["__metadata__"]}, b""
    for name, entry in sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"]):
        if name.startswith("optimizer.") and name != "optimizer.step":
            continue
        begin, end = entry["data_offsets"]
        kept[name] = dict(entry, data_offsets=[len(out), len(out) + end - begin])
        out += data[begin:end]
    return kept, out
header, data = eval(change)
text = json.dumps(header).encode()
open(target, "wb").write(struct.pack("<Q", len(text)) + text + data)
PY
}
rewrite "$work/good.safetensors" "$work/no-optimizer.safetensors" "drop_optimizer(header, data)"
rewrite "$work/good.safetensors" "$work/step-abc.safetensors" "(header.__setitem__('__metadata__', {**meta, 'step': 'abc'}) or header, data)"
rewrite "$work/good.safetensors" "$work/step-minus.safetensors" "(header.__setitem__('__metadata__', {**meta, 'step': '-1'}) or header, data)"
rewrite "$work/good.safetensors" "$work/layers-huge.safetensors" "(header.__setitem__('__metadata__', {**meta, 'layers': '100000000'}) or header, data)"
rewrite "$work/good.safetensors" "$work/dim-float.safetensors" "(header.__setitem__('__metadata__', {**meta, 'dim': '1e9'}) or header, data)"
head -c 300 "$work/good.safetensors" > "$work/truncated.safetensors"
python3 -c "
import struct,sys
h = b'{\"a\":' + b'[' * 100000 + b']' * 100000 + b'}'
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h)" "$work/deep.safetensors"
mkdir "$work/folder.safetensors"

resume=("${tiny_gpt[@]}" --steps 4 --resume)
expect_one_line_error "missing after 2 steps" "${resume[@]}" "$work/no-optimizer.safetensors"
expect_one_line_error "metadata 'step' is 'abc', not a whole number" "${resume[@]}" "$work/step-abc.safetensors"
expect_one_line_error "metadata 'step' is '-1', not a whole number from 0" "${resume[@]}" "$work/step-minus.safetensors"
expect_one_line_error "metadata 'layers' is '100000000', not a whole number from 1 to 4096" "${resume[@]}" "$work/layers-huge.safetensors"
expect_one_line_error "metadata 'dim' is '1e9'" "${resume[@]}" "$work/dim-float.safetensors"
expect_one_line_error "truncated" "${resume[@]}" "$work/truncated.safetensors"
expect_one_line_error "nesting deeper than 64 levels" "${resume[@]}" "$work/deep.safetensors"
expect_one_line_error "is a folder" "${resume[@]}" "$work/folder.safetensors"
expect_one_line_error "truncated" sample gpt --checkpoint "$work/truncated.safetensors"

# Data files of the wrong kind.
python3 -c "import os,sys; open(sys.argv[1],'wb').write(bytes([3]) + os.urandom(3072) + bytes([7]) + os.urandom(3072))" "$work/cifar.bin"
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x08\x00\x00\x00\x08' > "$work/images-idx3-ubyte"
head -c 128 /dev/urandom >> "$work/images-idx3-ubyte"
printf '1,2,\xfe\xfeoops,4\n' > "$work/binary-field.csv"
expect_one_line_error "looks like CIFAR-10 binary records, not a digits CSV" train cnn --steps 1 --data "$work/cifar.bin"
expect_one_line_error "is not a number" train cnn --steps 1 --data "$work/binary-field.csv"
expect_one_line_error "is a folder; give a file" "${tiny_gpt[@]}" --steps 1 --data "$work"
expect_one_line_error "looks like MNIST-style IDX images, not text" "${tiny_gpt[@]}" --steps 1 --data "$work/images-idx3-ubyte"
mkdir "$work/mnist"
printf '\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff' > "$work/mnist/train-images-idx3-ubyte"
for f in train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do cp "$work/mnist/train-images-idx3-ubyte" "$work/mnist/$f"; done
expect_one_line_error "multiply past 2^63" train cnn --steps 1 --data "$work/mnist"

# Absurd sizes: refused before anything is allocated.
expect_one_line_error "needs more than an exabyte" train gpt --dim 100000000 --steps 1
expect_one_line_error "lower --layers" train gpt --layers 100000000 --steps 1
expect_one_line_error "lower --width" train cnn --width 1000000 --steps 1
expect_one_line_error "Could not convert: --stages = 1000000000000" train gpt --stages 1000000000000 --steps 1
expect_one_line_error "cannot cut a model" train gpt --stages 100000 --steps 1
expect_one_line_error "--seed: must be a whole number >= 0, got '-1'" train gpt --seed -1
expect_one_line_error "--steps: must be a positive number, got 'abc'" train gpt --steps abc
expect_one_line_error "lower --stages, --layers" plan-slices gpt --stages 1000000
expect_one_line_error "lower --stages, --layers" plan-slices gpt --context 100000000
# A flag value with terminal control bytes is named in the message, escaped.
expect_one_line_error "--stages: must be a positive number, got '\\x1b[31m'" "${tiny_gpt[@]}" --stages $'\x1b[31m'

# A stale temporary from an interrupted save is reported on resume.
cp "$work/good.safetensors" "$work/good.safetensors.tmp"
output=$("$minipipe" "${tiny_gpt[@]}" --steps 3 --resume "$work/good.safetensors" 2>&1)
if [[ "$output" == *"is left from an interrupted save"* ]]; then
  echo "ok: a stale .tmp is reported"
else
  echo "FAIL: a stale .tmp from an interrupted save was not reported"; failures=$((failures + 1))
fi

echo "$failures failures"
[ $failures -eq 0 ]

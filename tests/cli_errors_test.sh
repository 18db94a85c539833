#!/usr/bin/env bash
# Bad command lines stop `minipipe` before any training, with a message that names the
# problem: output paths that cannot be written (they would otherwise fail after the whole
# run), unknown devices, impossible stage, micro-batch or thread counts, missing files.
set -uo pipefail
minipipe=$(realpath "$1")  # absolute: one case runs in another folder
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

expect_error() {  # expected text, then the arguments
  local expected=$1; shift
  local output status
  output=$("$minipipe" "$@" 2>&1); status=$?
  if [ $status -eq 0 ]; then
    echo "FAIL: minipipe $*: exit 0, expected an error containing '$expected'"; failures=$((failures + 1))
  elif [[ "$output" != *"$expected"* ]]; then
    echo "FAIL: minipipe $*: the message does not contain '$expected':"; echo "$output"; failures=$((failures + 1))
  elif [[ "$output" == *"step 1/"* ]]; then
    echo "FAIL: minipipe $*: training started before the error"; failures=$((failures + 1))
  else
    echo "ok: minipipe $*: $(echo "$output" | head -n 1)"
  fi
}

tiny_gpt=(train gpt --steps 1 --dim 16 --layers 1 --heads 2 --context 16 --batch-size 2 --sample-length 0)
expect_error "--save: folder '$work/missing' does not exist" "${tiny_gpt[@]}" --save "$work/missing/gpt.safetensors"
expect_error "--save: '$work' is a folder" "${tiny_gpt[@]}" --save "$work"
expect_error "--log-json: folder '$work/missing' does not exist" train cnn --steps 1 --log-json "$work/missing/log.jsonl"
expect_error "--trace: folder '$work/missing' does not exist" "${tiny_gpt[@]}" --stages 2 --trace "$work/missing/t.json"
expect_error "--timeline: folder '$work/missing' does not exist" simulate --timeline "$work/missing/t.svg"
expect_error "--token-slices is an option of \`minipipe train gpt\`" train cnn --steps 1 --token-slices 2
expect_error "--epochs is an option of \`minipipe train cnn\`" "${tiny_gpt[@]}" --epochs=2
expect_error "--trace excludes --untimed" "${tiny_gpt[@]}" --stages 2 --untimed --trace "$work/t.json"
expect_error "unknown device 'gpu'" "${tiny_gpt[@]}" --device gpu
expect_error "into 9 stages" train cnn --steps 1 --stages 9
expect_error "into 100 micro-batches" train cnn --steps 1 --batch-size 8 --micro-batches 100
expect_error "neither a file nor a sharded checkpoint" "${tiny_gpt[@]}" --resume "$work/none.safetensors"
expect_error "--stages: must be a positive number" "${tiny_gpt[@]}" --stages 0
expect_error "--target-accuracy: must be a fraction above 0 and at most 1 (0.95 for 95%)" train cnn --steps 1 --target-accuracy 95
expect_error "--target-accuracy is an option of \`minipipe train cnn\`" "${tiny_gpt[@]}" --target-accuracy 0.5
expect_error "--threads: Value 0 not in range" "${tiny_gpt[@]}" --threads 0
expect_error "add --schedule pipedream" "${tiny_gpt[@]}" --stages 2 --weights none
expect_error "use at least 3" "${tiny_gpt[@]}" --stages 3 --schedule pipedream --weights 2bw --micro-batches 2
expect_error "--weights: stale not in" "${tiny_gpt[@]}" --schedule pipedream --weights stale
expect_error "--replicas replicates stages of PipeDream's asynchronous pipeline: add --schedule pipedream" \
  "${tiny_gpt[@]}" --stages 2 --replicas 2,1
expect_error "give one count per stage" "${tiny_gpt[@]}" --stages 2 --schedule pipedream --replicas 2
expect_error "'x' is not a replica count" "${tiny_gpt[@]}" --stages 2 --schedule pipedream --replicas 2,x
expect_error "make --steps, --eval-interval and --stop-after (and the step resumed from) multiples of 3" \
  "${tiny_gpt[@]}" --stages 2 --schedule pipedream --replicas 3,1
expect_error "2bw does not run with replicated stages" "${tiny_gpt[@]}" --stages 2 --schedule pipedream \
  --weights 2bw --micro-batches 2 --replicas 2,2
expect_error "excludes" "${tiny_gpt[@]}" --stages 2 --schedule pipedream --replicas 2,1 --plan auto
expect_error "add --schedule pipedream" simulate --stages 2 --replicas 2,1
expect_error "M must be a multiple of 2; got 3 (use 4)" train gpt --steps 1 --dim 16 --layers 2 --heads 2 --context 16 \
  --batch-size 6 --sample-length 0 --stages 2 --micro-batches 3 --schedule interleaved --virtual-stages 2
expect_error "for --schedule interleaved, not zb-h1" "${tiny_gpt[@]}" --stages 2 --schedule zb-h1 --virtual-stages 2
expect_error "needs --virtual-stages 2 or more" "${tiny_gpt[@]}" --stages 2 --schedule interleaved
expect_error "lower --stages or --virtual-stages" "${tiny_gpt[@]}" --stages 2 --micro-batches 2 --schedule interleaved \
  --virtual-stages 3
expect_error "do not cut sequences into token slices" "${tiny_gpt[@]}" --stages 2 --schedule zb-h2 --token-slices 2
expect_error "--token-slices: must be a number of slices >= 1, their lengths joined by '+' (40+24), or auto, got '0'" "${tiny_gpt[@]}" --token-slices 0
expect_error "--token-slices: must be a number of slices >= 1, their lengths joined by '+' (40+24), or auto, got 'many'" "${tiny_gpt[@]}" --token-slices many
expect_error "got '8+x'" "${tiny_gpt[@]}" --token-slices 8+x
expect_error "--max-in-flight bounds the micro-batches zb-auto keeps in flight, not 1f1b's" "${tiny_gpt[@]}" --stages 2 --schedule 1f1b --max-in-flight 2
expect_error "needs at least 2 micro-batches per stage (M >= 2K = 4)" simulate --stages 2 --micro-batches 2 --schedule dualpipev
expect_error "4 pieces (2 chunks per stage) do not fit a model of 3 layers" "${tiny_gpt[@]}" --stages 2 --schedule zb-v
expect_error "holds 2 chunks per stage in a V: drop --virtual-stages" "${tiny_gpt[@]}" --stages 2 --schedule zb-v --virtual-stages 3
expect_error "token slices 8+4 cover 12 tokens, but the sequences have 16" "${tiny_gpt[@]}" --token-slices 8+4
expect_error "exceeds the 16 tokens of a sequence: use at most 16" "${tiny_gpt[@]}" --token-slices 17
expect_error "not pipedream" "${tiny_gpt[@]}" --stages 2 --schedule pipedream --token-slices 2
expect_error "--token-slices" train cnn --steps 1 --token-slices 2
expect_error "pipedream is asynchronous and does not slice" simulate --schedule pipedream --token-slices 2
expect_error "--sample-length: must be a number of bytes from 0 to 1000000 (0: no sample), got '-5'" \
  train gpt --steps 1 --sample-length -5
expect_error "--sample-length: must be a number of bytes from 0 to 1000000" train gpt --sample-length 99999999999
expect_error "--length: must be a number of bytes from 1 to 1000000, got '0'" sample gpt --checkpoint "$0" --length 0

# --schedule's help names every schedule that make_schedule knows, one line each.
for command in "train gpt" "train cnn" simulate; do
  help=$("$minipipe" $command --help 2>&1)
  for schedule in gpipe 1f1b interleaved zb-h1 zb-h2 pipedream; do
    [[ "$help" == *"  $schedule: "* ]] || { echo "FAIL: minipipe $command --help does not list $schedule"; failures=$((failures + 1)); }
  done
done

# PyTorch's schedule files: a broken one names the rank, column and reason; one exported by
# simulate trains, and the flags the file decides are refused beside it.
printf '0F0,0B0\n1F0,1Q0\n' > "$work/broken.csv"
expect_error "rank 1, column 2: '1Q0' has the unknown type Q" simulate --schedule-file "$work/broken.csv"
"$minipipe" simulate --schedule interleaved --stages 2 --virtual-stages 2 --micro-batches 2 \
  --export-schedule "$work/interleaved.csv" > /dev/null 2>&1 ||
  { echo "FAIL: simulate --export-schedule did not write the schedule"; failures=$((failures + 1)); }
expect_error "--stages excludes --schedule-file" "${tiny_gpt[@]}" --schedule-file "$work/interleaved.csv" --stages 2
expect_error "drop --weights, --replicas and --token-slices" "${tiny_gpt[@]}" --schedule-file "$work/interleaved.csv" \
  --token-slices 2
output=$("$minipipe" train gpt --steps 2 --dim 16 --layers 2 --heads 2 --context 16 --batch-size 4 --sample-length 0 \
  --schedule-file "$work/interleaved.csv" 2>&1) && [[ "$output" == *"interleaved.csv (2 chunks per stage), 2 micro-batches"* ]] ||
  { echo "FAIL: train gpt --schedule-file did not train with the exported schedule:"; echo "$output"; failures=$((failures + 1)); }

# A path in the working folder, without a folder part, is fine.
(cd "$work" && "$minipipe" "${tiny_gpt[@]}" --save gpt.safetensors > /dev/null 2>&1) && [ -f "$work/gpt.safetensors" ] ||
  { echo "FAIL: --save gpt.safetensors (no folder part) did not write the checkpoint"; failures=$((failures + 1)); }
# More threads than cores is allowed, with a note that times will then say little.
output=$("$minipipe" "${tiny_gpt[@]}" --stages 2 --threads 1024 2>&1) && [[ "$output" == *"the stages want 2048 threads"* ]] ||
  { echo "FAIL: --stages 2 --threads 1024 did not train with a note on oversubscription:"; echo "$output"; failures=$((failures + 1)); }
[ $failures -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "all error cases named their problem before training"

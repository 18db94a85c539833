#!/usr/bin/env bash
# Pipelines across processes (mpirun), on the CPU:
# - the losses of mpirun -np K runs equal the in-process run's bit for bit (GPipe and 1F1B,
#   zero bubble, interleaved, tied embeddings and PipeDream, K = 2 and 4; token slices, 2BW,
#   DualPipeV and zb-auto, K = 2; a skip connection across 2 and 3 ranks; --plan auto and --token-slices auto as
#   planned on rank 0; pipedream with 2 replicas per stage, each weight policy), and 2 stages x 2 data-parallel replicas
#   equal the same replicas as threads of one process bit for bit (and one pipeline on the
#   whole batch to float rounding);
# - each rank holds and sends only its stage's share (parameters, peak, bytes per step), the
#   memory limit is per rank, and sharded checkpoints resume under other rank counts;
# - a bad launch fails before the first step, naming the fix;
# - a rank that throws, is killed or hangs ends every rank within 10 s, naming the rank, in
#   TRIALS randomized trials (default 20). The 10 s hold for as many ranks as cores; with more
#   ranks than cores each rank gets a share of a core, and the limit grows by the same factor
#   (4 ranks on 2 cores: 20 s). Measured on 2 cores, alone: 2 ranks end in 1-5 s, 4 ranks in
#   2.5-5 s (a hang takes longest: its neighbours wait 3 s), and 10.3 s was seen once with 4.
# Skips (77) where mpirun or this build's MPI is missing. -np 4 oversubscribes 2 cores.
#   tests/mpi_test.sh MINIPIPE MPI_FAULT [TRIALS] [--quick]
set -uo pipefail
minipipe=$(realpath "$1")
fault=$(realpath "$2")
trials=${3:-20}
quick=$([ "${4:-}" = --quick ] && echo 1 || echo 0)  # under the sanitizers: no measurements
command -v mpirun > /dev/null || { echo "no mpirun: install openmpi-bin"; exit 77; }
"$minipipe" info | grep -q "MPI *found" || { echo "this minipipe was built without MPI"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # CI runs as root
export OMPI_MCA_rmaps_base_oversubscribe=1                       # more ranks than cores
# A rank waiting inside MPI gives its core up instead of spinning: with 4 ranks on 2 cores a
# spinning rank takes the time of the one it waits for.
export OMPI_MCA_mpi_yield_when_idle=1
# Open MPI keeps allocations from MPI_Init to the end, which LeakSanitizer would report.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

train="train gpt --layers 4 --dim 32 --context 32 --batch-size 8 --steps 6 --eval-interval 3 --sample-length 0"
losses() {  # every step's and evaluation's loss in a JSON log, all digits
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "loss" in e or "validation_loss" in e: print(e.get("loss", e.get("validation_loss")))' "$1"
}

# 1f1b+tied: the head's weight is the embedding's (--tie-embeddings), held by ranks 0 and K-1;
# gpipe+slices: TeraPipe's token slices (4 per sequence); pipedream: weight stashing, each rank
# stepping its stage's optimizer on its own; pipedream+2bw: PipeDream-2BW's double buffering.
# dualpipev: DeepSeek's V with forwards paired with backwards, B and W split (M = 4 = 2K);
# zb-auto: zero bubble placed from costs rank 0 measures and sends the others.
for variant in gpipe 1f1b 1f1b+tied zb-h1 interleaved gpipe+slices pipedream pipedream+2bw dualpipev zb-auto; do
  for stages in 2 4; do
    # Slices and 2bw at K = 2 only; interleaved at K = 4 needs 8 pieces: 6 blocks. Under the
    # sanitizers (--quick) K = 2, one variant per code path: the rest repeats them.
    case $variant in gpipe+slices|pipedream+2bw|dualpipev|zb-auto) [ "$stages" = 4 ] && continue ;; esac
    case "$quick $stages $variant" in "1 2 1f1b"|"1 2 1f1b+tied"|"1 2 interleaved"|"1 2 pipedream"|0*) ;; *) continue ;; esac
    schedule=${variant%+*} chunks= model=$train
    [ "$variant" = interleaved ] && chunks="--virtual-stages 2" && [ "$stages" = 4 ] && model=${train/--layers 4/--layers 6}
    [ "$variant" = 1f1b+tied ] && chunks="--tie-embeddings"
    [ "$variant" = gpipe+slices ] && chunks="--token-slices 4"
    [ "$variant" = pipedream+2bw ] && chunks="--weights 2bw"
    name="${variant/+/-}-K$stages"
    "$minipipe" $model --stages "$stages" $chunks --micro-batches 4 --schedule "$schedule" --log-json "$name-threads.jsonl" \
      > /dev/null 2>&1 || fail "$name: the in-process run failed"
    timeout 120 mpirun -np "$stages" "$minipipe" $model --stages "$stages" $chunks --micro-batches 4 --schedule "$schedule" \
      --log-json "$name-mpi.jsonl" --timeline "$name.svg" > "$name.out" 2>&1 || { cat "$name.out"; fail "$name: mpirun failed"; continue; }
    grep -q "rank $((stages - 1)): stage $((stages - 1)) of replica 0" "$name.out" || fail "$name: no rank map"
    # Every rank's events, gathered on rank 0: one timeline row per rank.
    [ "$(grep -c '<text x="4" y="[0-9]*">rank [0-9]*: stage' "$name.svg")" -eq "$stages" ] || fail "$name: not one timeline row per rank"
    if [ "$(losses "$name-threads.jsonl")" == "$(losses "$name-mpi.jsonl")" ]; then
      echo "ok: $name over MPI equals the threads bit for bit ($(losses "$name-mpi.jsonl" | wc -l) losses)"
    else
      fail "$name: losses differ"; paste <(losses "$name-threads.jsonl") <(losses "$name-mpi.jsonl")
    fi
  done
done

if [ "$quick" = 0 ]; then  # not under the sanitizers: the same code paths again
# A V-shaped schedule file (rank 0 holds the first and the last piece, so its rank computes
# the loss and sends evaluation's output to the others).
printf '0F0,0F1,,,3F0,3B0,3F1,3B1,,,0B0,0B1\n,1F0,1F1,2F0,2F1,,2B0,2B1,1B0,1B1\n' > v.csv
"$minipipe" $train --schedule-file v.csv --log-json v-threads.jsonl > /dev/null 2>&1 || fail "V file: the in-process run failed"
timeout 120 mpirun -np 2 "$minipipe" $train --schedule-file v.csv --log-json v-mpi.jsonl > v.out 2>&1 || { cat v.out; fail "V file: mpirun failed"; }
if [ "$(losses v-threads.jsonl)" == "$(losses v-mpi.jsonl)" ]; then
  echo "ok: a V-shaped schedule file over MPI equals the threads bit for bit"
else
  fail "V file over MPI: losses differ"; paste <(losses v-threads.jsonl) <(losses v-mpi.jsonl)
fi
fi

# --plan auto across processes: rank 0 times the layers (built one at a time) and plans, every
# rank takes that plan, and training equals threads on the same partition, bit for bit.
for schedule in 1f1b pipedream; do
  [ "$quick" = 1 ] && break
  timeout 120 mpirun -np 2 "$minipipe" $train --stages 2 --micro-batches 4 --schedule $schedule --plan auto \
    --log-json "planned-$schedule.jsonl" > planned.out 2>&1 || { cat planned.out; fail "--plan auto, $schedule: mpirun failed"; continue; }
  balance=$(python3 -c 'import json,sys
print(",".join(map(str, [e["pipeline"]["layers_per_stage"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "summary"][0])))' "planned-$schedule.jsonl")
  "$minipipe" $train --stages 2 --micro-batches 4 --schedule $schedule --partition "$balance" \
    --log-json "planned-$schedule-threads.jsonl" > /dev/null 2>&1 || fail "--partition $balance, $schedule: the in-process run failed"
  if grep -q "planned on rank 0" planned.out && [ "$(losses "planned-$schedule.jsonl")" == "$(losses "planned-$schedule-threads.jsonl")" ]; then
    echo "ok: --plan auto over MPI ($schedule) chose $balance on rank 0 and equals threads on it bit for bit"
  else
    fail "--plan auto over MPI ($schedule): not planned on rank 0, or losses differ from threads on $balance"
  fi
done

# --token-slices auto across processes: rank 0 times the slices on each stage (built alone in
# its turn) and plans; training equals threads given the lengths it chose, bit for bit. Long
# sequences of a narrow model, where slicing pays (3 slices, measured).
if [ "$quick" = 0 ]; then
  long="train gpt --layers 4 --dim 32 --context 128 --batch-size 2 --steps 4 --eval-interval 2 --sample-length 0 --stages 2"
  timeout 120 mpirun -np 2 "$minipipe" $long --micro-batches 1 --schedule 1f1b --token-slices auto \
    --log-json sliced-auto.jsonl > sliced-auto.out 2>&1 || { cat sliced-auto.out; fail "--token-slices auto: mpirun failed"; }
  lengths=$(python3 -c 'import json,sys
print("+".join(map(str, [e["pipeline"]["token_slices"] for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "summary"][0])))' sliced-auto.jsonl)
  slices=$([[ "$lengths" == *+* ]] && echo "$lengths" || echo 1)  # one length: the sequence whole, 1 slice
  "$minipipe" $long --micro-batches 1 --schedule 1f1b --token-slices "$slices" \
    --log-json sliced-threads.jsonl > /dev/null 2>&1 || fail "--token-slices $slices: the in-process run failed"
  if grep -q "TeraPipe's planner.*planned on rank 0" sliced-auto.out && [ "$(losses sliced-auto.jsonl)" == "$(losses sliced-threads.jsonl)" ]; then
    echo "ok: --token-slices auto over MPI chose $lengths on rank 0 and equals threads on it bit for bit"
  else
    fail "--token-slices auto over MPI: not planned on rank 0, or losses differ from threads on $lengths"
  fi
fi

# Data parallel: each replica trains on half of every mini-batch. The same replicas as threads of
# one process are the oracle bit for bit (both add the replicas' gradients in replica order);
# one process on the whole batch, which accumulates the micro-batches in another order, agrees
# with those threads to float rounding, which checks the averaging itself.
dp="--stages 2 --data-parallel 2 --micro-batches 2 --schedule 1f1b"
"$minipipe" $train --log-json one.jsonl > /dev/null 2>&1 || fail "the one-process run failed"
"$minipipe" $train $dp --log-json dp-threads.jsonl > /dev/null 2>&1 || fail "2 stages x 2 replicas in threads failed"
timeout 120 mpirun -np 4 "$minipipe" $train $dp --log-json dp.jsonl > dp.out 2>&1 ||
  { cat dp.out; fail "2 stages x 2 replicas: mpirun failed"; }
if [ "$(losses dp.jsonl)" == "$(losses dp-threads.jsonl)" ]; then
  echo "ok: 2 stages x 2 replicas over MPI equal the same replicas as threads bit for bit"
else
  fail "2 stages x 2 replicas: mpirun's losses differ from the threads'"
fi
python3 - one.jsonl dp-threads.jsonl <<'PY' || fail "2 stages x 2 replicas: losses differ from one process beyond 1e-5"
import json, sys
def losses(path):
    return [e.get("loss", e.get("validation_loss")) for e in map(json.loads, open(path)) if "loss" in e or "validation_loss" in e]
one, dp = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(a - b) / abs(a) for a, b in zip(one, dp))
print(f"ok: 2 replicas against one pipeline on the whole batch: {len(dp)} losses, largest relative difference {worst:.1e}")
sys.exit(0 if len(one) == len(dp) and worst <= 1e-5 else 1)
PY

# PipeDream's data parallelism (section 3.1): --data-parallel 2 replicates both stages, a rank
# per replica; the replicas take whole mini-batches round-robin and all-reduce before each
# update. The same replicas as threads of one process are the oracle, bit for bit, for each
# weight policy; 4 ranks save at step 4 and one process resumes exactly.
pd="--stages 2 --micro-batches 2 --schedule pipedream --data-parallel 2 --steps 8 --eval-interval 4"
pd_train=${train/--steps 6 --eval-interval 3/}
for weights in stash vertical-sync none; do
  [ "$quick" = 1 ] && [ "$weights" != stash ] && continue
  "$minipipe" $pd_train $pd --weights $weights --log-json "pd-$weights-threads.jsonl" > /dev/null 2>&1 ||
    fail "pipedream ($weights) with 2 replicas in threads failed"
  timeout 120 mpirun -np 4 "$minipipe" $pd_train $pd --weights $weights --log-json "pd-$weights.jsonl" > pd.out 2>&1 ||
    { cat pd.out; fail "pipedream ($weights) with 2 replicas per stage: mpirun failed"; }
  if [ "$(losses "pd-$weights.jsonl")" == "$(losses "pd-$weights-threads.jsonl")" ]; then
    echo "ok: pipedream ($weights), 2 stages x 2 replicas over MPI, equals the replicas as threads bit for bit"
  else
    fail "pipedream ($weights), 2 stages x 2 replicas: mpirun's losses differ from the threads'"
  fi
done
if [ "$quick" = 0 ]; then
  timeout 120 mpirun -np 4 "$minipipe" $pd_train $pd --stop-after 4 --save pd-half.safetensors --log-json pd-first.jsonl \
    > pd.out 2>&1 || { cat pd.out; fail "pipedream with replicas: the save under mpirun failed"; }
  "$minipipe" $pd_train $pd --resume pd-half.safetensors --log-json pd-second.jsonl > /dev/null 2>&1 ||
    fail "pipedream with replicas: the resume in one process failed"
  if [ "$(losses pd-first.jsonl; losses pd-second.jsonl)" == "$(losses pd-stash-threads.jsonl)" ]; then
    echo "ok: pipedream with replicas saved by 4 ranks at step 4, resumed in one process: the run in one go's losses"
  else
    fail "pipedream with replicas: saved by 4 ranks and resumed, the losses differ from the run in one go"
  fi
fi

# A skip connection from the first stage to the last (tests/mpi_skips.cpp): its tensor goes
# straight from the stashing rank to the popping rank and its gradient straight back; losses
# and the evaluation's output equal the threads' and one device's to the last bit.
skips="$(dirname "$fault")/mpi_skips"
"$skips" 1f1b 1 > skips-one.out 2>&1 || { cat skips-one.out; fail "mpi_skips on one device failed"; }
for variant in "1f1b 3" "zb-h1 2"; do
  [ "$quick" = 1 ] && [ "$variant" != "1f1b 3" ] && continue
  set -- $variant
  "$skips" "$1" "$2" > skips-threads.out 2>&1 || fail "mpi_skips $variant in threads failed"
  timeout 60 mpirun -np "$2" "$skips" "$1" "$2" > skips-ranks.out 2>&1 || { cat skips-ranks.out; fail "mpi_skips $variant: mpirun failed"; }
  if cmp -s skips-ranks.out skips-threads.out && cmp -s skips-ranks.out skips-one.out; then
    echo "ok: a skip across $2 ranks ($1) equals threads and one device bit for bit"
  else
    diff skips-ranks.out skips-threads.out; fail "a skip across $2 ranks ($1) differs from threads or one device"
  fi
done

# Sharded checkpoints: 4 ranks save at step 3 (a shard each, and rank 0 the index), then the run
# resumes under 2 ranks and in one process; both continue with the uninterrupted run's losses
# (gpipe and 1f1b give the same, bit for bit), and `minipipe eval` reads the index.
timeout 120 mpirun -np 4 "$minipipe" $train --stages 4 --micro-batches 4 --schedule gpipe --stop-after 3 --save half.safetensors \
  --log-json first-half.jsonl > half.out 2>&1 || { cat half.out; fail "the first half failed"; }
[ -f half.safetensors.index.json ] && [ "$(ls half-*-of-00004.safetensors | wc -l)" -eq 4 ] || { ls; fail "no index and 4 shards"; }
timeout 120 mpirun -np 2 "$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --resume half.safetensors \
  --log-json second-half.jsonl > half.out 2>&1 || { cat half.out; fail "the half resumed under 2 ranks failed"; }
[ "$quick" = 0 ] && { "$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --resume half.safetensors \
  --log-json one-process-half.jsonl > half.out 2>&1 || { cat half.out; fail "the half resumed in one process failed"; }; }
for resumed in second-half $([ "$quick" = 0 ] && echo one-process-half); do
  if [ "$(cat <(losses first-half.jsonl) <(losses $resumed.jsonl))" == "$(losses 1f1b-K2-threads.jsonl)" ]; then
    echo "ok: saved by 4 ranks at step 3, resumed ($resumed): the same losses as the run in one go"
  else
    fail "$resumed: losses differ"; paste <(losses 1f1b-K2-threads.jsonl) <(cat <(losses first-half.jsonl) <(losses $resumed.jsonl))
  fi
done
if [ "$quick" = 0 ]; then  # single files, eval, sample, tied and killed saves
# And the other way: a single file saved by one process resumes under 2 ranks.
"$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --stop-after 3 --save single.safetensors \
  --log-json single-first.jsonl > single.out 2>&1 || { cat single.out; fail "the one-process first half failed"; }
timeout 120 mpirun -np 2 "$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --resume single.safetensors \
  --log-json single-second.jsonl > single.out 2>&1 || { cat single.out; fail "a single file resumed under 2 ranks failed"; }
if [ "$(cat <(losses single-first.jsonl) <(losses single-second.jsonl))" == "$(losses 1f1b-K2-threads.jsonl)" ]; then
  echo "ok: a single file saved by one process resumed under 2 ranks: the same losses as the run in one go"
else
  fail "a single file resumed under 2 ranks: losses differ"
fi
"$minipipe" sample gpt --checkpoint half.safetensors --length 20 > sampled.out 2>&1 || { cat sampled.out; fail "sample from the index failed"; }
# eval reads the 4 ranks' index of step 3 and must give the validation loss training logged there.
"$minipipe" eval gpt --checkpoint half.safetensors > eval.out 2>&1 || { cat eval.out; fail "eval of the index failed"; }
logged=$(python3 -c 'import json,sys; print([e["validation_loss"] for e in map(json.loads, open(sys.argv[1])) if "validation_loss" in e][-1])' first-half.jsonl)
python3 - eval.out "$logged" <<'PY' || { cat eval.out; fail "eval of the sharded checkpoint differs from training's validation loss"; }
import re, sys
found = [float(x) for x in re.findall(r"validation loss ([0-9.]+)", open(sys.argv[1]).read())]
print(f"ok: eval of the 4 ranks' index: {found[:1]} equals training's {sys.argv[2]}")
sys.exit(0 if found and found[0] == float(sys.argv[2]) else 1)
PY

# A tied weight in a sharded checkpoint is saved once, under the embedding's name, and the head's
# rank loads its copy from it: saved by 2 ranks at step 3, resumed in one process and by 2 ranks.
timeout 120 mpirun -np 2 "$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --tie-embeddings --stop-after 3 \
  --save tied.safetensors --log-json tied-first.jsonl > tied.out 2>&1 || { cat tied.out; fail "tied: the first half failed"; }
grep -q '"head.logits.weight"' tied.safetensors.index.json && fail "tied: the head's copy was saved as well"
"$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --tie-embeddings --resume tied.safetensors \
  --log-json tied-one.jsonl > tied.out 2>&1 || { cat tied.out; fail "tied: resumed in one process failed"; }
timeout 120 mpirun -np 2 "$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b --tie-embeddings --resume tied.safetensors \
  --log-json tied-two.jsonl > tied.out 2>&1 || { cat tied.out; fail "tied: resumed by 2 ranks failed"; }
for resumed in tied-one tied-two; do
  if [ "$(cat <(losses tied-first.jsonl) <(losses $resumed.jsonl))" == "$(losses 1f1b-tied-K2-threads.jsonl)" ]; then
    echo "ok: tied weights saved by 2 ranks at step 3, resumed ($resumed): the same losses as the run in one go"
  else
    fail "$resumed: losses differ"; paste <(losses 1f1b-tied-K2-threads.jsonl) <(cat <(losses tied-first.jsonl) <(losses $resumed.jsonl))
  fi
done

# kill -9 during a save leaves the previous checkpoint loadable. The next save's index is
# written to a temporary file that is here a named pipe, so rank 0 blocks there after every
# shard is written, which is the moment to kill it.
mkfifo half.safetensors.index.json.tmp
timeout 120 mpirun -np 4 "$minipipe" $train --stages 4 --micro-batches 4 --schedule gpipe --resume half.safetensors \
  --save half.safetensors > killed.out 2>&1 &
launcher=$!
for _ in $(seq 1 600); do [ "$(ls half-*-of-00004.safetensors 2>/dev/null | wc -l)" -ge 8 ] && break; sleep 0.1; done
for pid in $(pgrep -f "minipipe train gpt"); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=0"; then kill -9 "$pid"; fi
done
wait "$launcher"
rm -f half.safetensors.index.json.tmp
if [ "$(ls half-*-of-00004.safetensors | wc -l)" -eq 8 ] && "$minipipe" $train --stages 2 --micro-batches 4 --schedule 1f1b \
     --resume half.safetensors --log-json after-kill.jsonl > after-kill.out 2>&1 &&
   [ "$(cat <(losses first-half.jsonl) <(losses after-kill.jsonl))" == "$(losses 1f1b-K2-threads.jsonl)" ]; then
  echo "ok: rank 0 killed (-9) with the new shards written and the index not: the previous checkpoint resumes exactly"
else
  ls; cat killed.out after-kill.out; fail "a save killed midway did not leave the previous checkpoint loadable"
fi
fi

# A rank holds its stage alone (GPT of 8 blocks, K = 4): its parameters at most 40% of the
# model's, its peak at most 45% of one process's; it sends per step exactly the activations
# and gradients of its boundaries (micro-batches x batch/micro-batches x context x dim x 4
# bytes = batch x context x dim x 4) and a few scalars.
big="train gpt --layers 8 --steps 4 --eval-interval 4 --sample-length 0"
if [ "$quick" = 0 ]; then  # measurements
"$minipipe" $big --log-json whole.jsonl > /dev/null 2>&1 || fail "the one-process GPT of 8 blocks failed"
timeout 200 mpirun -np 4 "$minipipe" $big --stages 4 --micro-batches 4 --schedule 1f1b --log-json ranks.jsonl > ranks.out 2>&1 ||
  { cat ranks.out; fail "the GPT of 8 blocks under 4 ranks failed"; }
python3 - whole.jsonl ranks.jsonl <<'PY' || fail "what the ranks hold and send"
import json, sys
summary = lambda p: [e for e in map(json.loads, open(p)) if e.get("event") == "summary"][0]
whole, split = summary(sys.argv[1]), summary(sys.argv[2])
ranks, model = split["ranks"], sum(r["parameters"] for r in split["ranks"])
boundary = 16 * 128 * 128 * 4  # batch x context x dim x float
ok = len(ranks) == 4
for r in ranks:
    sent = r["sent_bytes_per_step"]
    share, peak = r["parameters"] / model, r["peak_bytes"] / whole["peak_bytes"]["cpu"]
    expected = (boundary if r["rank"] < 3 else 0, boundary if r["rank"] > 0 else 0)
    print(f"rank {r['rank']}: stages {r['stages']}, {r['parameters']} parameters ({100 * share:.0f}% of {model}), "
          f"peak {r['peak_bytes'] >> 20} MiB ({100 * peak:.0f}% of one process's), sent per step {sent}")
    ok &= share <= 0.40 and peak <= 0.45 and (sent["activations"], sent["gradients"]) == expected
    # scalars: the loss, and a (layer, squared norm) pair per parameter tensor (at most 40 here)
    ok &= sent["replica_gradients"] == 0 and sent["tied_gradients"] == 0 and sent["scalars"] <= 8 + 16 * 40
if ok:
    print("ok: 4 ranks each hold at most 40% of the parameters and 45% of one process's peak, and send only their boundaries")
sys.exit(0 if ok else 1)
PY
fi

if [ "$quick" = 0 ]; then  # measurements
# --memory-limit is each rank's: a GPT that one process may not train under 30 MiB (its
# estimate: 44 MiB) trains 20 steps under 4 ranks (the largest rank's estimate: 16 MiB).
limited="train gpt --layers 8 --dim 64 --context 64 --batch-size 8 --steps 20 --eval-interval 20 --sample-length 0 --memory-limit 30"
if "$minipipe" $limited > alone.out 2>&1 || ! grep -q "needs about 44 MiB" alone.out; then
  cat alone.out; fail "one process was not refused under --memory-limit 30, with its estimate"
fi
timeout 200 mpirun -np 4 "$minipipe" $limited --stages 4 --micro-batches 4 --log-json limited.jsonl > limited.out 2>&1 ||
  { cat limited.out; fail "4 ranks under --memory-limit 30 failed"; }
python3 -c 'import json,sys
l=[e["loss"] for e in map(json.loads, open(sys.argv[1])) if "loss" in e]
print(f"ok: refused by one process under --memory-limit 30, trained 20 steps by 4 ranks: loss {l[0]:.3f} -> {l[-1]:.3f}")
sys.exit(0 if len(l) == 20 and l[-1] < l[0] else 1)' limited.jsonl || fail "4 ranks under the limit: loss did not fall"
fi

# Ctrl-C reaching one rank only (mpirun forwards it to all, but not always at the same moment):
# every rank stops after the same step, and the ranks save their shards.
timeout 120 mpirun -np 2 "$minipipe" ${train/--steps 6/--steps 100000} --stages 2 --micro-batches 4 --schedule 1f1b \
  --save stopped.safetensors --log-json stopped.jsonl > stopped.out 2>&1 &
launcher=$!
# Under the sanitizers on a busy machine the first step can be slow to come, so both waits
# are long (once the CI run found no rank 1 to signal and the run went on to its timeout).
stepped=no signalled=no
for _ in $(seq 1 900); do grep -q '"event": *"step"' stopped.jsonl 2>/dev/null && stepped=yes && break; sleep 0.1; done
for _ in $(seq 1 300); do
  for pid in $(pgrep -f "minipipe train gpt"); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
      kill -INT "$pid" && signalled=yes
    fi
  done
  [ "$signalled" = yes ] && break
  sleep 0.1
done
start=$SECONDS
wait "$launcher"
if grep -q "stopped by a signal to another process after step" stopped.out && [ -f stopped.safetensors.index.json ] && [ $((SECONDS - start)) -le 10 ]; then
  echo "ok: Ctrl-C on rank 1 alone stopped both ranks after one step, in $((SECONDS - start)) s, and they saved"
else
  cat stopped.out
  fail "Ctrl-C on one rank did not stop the run together (a step logged: $stepped; rank 1 signalled: $signalled)"
fi

# A bad launch: the wrong number of processes, or ranks with different flags.
expect_refusal() {  # name, text expected, command...
  local name=$1 text=$2
  shift 2
  local start=$SECONDS
  if timeout 60 "$@" > "$work/refusal.out" 2>&1; then fail "$name: succeeded"; return; fi
  if grep -q -- "$text" "$work/refusal.out"; then echo "ok: $name refused in $((SECONDS - start)) s"; else
    cat "$work/refusal.out"; fail "$name: no '$text'"; fi
}
expect_refusal "3 processes for 2 stages" "start mpirun -np 2" mpirun -np 3 "$minipipe" $train --stages 2
expect_refusal "ranks with other flags" "rank 1's command line differs from rank 0's" \
  mpirun -np 1 "$minipipe" $train --stages 2 --seed 1 : -np 1 "$minipipe" $train --stages 2 --seed 2
expect_refusal "--device cuda:1 under mpirun" "write --device cuda" mpirun -np 2 "$minipipe" $train --stages 2 --device cuda:1
if ! "$minipipe" info | grep -qE "GPUs seen: [1-9]"; then
  expect_refusal "GPU ranks without GPUs" "2 ranks on this host share 0 GPUs" mpirun -np 2 "$minipipe" $train --stages 2 --device cuda
fi
expect_refusal "pipedream with --data-parallel and --replicas" "drop --replicas and --plan auto" \
  "$minipipe" $train --stages 2 --data-parallel 2 --replicas 2,1 --schedule pipedream
[ "$quick" = 1 ] && echo "quick: one variant per code path at K = 2; no measurements, planning, V file, tied or killed saves"
[ "$quick" = 0 ] && expect_refusal "pipedream with tied embeddings" "updates at different times" \
  mpirun -np 2 "$minipipe" $train --stages 2 --schedule pipedream --tie-embeddings
[ "$quick" = 0 ] && expect_refusal "pipedream's --replicas across processes" "give --data-parallel D" \
  mpirun -np 2 "$minipipe" $train --stages 2 --replicas 2,2 --schedule pipedream

# Failures: TRIALS trials of a random rank failing at a random step, by an exception, SIGKILL or
# hanging (its neighbours stop waiting after 3 s and name it).
RANDOM=7
cores=$(nproc)
for trial in $(seq 1 "$trials"); do
  stages=$((RANDOM % 2 == 0 ? 2 : 4)); rank=$((RANDOM % stages)); step=$((RANDOM % 4))
  modes=(throw kill hang); mode=${modes[$((RANDOM % 3))]}
  start=$(date +%s.%N)
  timeout 30 mpirun -np "$stages" "$fault" "$stages" "$rank" "$step" "$mode" > fault.out 2>&1
  status=$?
  seconds=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  what="trial $trial: rank $rank of $stages fails ($mode) at step $step"
  if [ "$status" -eq 0 ] || [ "$status" -eq 124 ]; then cat fault.out; fail "$what: status $status after $seconds s"; continue; fi
  limit=$(( stages > cores ? 10 * stages / cores : 10 ))
  if ! python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$seconds" "$limit"; then
    fail "$what: took $seconds s, more than $limit s"; continue
  fi
  case $mode in
    throw) named="error (rank $rank)" ;;
    kill) named="rank $rank with PID" ;;
    hang) named="from rank $rank, which hangs" ;;
  esac
  grep -q "$named" fault.out || { cat fault.out; fail "$what: the output does not name rank $rank"; continue; }
  echo "ok: $what: every rank ended in $seconds s of $limit (status $status)"
done

[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }

#!/usr/bin/env bash
# Pipelines across processes on GPUs: stages send their tensors over NCCL (MPI carries the
# headers) and data-parallel replicas reduce their gradients with NCCL.
# - mpirun -np 2 with 2 stages (gpipe, 1f1b) gives the losses of the same pipeline in one
#   process on one GPU, within 1e-4 relative (GPU atomics vary the last bits between runs);
# - mpirun -np 4, 2 stages x 2 replicas, against one process on the whole batch;
# - a rank whose layer throws ends every rank, naming it.
# Needs a GPU per rank: skips (77) without NCCL in the build, mpirun, or 2 GPUs (4 for the
# replicas). In CI it runs against the emulated GPU (tests/cuda_emulation: 4 emulated GPUs per
# process, the fake NCCL over named pipes).
set -uo pipefail
minipipe=$(realpath "$1")
fault=$(realpath "$2")
command -v mpirun > /dev/null || { echo "skipped: no mpirun (install openmpi-bin)"; exit 77; }
"$minipipe" info | grep -q "NCCL *found" || { echo "skipped: this minipipe was built without NCCL"; exit 77; }
gpus=$("$minipipe" info | sed -nE 's/.*GPUs seen: ([0-9]+).*/\1/p')
[ "${gpus:-0}" -ge 2 ] || { echo "skipped: ${gpus:-0} GPUs here, and two ranks need one each"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export TMPDIR=$work  # the emulation's fake NCCL keeps its pipes there; an aborted run leaves them
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

train="train gpt --layers 4 --dim 32 --context 32 --batch-size 8 --steps 4 --eval-interval 2 --sample-length 0 --device cuda"
# Compares two JSON logs' losses: same count, each within 1e-4 relative.
same_losses() {
  python3 - "$@" <<'PY'
import json, sys
def losses(path):
    return [e.get("loss", e.get("validation_loss")) for e in map(json.loads, open(path)) if "loss" in e or "validation_loss" in e]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max((abs(x - y) / abs(x) for x, y in zip(a, b)), default=1.0)
print(f"{len(b)} losses, largest relative difference {worst:.1e}")
sys.exit(0 if a and len(a) == len(b) and worst <= 1e-4 else 1)
PY
}

for schedule in gpipe 1f1b; do
  "$minipipe" $train --stages 2 --micro-batches 4 --schedule "$schedule" --log-json "$schedule-one.jsonl" \
    > "$schedule-one.out" 2>&1 || { cat "$schedule-one.out"; fail "$schedule: the one-process run failed"; continue; }
  timeout 300 mpirun -np 2 "$minipipe" $train --stages 2 --micro-batches 4 --schedule "$schedule" \
    --log-json "$schedule-mpi.jsonl" > "$schedule-mpi.out" 2>&1 || { cat "$schedule-mpi.out"; fail "$schedule: mpirun failed"; continue; }
  grep -q "rank 1: stage 1 of replica 0 on .* (cuda:1)" "$schedule-mpi.out" || fail "$schedule: the rank map does not name rank 1's GPU"
  if result=$(same_losses "$schedule-one.jsonl" "$schedule-mpi.jsonl"); then
    echo "ok: $schedule, 2 ranks over NCCL against one process: $result"
  else
    fail "$schedule over NCCL: $result"
  fi
done

if [ "$gpus" -ge 4 ]; then
  "$minipipe" $train --log-json whole.jsonl > whole.out 2>&1 || { cat whole.out; fail "the one-GPU run failed"; }
  timeout 300 mpirun -np 4 "$minipipe" $train --stages 2 --data-parallel 2 --micro-batches 2 --schedule 1f1b \
    --log-json dp.jsonl > dp.out 2>&1 || { cat dp.out; fail "2 stages x 2 replicas: mpirun failed"; }
  if result=$(same_losses whole.jsonl dp.jsonl); then
    echo "ok: 2 stages x 2 replicas over NCCL against one GPU with the whole batch: $result"
  else
    fail "2 stages x 2 replicas over NCCL: $result"
  fi
else
  echo "note: $gpus GPUs, so the 2 x 2 data-parallel run (4 ranks) is left out"
fi

# The same small pipeline over NCCL on GPUs and over MPI on the CPU, without a trace, so that
# nothing but the hand-offs between streams orders each stage's work (the emulated GPU's race
# check aborts a run that lacks an order).
for stages in 2 4; do
  [ "$gpus" -ge "$stages" ] || continue
  timeout 300 mpirun -np "$stages" "$fault" "$stages" 0 0 none cpu > "untraced-cpu-$stages.txt" 2>&1 || fail "untraced K=$stages on the CPU failed"
  timeout 300 mpirun -np "$stages" "$fault" "$stages" 0 0 none cuda > "untraced-gpu-$stages.txt" 2>&1 ||
    { cat "untraced-gpu-$stages.txt"; fail "untraced K=$stages on GPUs failed"; continue; }
  if paste "untraced-cpu-$stages.txt" "untraced-gpu-$stages.txt" | awk '
      { n++; d = $4 - $8; if (d < 0) d = -d; if ($1 != "step" || $5 != "step" || d > 1e-5 * ($4 < 0 ? -$4 : $4)) bad = 1 }
      END { exit (bad || n != 6) }'; then
    echo "ok: $stages stages, untraced, over NCCL on GPUs: the CPU's 6 losses within 1e-5"
  else
    paste "untraced-cpu-$stages.txt" "untraced-gpu-$stages.txt"; fail "untraced K=$stages: losses differ"
  fi
done

# A layer that throws on rank 1 at step 2 (mpi_test.sh's fault program, on GPUs): every rank ends.
start=$(date +%s)
timeout 60 mpirun -np 2 "$fault" 2 1 2 throw cuda > fault.out 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && grep -q "error (rank 1)" fault.out && [ "$elapsed" -le 30 ]; then
  echo "ok: a layer that throws on rank 1 ended both ranks in ${elapsed} s"
else
  cat fault.out; fail "a throwing rank: status $status after ${elapsed} s"
fi

[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "all NCCL checks passed"

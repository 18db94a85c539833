#!/usr/bin/python3
"""minipipe against PyTorch (Debian's python3-torch), with the same number of CPU threads
(--threads, default 1), training the same small GPT and CNN. Runs the two alternately,
--repeats times, and prints the median steps/s of each and their ratio (minipipe / PyTorch).

    /usr/bin/python3 benchmarks/compare_training.py --build build [--repeats 3] [--threads 1] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--build", default="build", help="meson build folder holding benchmarks/training_benchmark")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--steps", type=int,
                    help="timed steps per run (default: 20 for gpt, 300 for cnn, about 2-4 s each)")
parser.add_argument("--models", default="gpt,cnn")
parser.add_argument("--threads", type=int, default=1, help="CPU threads for each framework")
parser.add_argument("--json", help="also write the results here")
args = parser.parse_args()

# The same thread count on both sides, BLAS included (PyTorch runs on OpenBLAS if present).
threads = str(args.threads)
env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
ours = Path(args.build) / "benchmarks" / "training_benchmark"
if not ours.exists():
    sys.exit(f"{ours} not found: build first (meson compile -C {args.build})")


def run(command):
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


rows = []
for model in args.models.split(","):
    minipipe, pytorch = [], []
    # A CNN step takes a few ms: time enough of them that a run is not over in a blink.
    steps = str(args.steps or {"gpt": 20, "cnn": 300}[model])
    for _ in range(args.repeats):
        minipipe.append(run([str(ours), "--model", model, "--steps", steps, "--threads", threads])["steps_per_second"])
        result = run(["/usr/bin/python3", str(here / "pytorch_training.py"), "--model", model, "--steps", steps,
                      "--threads", threads])
        pytorch.append(result["steps_per_second"])
    rows.append({"model": model, "threads": args.threads, "minipipe_steps_per_second": statistics.median(minipipe),
                 "pytorch_steps_per_second": statistics.median(pytorch), "pytorch": result["framework"],
                 "ratio": statistics.median(minipipe) / statistics.median(pytorch), "repeats": args.repeats,
                 "minipipe_runs": minipipe, "pytorch_runs": pytorch,
                 "pair_ratios": [m / p for m, p in zip(minipipe, pytorch)]})

print(f"{'model':<6} {'minipipe steps/s':>17} {'PyTorch steps/s':>16} {'ratio':>7} {'ratio per pair':>16}")
for r in rows:
    spread = f"{min(r['pair_ratios']):.2f}-{max(r['pair_ratios']):.2f}"
    print(f"{r['model']:<6} {r['minipipe_steps_per_second']:>17.3f} {r['pytorch_steps_per_second']:>16.3f} {r['ratio']:>7.2f} {spread:>16}")
print(f"(medians of {args.repeats} alternating runs, {args.threads} thread(s) each; {rows[0]['pytorch']})")
if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")

#!/usr/bin/python3
"""minipipe against PyTorch (Debian's python3-torch), with the same number of CPU threads,
training the same GPTs and CNN (PyTorch's are written independently, in
tests/reference/make_reference.py). Runs the two alternately, --repeats times per model and
thread count, and prints the median steps/s of each and their ratio (minipipe / PyTorch).

The peer runs at its full speed: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which some machines
set for old OpenBLAS builds and which force PyTorch's GEMM onto an older, slower kernel (on
the development machine, Haswell's: half the SGEMM rate of the SkylakeX kernel it picks by
itself), are removed from the peer's environment only; the table names the OpenBLAS kernel
the peer ran.

Each row also gives the step's GEMM-bound limit: the multiply-adds minipipe's GEMMs do in a
step (training_benchmark counts them; fused attention's are not among them) at the GFLOP/s
cpu_ops_benchmark measures for a 512^3 GEMM on the row's threads right after the row's runs,
and how close each framework's median comes to it.

    /usr/bin/python3 benchmarks/compare_training.py --build build [--repeats 5] [--threads 1,2]
        [--models gpt,gpt-512,gpt-768,cnn] [--json out.json] [--profile]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

here = Path(__file__).resolve().parent
# The GPT shapes: (dim, layers, heads, batch, context). "gpt" is `minipipe train gpt`'s default.
GPTS = {"gpt": (128, 4, 4, 16, 128), "gpt-512": (512, 4, 8, 16, 128), "gpt-768": (768, 4, 12, 8, 256)}
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--build", default="build", help="meson build folder holding benchmarks/training_benchmark")
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--steps", type=int,
                    help="timed steps per run (default: 20 for the default gpt, 5 for the larger ones, 300 for cnn)")
parser.add_argument("--models", default="gpt,cnn", help="comma-separated: " + ", ".join([*GPTS, "cnn"]))
parser.add_argument("--threads", default="1", help="CPU threads for each framework, a list like 1,2")
parser.add_argument("--json", help="also write the results here")
parser.add_argument("--profile", action="store_true",
                    help="then, per model and thread count, where the peer's step goes (torch.profiler, self CPU time per "
                         "op); minipipe's own table: `minipipe train gpt --profile` or `train cnn --profile` (default shapes)")
args = parser.parse_args()
for model in args.models.split(","):
    if model not in GPTS and model != "cnn":
        sys.exit(f"unknown model {model}: use " + ", ".join([*GPTS, "cnn"]))

ours = Path(args.build) / "benchmarks" / "training_benchmark"
ops = Path(args.build) / "benchmarks" / "cpu_ops_benchmark"
for program in (ours, ops):
    if not program.exists():
        sys.exit(f"{program} not found: build first (meson compile -C {args.build})")


def environment(threads, peer):
    # The same thread count on both sides, BLAS included (PyTorch runs on OpenBLAS if present).
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if peer:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run(command, threads, peer):
    out = subprocess.run(command, env=environment(threads, peer), check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def gemm_gflops(threads):
    """cpu_ops_benchmark's GFLOP/s for a 512^3 GEMM on `threads` kernel threads, measured now."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "gemm.json"
        subprocess.run([str(ops), "--filter", "matmul", "--threads", threads, "--json", str(out)],
                       env=environment(threads, peer=False), check=True, capture_output=True)
        measured = json.loads(out.read_text())
    return next(r["value"] for r in measured if r["op"] == "matmul" and r["size"] == "512x512x512")


def shape_arguments(model):
    if model not in GPTS:
        return ["--model", "cnn"]
    dim, layers, heads, batch, context = GPTS[model]
    return ["--model", "gpt", "--dim", str(dim), "--layers", str(layers), "--heads", str(heads), "--batch", str(batch),
            "--context", str(context)]


rows = []
for threads in args.threads.split(","):
    for model in args.models.split(","):
        minipipe, pytorch = [], []
        # A CNN step takes a few ms: time enough of them that a run is not over in a blink.
        steps = str(args.steps or {"gpt": 20, "cnn": 300}.get(model, 5))
        common = shape_arguments(model) + ["--steps", steps, "--threads", threads]
        for _ in range(args.repeats):
            ours_result = run([str(ours)] + common, threads, peer=False)
            minipipe.append(ours_result["steps_per_second"])
            result = run(["/usr/bin/python3", str(here / "pytorch_training.py")] + common, threads, peer=True)
            pytorch.append(result["steps_per_second"])
        multiply_adds = ours_result["gemm_multiply_adds_per_step"]
        gflops = gemm_gflops(threads)
        limit = gflops * 1e9 / (2 * multiply_adds)
        rows.append({"model": model, "threads": int(threads), "minipipe_steps_per_second": statistics.median(minipipe),
                     "pytorch_steps_per_second": statistics.median(pytorch), "pytorch": result["framework"],
                     "gemm_multiply_adds_per_step": multiply_adds, "gemm_gflops_512": gflops,
                     "gemm_bound_steps_per_second": limit,
                     "minipipe_of_limit": statistics.median(minipipe) / limit,
                     "pytorch_of_limit": statistics.median(pytorch) / limit,
                     "pytorch_blas_core": result.get("blas_core", "?"),
                     "ratio": statistics.median(minipipe) / statistics.median(pytorch), "repeats": args.repeats,
                     "minipipe_runs": minipipe, "pytorch_runs": pytorch,
                     "pair_ratios": [m / p for m, p in zip(minipipe, pytorch)]})

print(f"{'model':<8} {'threads':>7} {'minipipe steps/s':>17} {'PyTorch steps/s':>16} {'ratio':>7} {'ratio per pair':>16}"
      f" {'GEMM-bound steps/s':>19} {'minipipe, PyTorch of it':>24}")
for r in rows:
    spread = f"{min(r['pair_ratios']):.2f}-{max(r['pair_ratios']):.2f}"
    shares = f"{r['minipipe_of_limit']:.0%}, {r['pytorch_of_limit']:.0%}"
    print(f"{r['model']:<8} {r['threads']:>7} {r['minipipe_steps_per_second']:>17.3f} {r['pytorch_steps_per_second']:>16.3f} "
          f"{r['ratio']:>7.2f} {spread:>16} {r['gemm_bound_steps_per_second']:>19.3f} {shares:>24}")
print(f"(medians of {args.repeats} alternating runs; {rows[0]['pytorch']} on OpenBLAS kernel {rows[0]['pytorch_blas_core']}, "
      f"OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed for it only"
      + (f"; this shell sets OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']})" if "OPENBLAS_CORETYPE" in os.environ else ")"))
print("(GEMM-bound: the step's GEMM multiply-adds (" + ", ".join(
    f"{r['model']} {r['gemm_multiply_adds_per_step'] / 1e9:.2f} G" for r in rows if r["threads"] == rows[0]["threads"])
      + ") at cpu_ops_benchmark's 512^3 rate measured after each row's runs ("
      + ", ".join(f"{r['gemm_gflops_512']:.0f}" for r in rows) + " GFLOP/s))")
if args.profile:
    for r in rows:
        print(f"\nPyTorch's {r['model']} on {r['threads']} thread(s), by op:", flush=True)
        steps = str(args.steps or {"gpt": 5, "cnn": 50}.get(r["model"], 2))
        command = ["/usr/bin/python3", str(here / "pytorch_training.py")] + shape_arguments(r["model"]) + [
            "--steps", steps, "--threads", str(r["threads"]), "--profile"]
        out = subprocess.run(command, env=environment(str(r["threads"]), True), check=True, capture_output=True, text=True)
        print(out.stderr.rstrip())
        r["pytorch_profile"] = json.loads(out.stdout.strip().splitlines()[-1]).get("profile", [])
if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")

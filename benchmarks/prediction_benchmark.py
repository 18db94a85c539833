#!/usr/bin/python3
"""Predicted against measured timelines: the default GPT on 2 CPU stages with GPipe and 1F1B,
M = 4 and 8. Each run trains with `--trace`; `minipipe simulate --compare` then costs each
stage by its median measured forward and backward in that trace, simulates the schedule,
and reports the predicted step time and bubble beside the measured ones. Prints, per
configuration, the median over `--repeats` runs of each, and the median of the per-run
errors (predicted / measured - 1 for the step time, predicted - measured for the bubble).

    /usr/bin/python3 benchmarks/prediction_benchmark.py --build build [--repeats 3]
        [--steps 6] [--json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--build", default="build", help="meson build folder holding examples/minipipe/minipipe")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--steps", type=int, default=6, help="training steps per run (the last one is traced)")
parser.add_argument("--json", help="also write the results here")
args = parser.parse_args()

minipipe = (Path(args.build) / "examples" / "minipipe" / "minipipe").resolve()
if not minipipe.exists():
    sys.exit(f"no {minipipe}: build first (meson compile -C {args.build})")


def one_run(schedule, micro_batches, folder):
    trace = Path(folder) / "trace.json"
    subprocess.run([str(minipipe), "train", "gpt", "--steps", str(args.steps), "--eval-interval", str(args.steps),
                    "--sample-length", "0", "--stages", "2", "--micro-batches", str(micro_batches), "--schedule", schedule,
                    "--trace", str(trace)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    compared = subprocess.run([str(minipipe), "simulate", "--stages", "2", "--micro-batches", str(micro_batches), "--schedule",
                               schedule, "--compare", str(trace), "--json"], check=True, capture_output=True, text=True)
    return json.loads(compared.stdout)


rows = []
with tempfile.TemporaryDirectory() as folder:
    for schedule in ["gpipe", "1f1b"]:
        for micro_batches in [4, 8]:
            runs = []
            for repeat in range(args.repeats):
                runs.append(one_run(schedule, micro_batches, folder))
                r = runs[-1]
                print(f"  {schedule} M={micro_batches} run {repeat + 1}: step {r['measured_step_ms']:.1f} ms measured, "
                      f"{r['predicted_step_ms']:.1f} predicted; bubble {r['measured_bubble_fraction']:.3f} measured, "
                      f"{r['predicted_bubble_fraction']:.3f} predicted", file=sys.stderr)
            median = lambda key: statistics.median(r[key] for r in runs)
            rows.append({"schedule": schedule, "stages": 2, "micro_batches": micro_batches, "runs": args.repeats,
                         "measured_step_ms": median("measured_step_ms"), "predicted_step_ms": median("predicted_step_ms"),
                         "step_error": statistics.median(r["predicted_step_ms"] / r["measured_step_ms"] - 1 for r in runs),
                         "measured_bubble": median("measured_bubble_fraction"),
                         "predicted_bubble": median("predicted_bubble_fraction"),
                         "bubble_error": statistics.median(r["predicted_bubble_fraction"] - r["measured_bubble_fraction"]
                                                           for r in runs)})

print(f"default GPT, K = 2, the last of {args.steps} steps traced, median of {args.repeats} runs, {os.cpu_count()} cores")
print(f"{'schedule':<10}{'M':>3}{'step ms':>10}{'predicted':>11}{'error':>8}{'bubble':>9}{'predicted':>11}{'error':>8}")
for r in rows:
    print(f"{r['schedule']:<10}{r['micro_batches']:>3}{r['measured_step_ms']:>10.1f}{r['predicted_step_ms']:>11.1f}"
          f"{100 * r['step_error']:>7.1f}%{r['measured_bubble']:>9.3f}{r['predicted_bubble']:>11.3f}{r['bubble_error']:>+8.3f}")
if args.json:
    Path(args.json).write_text(json.dumps({"cores": os.cpu_count(), "steps": args.steps, "rows": rows}, indent=2) + "\n")

#!/usr/bin/python3
"""Stages in threads against stages in processes (mpirun): the default GPT at K = 2 with
GPipe and 1F1B, M = 4, each configuration trained by `minipipe train gpt --log-json`, once in
one process and once under `mpirun -np 2`, alternately, `--repeats` times. Prints the median
seconds per mini-batch of each and the overhead of processes (the MPI messages, and the
sharing of every stage's gradients so that each rank takes the whole optimizer step).

Where the stages outnumber the cores, both take turns on them and the ratio says little.

    /usr/bin/python3 benchmarks/multiprocess_benchmark.py --build build [--repeats 3]
        [--steps 20] [--json out.json]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--build", default="build", help="meson build folder holding examples/minipipe/minipipe")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--json", help="also write the results here")
args = parser.parse_args()

minipipe = Path(args.build) / "examples" / "minipipe" / "minipipe"
if not minipipe.exists():
    sys.exit(f"no {minipipe}: build first (meson compile -C {args.build})")
if not shutil.which("mpirun"):
    sys.exit("no mpirun: install openmpi-bin (scripts/install-deps.sh)")
environment = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def seconds_per_mini_batch(schedule, processes, folder):
    log = Path(folder) / "run.jsonl"
    command = [str(minipipe.resolve()), "train", "gpt", "--steps", str(args.steps), "--eval-interval", str(args.steps),
               "--sample-length", "0", "--stages", "2", "--micro-batches", "4", "--schedule", schedule, "--log-json", str(log)]
    if processes:
        command = ["mpirun", "-np", "2"] + command
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "summary":
            return event["pipeline"]["measured_seconds_per_mini_batch"]
    raise RuntimeError("no summary in " + str(log))


rows = []
with tempfile.TemporaryDirectory() as folder:
    for schedule in ["gpipe", "1f1b"]:
        threads, processes = [], []
        for repeat in range(args.repeats):
            threads.append(seconds_per_mini_batch(schedule, False, folder))
            processes.append(seconds_per_mini_batch(schedule, True, folder))
            print(f"  {schedule} run {repeat + 1}: threads {1e3 * threads[-1]:.1f} ms, processes {1e3 * processes[-1]:.1f} ms",
                  file=sys.stderr)
        ratios = [p / t for p, t in zip(processes, threads)]
        rows.append({"schedule": schedule, "stages": 2, "micro_batches": 4,
                     "threads_ms": 1e3 * statistics.median(threads), "processes_ms": 1e3 * statistics.median(processes),
                     "overhead": statistics.median(ratios) - 1.0, "runs": args.repeats})

print(f"default GPT, K = 2, M = 4, {args.steps} steps per run, median of {args.repeats} runs, {os.cpu_count()} cores")
print(f"{'schedule':<10}{'threads ms':>12}{'processes ms':>14}{'overhead':>10}")
for r in rows:
    print(f"{r['schedule']:<10}{r['threads_ms']:>12.1f}{r['processes_ms']:>14.1f}{100 * r['overhead']:>9.1f}%")
if args.json:
    Path(args.json).write_text(json.dumps({"cores": os.cpu_count(), "steps": args.steps, "rows": rows}, indent=2) + "\n")

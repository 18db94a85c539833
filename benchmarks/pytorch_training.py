#!/usr/bin/python3
"""Training steps per second of PyTorch on the CPU (one thread unless --threads), for the same models as
training_benchmark.cpp (their definitions are the ones the reference test checks minipipe
against, in tests/reference/make_reference.py). Prints one JSON object."""
import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
import make_reference as models  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--model", choices=["gpt", "cnn"], default="gpt")
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--warmup", type=int, default=3)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--dim", type=int, default=128, help="gpt: width")
parser.add_argument("--layers", type=int, default=4, help="gpt: Transformer blocks")
parser.add_argument("--heads", type=int, default=4, help="gpt: attention heads")
parser.add_argument("--batch", type=int, default=16, help="gpt: sequences per step")
parser.add_argument("--context", type=int, default=128, help="gpt: tokens per sequence")
parser.add_argument("--profile", action="store_true",
                    help="after the timed steps, run as many under torch.profiler and print the time per op kind "
                         "(self CPU time, forward and backward ops apart) to stderr and in the JSON, beside "
                         "`minipipe train --profile`'s table")
args = parser.parse_args()
torch.set_num_threads(args.threads)


def openblas_core():
    """The OpenBLAS kernel this process runs (OPENBLAS_CORETYPE can force an older one), or why unknown."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
        for path in sorted(paths):
            library = ctypes.CDLL(path)
            if hasattr(library, "openblas_get_corename"):
                library.openblas_get_corename.restype = ctypes.c_char_p
                return library.openblas_get_corename().decode()
        return "no OpenBLAS loaded"
    except OSError as e:
        return f"unknown ({e})"


if args.model == "gpt":
    config = dict(vocabulary=256, context=args.context, dim=args.dim, layers=args.layers, heads=args.heads, batch=args.batch)
    params = models.gpt_parameters(config)
    inputs = torch.randint(0, 256, (args.batch, args.context), dtype=torch.int32)
    targets = torch.randint(0, 256, (args.batch, args.context), dtype=torch.int32)
    loss_of = lambda: models.gpt_loss(params, inputs, targets, config)  # noqa: E731
else:
    config = dict(width=16, stages=2, classes=10, batch=64)
    params = models.cnn_parameters(config)
    inputs = torch.rand(64, 1, 8, 8)
    targets = torch.randint(0, 10, (64,), dtype=torch.int32)
    loss_of = lambda: models.cnn_loss(params, inputs, targets, config)  # noqa: E731

optimizer = torch.optim.AdamW(list(params.values()), lr=1e-3)


def step():
    loss = loss_of()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


for _ in range(args.warmup):
    step()
start = time.perf_counter()
for _ in range(args.steps):
    step()
seconds = time.perf_counter() - start
profile = []
if args.profile:
    # Not timed with the steps above: the profiler's own bookkeeping slows every op.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            step()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    print(f"{'op':<48} {'calls':>7} {'self ms':>10} {'share':>7}", file=sys.stderr)
    for e in events[:25]:
        print(f"{e.key[:48]:<48} {e.count:>7} {e.self_cpu_time_total / 1e3:>10.1f} {e.self_cpu_time_total / total:>7.1%}",
              file=sys.stderr)
    print(f"(torch.profiler, {args.steps} steps: self CPU time per op, the 25 largest of {len(events)}; "
          "ops named *Backward* run in the backward pass)", file=sys.stderr)
    profile = [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3} for e in events]
print(json.dumps({"framework": "pytorch " + torch.__version__, "model": args.model, "steps": args.steps,
                  "steps_per_second": args.steps / seconds, "blas_core": openblas_core(),
                  "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
                  **({"profile": profile} if args.profile else {})}))

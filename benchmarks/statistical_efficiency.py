#!/usr/bin/python3
"""Statistical efficiency, as in PipeDream's evaluation (section 5): how many steps, and how
much time, each schedule needs to reach a target. Trains the default GPT (to a validation
loss) and the CNN (to a test accuracy) with gpipe, 1f1b, pipedream + stash, pipedream +
vertical-sync and pipedream + 2bw at K = 2 and 4 stages, plus one stage for reference, through
`minipipe train --log-json`, and prints steps and seconds to the target for each; the curves
go to an SVG plot. Every run sees the same mini-batches in the same order (same seed).

Steps to target say what asynchrony costs in convergence, whatever the machine; seconds say
what it buys, and mean little where stages outnumber cores.

    /usr/bin/python3 benchmarks/statistical_efficiency.py --build build [--models gpt,cnn]
        [--stages 2,4] [--json out.json] [--svg curves.svg]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--build", default="build", help="meson build folder holding examples/minipipe/minipipe")
parser.add_argument("--models", default="gpt,cnn")
parser.add_argument("--stages", default="2,4", help="stage counts to compare with one stage")
parser.add_argument("--gpt-steps", type=int, default=200)
parser.add_argument("--gpt-target", type=float, default=2.6, help="validation loss (nats/byte) to reach")
parser.add_argument("--cnn-steps", type=int, default=220)
parser.add_argument("--cnn-target", type=float, default=0.95, help="test accuracy to reach")
parser.add_argument("--json", help="also write the rows here")
parser.add_argument("--svg", help="write the evaluation curves here")
args = parser.parse_args()

minipipe = Path(args.build) / "examples" / "minipipe" / "minipipe"
if not minipipe.exists():
    sys.exit(f"{minipipe} not found: build first (meson compile -C {args.build})")

MODELS = {
    # the metric the target applies to, whether lower is better, and the flags of each run
    "gpt": ("validation_loss", True, ["--steps", str(args.gpt_steps), "--eval-interval", "25", "--sample-length", "0"]),
    "cnn": ("accuracy", False, ["--steps", str(args.cnn_steps), "--eval-interval", "10"]),
}
TARGETS = {"gpt": args.gpt_target, "cnn": args.cnn_target}


def configurations(stages):
    """(label, flags) of each schedule at K stages; micro-batches per mini-batch: K for the
    flushing schedules and 2bw (which needs m >= K), 1 for PipeDream's per-mini-batch updates."""
    k = ["--stages", str(stages)]
    m = ["--micro-batches", str(stages)]
    return [
        (f"gpipe K={stages}", k + m + ["--schedule", "gpipe"]),
        (f"1f1b K={stages}", k + m + ["--schedule", "1f1b"]),
        (f"pipedream stash K={stages}", k + ["--schedule", "pipedream", "--weights", "stash"]),
        (f"pipedream vertical-sync K={stages}", k + ["--schedule", "pipedream", "--weights", "vertical-sync"]),
        (f"pipedream 2bw K={stages}", k + m + ["--schedule", "pipedream", "--weights", "2bw"]),
    ]


def run(model, flags, log):
    command = [str(minipipe), "train", model, *MODELS[model][2], *flags, "--log-json", log]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [json.loads(line) for line in open(log)]
    steps = {e["step"]: e for e in events if e["event"] == "step"}
    unit = "tokens_per_second" if model == "gpt" else "samples_per_second"
    per_step = 16 * 128 if model == "gpt" else 64  # the default batch
    curve = []  # (step, metric, seconds since the start)
    for e in events:
        if e["event"] == "eval":
            rate = steps[e["step"]][unit]
            curve.append((e["step"], e[MODELS[model][0]], e["step"] * per_step / rate))
    return curve


def reached(model, curve):
    metric, lower, _ = MODELS[model]
    for step, value, seconds in curve:
        if (value <= TARGETS[model]) if lower else (value >= TARGETS[model]):
            return step, seconds
    return None, None


def svg(results):
    """One panel per model: the evaluation metric against steps, a line per configuration."""
    colours = ["#000000", "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
               "#9c755f", "#bab0ac"]
    panels = []
    for p, (model, runs) in enumerate(results.items()):
        x0, y0, w, h = 60 + p * 560, 40, 460, 300
        values = [v for curve in runs.values() for _, v, _ in curve]
        steps = [s for curve in runs.values() for s, _, _ in curve]
        lo, hi, last = min(values), max(values), max(steps)
        # A run that diverges early would squash the rest: the axis spans the one-stage run's
        # range, widened a little, and points beyond it sit on the edge.
        reference = [v for _, v, _ in runs["one stage"]]
        if MODELS[model][1]:
            hi = min(hi, max(reference) * 1.1)
        else:
            lo = max(lo, min(reference) * 0.9)
        clamp = lambda v: min(max(v, lo), hi)
        sx = lambda s: x0 + w * s / last
        sy = lambda v: y0 + h - h * (clamp(v) - lo) / ((hi - lo) or 1)
        parts = [f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
                 f'<text x="{x0}" y="{y0 - 10}">{model}: {MODELS[model][0]} against steps (target {TARGETS[model]})</text>',
                 f'<line x1="{x0}" x2="{x0 + w}" y1="{sy(TARGETS[model]):.1f}" y2="{sy(TARGETS[model]):.1f}" '
                 'stroke="#999" stroke-dasharray="4"/>',
                 f'<text x="{x0}" y="{y0 + h + 15}">0</text><text x="{x0 + w - 30}" y="{y0 + h + 15}">{last}</text>',
                 f'<text x="{x0 - 50}" y="{y0 + 10}">{hi:.2f}</text><text x="{x0 - 50}" y="{y0 + h}">{lo:.2f}</text>']
        for i, (label, curve) in enumerate(runs.items()):
            colour = colours[i % len(colours)]
            points = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v, _ in curve)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            parts.append(f'<text x="{x0 + w + 5 if p == len(results) - 1 else x0 + 5}" '
                         f'y="{y0 + h + 30 + 14 * i}" fill="{colour}">{label}</text>')
        panels.append("\n".join(parts))
    height = 40 + 300 + 40 + 14 * (1 + 5 * len(args.stages.split(",")))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{60 + 560 * len(results)}" height="{height}" '
            f'font-family="monospace" font-size="11">\n' + "\n".join(panels) + "\n</svg>\n")


rows, results = [], {}
with tempfile.TemporaryDirectory() as work:
    for model in args.models.split(","):
        results[model] = {}
        configs = [("one stage", [])]
        for k in args.stages.split(","):
            configs += configurations(int(k))
        for label, flags in configs:
            curve = run(model, flags, os.path.join(work, "log.jsonl"))
            results[model][label] = curve
            step, seconds = reached(model, curve)
            rows.append({"model": model, "configuration": label, "target": TARGETS[model], "steps_to_target": step,
                         "seconds_to_target": seconds, "final": curve[-1][1],
                         "curve": [[step, value] for step, value, _ in curve]})
            print(f"measured {model} {label}", file=sys.stderr, flush=True)

print(f"{'model':<6} {'configuration':<30} {'target':>8} {'steps':>7} {'seconds':>9} {'final':>8}")
for r in rows:
    steps = r["steps_to_target"] if r["steps_to_target"] is not None else "-"
    seconds = f"{r['seconds_to_target']:.1f}" if r["seconds_to_target"] is not None else "-"
    print(f"{r['model']:<6} {r['configuration']:<30} {r['target']:>8} {steps:>7} {seconds:>9} {r['final']:>8.3f}")
print(f"(steps and seconds until the first evaluation at or past the target; '-': not reached; "
      f"{os.cpu_count()} cores)")
if args.json:
    Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
if args.svg:
    Path(args.svg).write_text(svg(results))

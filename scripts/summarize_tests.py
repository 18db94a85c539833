#!/usr/bin/env python3
"""Counts test cases from a meson build's logs and prints 'N passed, N failed, N skipped'.

GoogleTest suites contribute one count per case (from meson's JUnit file); other tests,
and a suite that crashed before writing its report, count as one case each.

With --times, first prints each build's budget: its setup, compile and test wall time
(scripts/test.sh records the phases in meson-logs/phase-seconds.txt) and its ten slowest
tests, which is what decides what runs where (.ci/run).
"""
import json
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def summarize(build_dir: Path) -> tuple[int, int, int]:
    logs = build_dir / "meson-logs"
    cases = {}  # meson test name -> [passed, failed, skipped]
    junit = logs / "testlog.junit.xml"
    if junit.exists():
        for suite in ElementTree.parse(junit).getroot().iter("testsuite"):
            parts = suite.get("name", "").split(".")
            test_name = parts[1] if len(parts) > 2 else suite.get("name", "")
            counts = cases.setdefault(test_name, [0, 0, 0])
            for case in suite.iter("testcase"):
                if case.find("failure") is not None or case.find("error") is not None:
                    counts[1] += 1
                elif case.find("skipped") is not None or case.get("status") == "notrun":
                    counts[2] += 1
                    reason = (case.find("skipped").get("message", "") if case.find("skipped") is not None else "")
                    print(f"skipped {case.get('classname')}.{case.get('name')}: {reason.splitlines()[-1] if reason else ''}")
                else:
                    counts[0] += 1
    passed = failed = skipped = 0
    for line in (logs / "testlog.json").read_text().splitlines():
        result = json.loads(line)
        name, outcome = result["name"], result["result"]
        counts = cases.get(name)
        ok = outcome in ("OK", "EXPECTEDFAIL")
        if counts and sum(counts):
            passed, failed, skipped = passed + counts[0], failed + counts[1], skipped + counts[2]
            if not ok and counts[1] == 0:
                failed += 1  # the suite failed (crash, timeout) without a failing case
        elif outcome == "SKIP":
            skipped += 1
        elif ok:
            passed += 1
        else:
            failed += 1
    return passed, failed, skipped


def print_times(build_dir: Path, slowest: int = 10) -> None:
    """The build's phases and its slowest tests, in seconds."""
    logs = build_dir / "meson-logs"
    results = [json.loads(line) for line in (logs / "testlog.json").read_text().splitlines()]
    phases = logs / "phase-seconds.txt"  # lines "phase seconds", written by scripts/test.sh
    spans = [(r["starttime"], r["starttime"] + r["duration"]) for r in results if "starttime" in r]
    parts = phases.read_text().split() if phases.exists() else []
    recorded = dict(zip(parts[0::2], (float(x) for x in parts[1::2])))
    if spans and "test" not in recorded:
        recorded["test"] = max(end for _, end in spans) - min(start for start, _ in spans)
    budget = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in recorded.items())
    print(f"{build_dir}: {budget}, total {sum(recorded.values()):.0f} s; slowest tests:")
    for r in sorted(results, key=lambda r: -r["duration"])[:slowest]:
        print(f"  {r['duration']:7.1f} s  {r['name']} ({r['result']})")


if __name__ == "__main__":
    total = [0, 0, 0]
    directories = [a for a in sys.argv[1:] if a != "--times"]
    if "--times" in sys.argv[1:]:
        for directory in directories:
            print_times(Path(directory))
    for directory in directories:
        for i, n in enumerate(summarize(Path(directory))):
            total[i] += n
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    sys.exit(1 if total[1] else 0)

#!/usr/bin/env python3
"""Counts test cases from a meson build's logs and prints 'N passed, N failed, N skipped'.

GoogleTest suites contribute one count per case (from meson's JUnit file); other tests,
and a suite that crashed before writing its report, count as one case each.
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


if __name__ == "__main__":
    total = [0, 0, 0]
    for directory in sys.argv[1:]:
        for i, n in enumerate(summarize(Path(directory))):
            total[i] += n
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    sys.exit(1 if total[1] else 0)

#!/usr/bin/env python3
"""Prints the ninja targets that the tests named on standard input need, for a meson build.

Reads the lines of `meson test --list` ("project:suites / name"), so that scripts/test.sh
can build exactly what a suite selection runs (as `meson test` itself would before running)
and time the build apart from the tests:

    meson test -C build --suite unit --list | python3 scripts/test_targets.py build
"""
import json
import os
import subprocess
import sys


def introspect(build_dir: str, what: str):
    return json.loads(subprocess.run(["meson", "introspect", build_dir, what], check=True,
                                     capture_output=True, text=True).stdout)


def main() -> int:
    build_dir = sys.argv[1]
    wanted = {line.rsplit(" / ", 1)[1].strip() for line in sys.stdin if " / " in line}
    target_files = {t["id"]: t["filename"] for t in introspect(build_dir, "--targets")}
    needed = set()
    for test in introspect(build_dir, "--tests"):
        if test["name"] in wanted:
            for target_id in test["depends"]:
                needed.update(os.path.relpath(f, os.path.abspath(build_dir)) for f in target_files[target_id])
    print(" ".join(sorted(needed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

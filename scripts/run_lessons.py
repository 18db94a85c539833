#!/usr/bin/env python3
"""Runs the commands of the course's lessons (docs/course/*.md) as a student would.

A lesson's runnable block is a ```sh block whose first line is
    # lesson command (writes: FILE FILE ...)
It runs with bash (-e -o pipefail) in a fresh folder with the given minipipe first on PATH,
must finish within --timeout seconds and must write every FILE named. The course test
(tests/meson.build) runs every lesson this way; --pictures DIR copies the SVG files the
lessons write into DIR, which is how docs/course/img is made.

A number a lesson quotes from a command's output carries its source right after it, in an
HTML comment that a rendered page hides:
    the bubble is 0.273<!-- from: minipipe simulate --stages 4 --micro-batches 8 --schedule 1f1b | bubble fraction +([0-9.]+) | 0.0005 -->
that is, the command, a regular expression whose first group is the number in its output,
and how far the two may differ. In a table's cell, where | separates cells even inside a
comment, ";;" separates the three instead (and neither command nor expression may hold a |). Every such number is checked against what the command
prints now, so a lesson whose text disagrees with its program fails:

    python3 scripts/run_lessons.py --minipipe build/examples/minipipe/minipipe --pictures docs/course/img

Every link a lesson makes to another page of the repository (its reading list names the
docs sections it builds on) must reach an existing file and, after a #, one of its headings.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HEADER = re.compile(r"^# lesson command \(writes: ([^)]*)\)$")
QUOTED = re.compile(r"([-+]?[0-9]*\.?[0-9]+)(?:</?[a-z]+>|\*|`)*<!-- from: (.+?) (?:\||;;) (.+?) (?:\||;;) ([0-9.e+-]+) -->")


def quoted_numbers(path: Path):
    """(number as written, command, pattern, tolerance) for each marked number of one lesson."""
    return [(m.group(1), m.group(2), m.group(3), float(m.group(4))) for m in QUOTED.finditer(path.read_text())]


def check_numbers(lesson: Path, env, timeout: float, outputs: dict) -> list:
    """The problems with a lesson's quoted numbers: each against its command's output now, and
    every source comment that follows no number (a unit between them hides it from the check)."""
    text = lesson.read_text()
    attached = {m.start(2) for m in QUOTED.finditer(text)}
    problems = [f"{lesson.name}: a source comment follows no number (write the unit after the comment): "
                f"{text[m.start():m.start() + 60]}..." for m in re.finditer(r"<!-- from: ", text)
                if m.start() + len("<!-- from: ") not in attached]
    for written, command, pattern, tolerance in quoted_numbers(lesson):
        if command not in outputs:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=folder, env=env,
                                         capture_output=True, text=True, timeout=timeout)
                    outputs[command] = run.stdout + run.stderr if run.returncode == 0 else None
                except subprocess.TimeoutExpired:
                    outputs[command] = None
        output = outputs[command]
        found = re.search(pattern, output) if output is not None else None
        if output is None:
            problems.append(f"{lesson.name}: quotes {written} from `{command}`, which failed")
        elif not found:
            problems.append(f"{lesson.name}: quotes {written} from `{command}`, whose output has no /{pattern}/")
        elif abs(float(found.group(1)) - float(written)) > tolerance:
            problems.append(f"{lesson.name}: quotes {written} from `{command}`, which prints {found.group(1)} now "
                            f"(tolerance {tolerance})")
    return problems


LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def check_links(lesson: Path) -> list:
    """The problems with a lesson's links to files of the repository: a missing file or heading."""
    problems = []
    for target in LINK.findall(lesson.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        page = (lesson.parent / path).resolve() if path else lesson
        if not page.is_file():
            problems.append(f"{lesson.name}: links to {target}, but there is no {path}")
        elif anchor and page.suffix == ".md":
            anchors = {heading_anchor(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}
            if anchor not in anchors:
                problems.append(f"{lesson.name}: links to {target}, but {path or lesson.name} has no such heading")
    return problems


def lesson_blocks(path: Path):
    """(files, script) for each runnable block of one lesson, in order."""
    blocks, inside, lines = [], False, []
    for line in path.read_text().splitlines():
        if not inside and line.strip() == "```sh":
            inside, lines = True, []
        elif inside and line.strip() == "```":
            inside = False
            script = textwrap.dedent("\n".join(lines))  # a block inside a list item is indented
            header = HEADER.match(script.splitlines()[0]) if lines else None
            if header:
                blocks.append((header.group(1).split(), script))
        elif inside:
            lines.append(line)
    return blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minipipe", required=True, help="the minipipe executable")
    parser.add_argument("--lessons", default=str(Path(__file__).resolve().parent.parent / "docs" / "course"))
    parser.add_argument("--timeout", type=float, default=60, help="seconds each block may take")
    parser.add_argument("--pictures", help="copy the SVG files the lessons write here")
    args = parser.parse_args()
    minipipe = Path(args.minipipe).resolve()
    env = dict(os.environ, PATH=f"{minipipe.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # Lesson 8 runs mpirun: CI runs as root, and on 2 cores with as many ranks as cores.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    failures = count = numbers = 0
    outputs = {}  # command -> output, for numbers quoted from one command
    for lesson in sorted(Path(args.lessons).glob("[0-9][0-9]-*.md")):
        for problem in check_numbers(lesson, env, args.timeout, outputs) + check_links(lesson):
            failures += 1
            print(f"FAIL: {problem}")
        numbers += len(quoted_numbers(lesson))
        for files, script in lesson_blocks(lesson):
            count += 1
            with tempfile.TemporaryDirectory() as folder:
                start = time.monotonic()
                try:
                    run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=env,
                                         capture_output=True, text=True, timeout=args.timeout)
                    status, output = run.returncode, run.stdout + run.stderr
                except subprocess.TimeoutExpired as e:
                    status, output = "timeout", f"{e.stdout or ''}{e.stderr or ''}"
                seconds = time.monotonic() - start
                missing = [f for f in files if not (Path(folder) / f).is_file() or (Path(folder) / f).stat().st_size == 0]
                if status != 0 or missing:
                    failures += 1
                    print(f"FAIL: {lesson.name}: status {status} after {seconds:.1f} s, missing {missing}\n{output[-3000:]}")
                    continue
                print(f"ok: {lesson.name}: {len(script.splitlines()) - 1} lines in {seconds:.1f} s, wrote {' '.join(files)}")
                if args.pictures:
                    for f in files:
                        if f.endswith(".svg") or f.endswith(".png"):
                            shutil.copy(Path(folder) / f, Path(args.pictures) / f)
    if count == 0 and numbers == 0:
        print(f"FAIL: no lesson commands or quoted numbers under {args.lessons}")
        return 1
    print(f"{count} lesson blocks and {numbers} quoted numbers checked, {failures} failures (each block within "
          f"{args.timeout:.0f} s, writing its files; each number within its tolerance of its command's output now)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

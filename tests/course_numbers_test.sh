#!/usr/bin/env bash
# The course's quoted numbers cannot drift: a lesson that quotes a number its command no longer
# prints fails scripts/run_lessons.py, naming the number, the command and what it prints now;
# the same lesson with the right number passes. A link to a heading the page lacks fails too.
#   tests/course_numbers_test.sh MINIPIPE RUN_LESSONS
set -uo pipefail
minipipe=$(realpath "$1")
run_lessons=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command="minipipe simulate --stages 4 --micro-batches 8 --schedule 1f1b"
lesson() {  # a one-line lesson quoting $1 as 1F1B's bubble
  echo "1F1B's bubble is $1<!-- from: $command | bubble fraction +([0-9.]+) | 0.0005 -->." > "$work/01-numbers.md"
}
lesson 0.300
if python3 "$run_lessons" --minipipe "$minipipe" --lessons "$work" > "$work/wrong.out" 2>&1; then
  cat "$work/wrong.out"; echo "FAIL: a wrong quoted number (0.300) passed"; exit 1
fi
grep -q "quotes 0.300 from \`$command\`, which prints 0.2727 now" "$work/wrong.out" ||
  { cat "$work/wrong.out"; echo "FAIL: the failure does not name the number and what the command prints"; exit 1; }
echo "ok: a wrong quoted number fails: $(grep -o 'quotes 0.300.*' "$work/wrong.out")"
lesson 0.273
python3 "$run_lessons" --minipipe "$minipipe" --lessons "$work" > "$work/right.out" 2>&1 ||
  { cat "$work/right.out"; echo "FAIL: the right quoted number (0.273) failed"; exit 1; }
echo "ok: the right quoted number passes"
echo "Reading: [GPipe](01-numbers.md#no-such-heading)." >> "$work/01-numbers.md"
if python3 "$run_lessons" --minipipe "$minipipe" --lessons "$work" > "$work/link.out" 2>&1 ||
  ! grep -q "links to 01-numbers.md#no-such-heading, but 01-numbers.md has no such heading" "$work/link.out"; then
  cat "$work/link.out"; echo "FAIL: a link to a missing heading passed, or its failure does not name it"; exit 1
fi
echo "ok: a link to a missing heading fails"
# A source comment after a unit is attached to no number: it fails instead of going unchecked.
echo "1F1B's bubble is 0.273 of the step<!-- from: $command | bubble fraction +([0-9.]+) | 0.0005 -->." > "$work/01-numbers.md"
if python3 "$run_lessons" --minipipe "$minipipe" --lessons "$work" > "$work/unattached.out" 2>&1 ||
  ! grep -q "a source comment follows no number" "$work/unattached.out"; then
  cat "$work/unattached.out"; echo "FAIL: a source comment after a unit passed unchecked"; exit 1
fi
echo "ok: a source comment that follows no number fails"

#!/usr/bin/env bash
# `minipipe report`: the page of a 2-stage 1F1B run opens in headless Chromium (Debian's
# chromium-headless-shell) without a console message, a screenshot is taken, the page fetches
# nothing, and its timeline has one row per stage. Skips (77) without the browser.
#   report_test.sh MINIPIPE [SCREENSHOT_COPY]
set -uo pipefail
minipipe=$(realpath "$1")
browser=$(command -v chromium-headless-shell || command -v chromium || true)
[ -n "$browser" ] || { echo "skipped: no chromium-headless-shell (scripts/install-deps.sh installs it)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$minipipe" train gpt --layers 2 --dim 32 --context 32 --batch-size 8 --steps 12 --eval-interval 4 --sample-length 0 \
  --stages 2 --micro-batches 4 --schedule 1f1b --log-json run.jsonl --trace run.json > train.out 2>&1 ||
  { cat train.out; echo "FAIL: training"; exit 1; }
"$minipipe" report run.jsonl run.json -o report.html > report.out 2>&1 || { cat report.out; fail "report failed"; }

# The capstone's score: the run's peaks against a budget (the peaks come from its summary).
python3 - run.jsonl "$minipipe" <<'PY' || fail "the score does not follow the budget"
import json, subprocess, sys
log, minipipe = sys.argv[1:]
summary = [json.loads(line) for line in open(log) if '"summary"' in line][-1]
peak = max(summary["pipeline"]["peak_bytes_per_stage"]) / 2**20
def score(budget):
    run = subprocess.run([minipipe, "report", log, "--memory-budget-mib", str(budget), "-o", "scored.html"],
                         capture_output=True, text=True, check=True)
    return run.stdout.splitlines()[0]
within, over = score(round(peak * 1.5, 2)), score(round(peak * 0.5, 2))
assert within.startswith("score ") and "tokens/s" in within and not within.startswith("score 0:"), within
assert float(within.split()[1]) > 0, within
assert over.startswith("score 0: stage ") and "over the" in over, over
assert 'id="score"' in open("scored.html").read()
print("ok:", within, "/", over)
PY
# Self-contained: no script, nothing to fetch.
if grep -qiE '<script|src=|href=|url\(' report.html; then fail "the page loads something"; fi
# One timeline row per stage.
python3 - report.html <<'PY' || fail "the timeline does not have one row per stage"
import re, sys
page = open(sys.argv[1]).read()
timeline = page[page.index('<div id="timeline">'):]
timeline = timeline[:timeline.index("</div>")]
rows = re.findall(r'<text x="4" y="\d+">(stage \d+)</text>', timeline)
sys.exit(0 if rows == ["stage 0", "stage 1"] else 1)
PY
# Opened in the browser: a screenshot, and no console message (errors, warnings or logs).
# Only the browser's own CONSOLE lines are the page's; the rest of its log is about the machine.
HOME=$work timeout 120 "$browser" --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1500 \
  --enable-logging=stderr --v=0 --screenshot="$work/report.png" "file://$work/report.html" > browser.log 2>&1 ||
  { tail -20 browser.log; fail "the browser failed"; }
if grep -q "CONSOLE" browser.log; then grep CONSOLE browser.log; fail "the page wrote to the console"; fi
size=$(stat -c %s report.png 2>/dev/null || echo 0)
[ "$size" -gt 20000 ] || fail "the screenshot is missing or blank ($size bytes)"
[ "$failures" -eq 0 ] && echo "ok: the report opened in $(basename "$browser"), no console message, screenshot $size bytes"
# The DOM as the browser built it still has both rows (the page is not broken HTML).
HOME=$work timeout 120 "$browser" --no-sandbox --disable-gpu --dump-dom "file://$work/report.html" 2> /dev/null > dom.html
[ "$(grep -oE '>stage [01]</text>' dom.html | sort -u | wc -l)" -eq 2 ] || fail "the browser's DOM lacks the stage rows"
[ -n "${2:-}" ] && cp report.png "$2"

[ "$failures" -eq 0 ] || { echo "$failures failures"; exit 1; }
echo "report: all checks passed"

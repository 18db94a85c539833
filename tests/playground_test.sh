#!/usr/bin/env bash
# The course's playground (docs/course/playground.html) in headless Chromium: for several
# settings the page moves its controls as a student would, and the bubble it then shows is
# the one `minipipe simulate --json` prints for the same command line (which the page writes
# out); settings that do not combine show the command's own error. Where em++ is installed the
# page is first rebuilt from these sources (scripts/build-playground.sh) and both it and the
# committed page are checked; without em++ only the committed one (said so). Skips (77)
# without the browser.
#   playground_test.sh MINIPIPE SOURCE_ROOT
set -uo pipefail
minipipe=$(realpath "$1")
root=$(realpath "$2")
browser=$(command -v chromium-headless-shell || command -v chromium || true)
[ -n "$browser" ] || { echo "skipped: no chromium-headless-shell (scripts/install-deps.sh installs it)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

pages=("$root/docs/course/playground.html")
if bash "$root/scripts/build-playground.sh" "$work/rebuilt.html" > "$work/build.log" 2>&1; then
  pages+=("$work/rebuilt.html")
else
  [ $? -eq 77 ] || { tail -20 "$work/build.log"; fail "the playground did not build"; }
  echo "note: $(tail -1 "$work/build.log"); checking the committed page only"
fi

# Each case: the controls to set (as the page's #selftest= takes them).
cases=("schedule=gpipe&stages=4&micro_batches=12"
       "schedule=zb-h1&stages=3&micro_batches=6&weight_backward=1.5&message=0.2"
       "schedule=interleaved&stages=2&micro_batches=4&virtual_stages=3&forward=2"
       "schedule=1f1b&stages=4&micro_batches=3&token_slices=3&input_backward=2"
       "schedule=interleaved&stages=4&micro_batches=6&virtual_stages=2")
for page in "${pages[@]}"; do
  for settings in "${cases[@]}"; do
    HOME=$work timeout 120 "$browser" --no-sandbox --disable-gpu --virtual-time-budget=20000 --dump-dom \
      "file://$page#selftest=$settings" 2> /dev/null > "$work/dom.html"
    python3 - "$work/dom.html" "$minipipe" "$(basename "$page"): $settings" <<'PY' || fail "$(basename "$page"): $settings"
import html, json, re, shlex, subprocess, sys
dom, minipipe, label = sys.argv[1:]  # label: the page and its settings
found = re.search(r'<pre id="selftest">([^<]*)</pre>', open(dom).read())
if not found or not found.group(1):
    sys.exit("the page wrote no result (did its WebAssembly load?)")
page = json.loads(html.unescape(found.group(1)))
command = shlex.split(page["command"])
assert command[0] == "minipipe", page["command"]
run = subprocess.run([minipipe] + command[1:] + ["--json"], capture_output=True, text=True)
if page["error"] is not None:  # the page shows what the command says
    if run.returncode == 0 or page["error"] not in run.stderr:
        sys.exit(f"the page's error {page['error']!r} is not the command's {run.stderr.strip()!r}")
    print(f"ok: {label}: the command's error")
    sys.exit(0)
if run.returncode != 0:
    sys.exit(f"{page['command']} failed: {run.stderr.strip()}")
expected = json.loads(run.stdout)["bubble_fraction"]
if abs(page["after"] - expected) > 1e-5:
    sys.exit(f"bubble {page['after']} on the page, {expected} from {page['command']}")
if abs(page["after"] - page["before"]) < 1e-9:
    sys.exit(f"moving the controls left the bubble at {page['before']}")
print(f"ok: {label}: bubble {page['before']:.4f} -> {page['after']:.4f}, as the command prints")
PY
  done
done
# A picture of the page, not blank.
HOME=$work timeout 120 "$browser" --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1400 \
  --virtual-time-budget=20000 --screenshot="$work/playground.png" "file://${pages[0]}" > /dev/null 2>&1
size=$(stat -c %s "$work/playground.png" 2>/dev/null || echo 0)
[ "$size" -gt 20000 ] || fail "the screenshot is missing or blank ($size bytes)"
[ "$failures" -eq 0 ] && echo "ok: the playground agrees with minipipe simulate"
exit $((failures > 0))

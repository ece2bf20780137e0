#!/usr/bin/env bash
# Checks a SharpLens HTML report in headless Chromium (Debian package `chromium`):
#   - the file references no http(s) URL;
#   - after the page's scripts ran: no script error, plotly drew a .main-svg inside every figure;
#   - every attention view was filled in (a grid with one cell per token pair, plus head buttons).
# Usage: scripts/check-report.sh report.html     Exit 0 = OK; messages on stderr say what failed.
set -euo pipefail
report=$(realpath "${1:?usage: check-report.sh report.html}")
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[[ -n "$chromium" ]] || { echo "check-report: chromium not found (apt-get install -y chromium)" >&2; exit 2; }

fail() { echo "check-report: $*" >&2; exit 1; }
count() { { grep -oE -- "$1" || true; } | wc -l; } # occurrences of a pattern on stdin (0 is not an error)

if grep -qiE 'https?://' "$report"; then
  grep -oiE '.{0,40}https?://.{0,40}' "$report" | head -3 >&2
  fail "the report contains an http(s) URL"
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --virtual-time-budget lets scripts and plotly's rendering finish before the DOM is dumped.
dom=$(timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
  --virtual-time-budget=5000 --dump-dom "file://$report" 2>/dev/null) || fail "chromium failed on $report"

if grep -q 'class="sl-error"' <<<"$dom"; then
  grep -o 'class="sl-error">[^<]*' <<<"$dom" >&2
  fail "a script failed on the page"
fi

# Each figure div must hold its own plotly svg (another figure's svgs must not make up for a blank one).
figures=$(count 'class="sl-figure"' <"$report")
blank=$({ grep -oE 'id="sl-fig-[0-9]+"|class="main-svg"' <<<"$dom" || true; } |
  awk '/sl-fig/ { if (id && !n) print id; id = $0; n = 0; next } { n++ } END { if (id && !n) print id }')
[[ -z "$blank" ]] || fail "plotly drew nothing in: $blank"
drawn=$(count 'id="sl-fig-[0-9]+"' <<<"$dom")
(( drawn == figures )) || fail "$figures figures in the file but $drawn in the page"
svgs=$(count 'class="main-svg"' <<<"$dom")

views=$(count 'class="sl-attention"' <"$report")
grids=$(count 'class="sl-grid"' <<<"$dom")
(( grids == views )) || fail "$views attention views but $grids were filled in"
if (( views > 0 )); then
  grep -qE '<td [^>]*title="[^"]*weight [0-9]' <<<"$dom" || fail "attention grid cells lack their hover text"
  grep -q 'class="sl-heads"><button' <<<"$dom" || fail "attention views have no head buttons"
fi
echo "check-report: OK ($figures figures, $svgs plotly svgs, $views attention views)"

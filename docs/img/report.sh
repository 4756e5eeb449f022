#!/usr/bin/env bash
# Regenerate docs/img/report.png: the report of the examples/ pipeline after
# a few refreshes and two releases, rendered in headless Chromium.
#
#   docs/img/report.sh [path/to/artifactctl]   (default: target/release/artifactctl)
#
# The pipeline is a copy of examples/ plus one step, `checkpoints`, that
# copies the model with the best sharpe_ratio to checkpoints/best.joblib, so
# `promote --to validated` finds the `best` checkpoint it picks by default.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(realpath "${1:-$repo/target/release/artifactctl}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$repo/examples" "$work/examples"
cd "$work/examples"
rm -rf artifacts
cat >> artifactctl.toml <<'TOML'

[[refresh.steps]]
name = "checkpoints"
group = "models"
needs = ["MLBondAdjuster", "RegimeDetector", "TailRiskAnalyzer"]
run = "sh scripts/best.sh"
deps = ["scripts/best.sh"]
TOML
cat > scripts/best.sh <<'SH'
#!/bin/sh
# Copy the model with the best sharpe_ratio to best.joblib.
set -eu
best=""; best_score=""
for m in MLBondAdjuster RegimeDetector TailRiskAnalyzer; do
    var="ARTIFACTCTL_NEED_$(echo "$m" | tr a-z A-Z)_DIR"
    dir=$(eval echo "\$$var")
    score=$(sed 's/.*"sharpe_ratio": \([0-9.]*\).*/\1/' "$dir/metrics.json")
    if [ -z "$best" ] || [ "$(echo "$score $best_score" | awk '{print ($1 > $2)}')" = 1 ]; then
        best="$dir"; best_score="$score"
    fi
done
cp "$best/model.joblib" "$ARTIFACTCTL_STEP_DIR/best.joblib"
SH
export ARTIFACTCTL_NOW
step() { ARTIFACTCTL_NOW="$1" "$bin" "${@:2}" >/dev/null 2>&1; }
step 2026-11-16T09:00:00Z refresh
step 2026-11-17T09:00:00Z refresh --param seq_length=45
step 2026-11-18T09:00:00Z promote latest --to validated
step 2026-11-18T10:00:00Z promote validated/latest --to production --version 1.0.0 --approve
step 2026-11-19T09:00:00Z refresh --param seq_length=60
step 2026-11-20T09:00:00Z refresh --param seq_length=20
step 2026-11-21T09:00:00Z refresh --param seq_length=75
step 2026-11-21T12:00:00Z promote latest --to validated
step 2026-11-21T13:00:00Z promote validated/latest --to production --version 1.1.0 --approve
step 2026-11-22T09:00:00Z refresh --param seq_length=50
ARTIFACTCTL_NOW=2026-11-23T09:00:00Z "$bin" --store artifacts report \
    --metric MLBondAdjuster.sharpe_ratio --metric RegimeDetector.sharpe_ratio \
    --metric TailRiskAnalyzer.sharpe_ratio --metric MLBondAdjuster.accuracy \
    -o "$work/report.html" >/dev/null 2>&1
# Relative store path in the title, not this script's temporary folder.
sed -i "s#$work/examples/##g" "$work/report.html"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
    --user-data-dir="$work/profile" --window-size=1200,1720 \
    --screenshot="$repo/docs/img/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote $repo/docs/img/report.png"

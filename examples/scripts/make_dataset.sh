#!/bin/sh
# Usage: make_dataset.sh training|evaluation
# Splits data/bonds.csv (every fourth bond is kept for evaluation) into
# $ARTIFACTCTL_STEP_DIR/dataset.csv, and saves the scaler fitted on the split
# next to it, so later phases reuse the same split and scaler (seed 001).
# With `artifactctl refresh --dataset FILE`, the training set is FILE instead.
set -eu
kind="$1"
out="$ARTIFACTCTL_STEP_DIR"
if [ "$kind" = training ] && [ -n "${ARTIFACTCTL_DATASET:-}" ]; then
    echo "training set: $ARTIFACTCTL_DATASET (from --dataset)"
    cp "$ARTIFACTCTL_DATASET" "$out/dataset.csv"
else
    if [ "$kind" = training ]; then keep='(NR - 2) % 4 != 3'; else keep='(NR - 2) % 4 == 3'; fi
    awk -F, "NR == 1 || $keep" data/bonds.csv > "$out/dataset.csv"
fi
rows=$(($(wc -l < "$out/dataset.csv") - 1))
echo "$kind set: $rows bonds"
awk -F, 'NR > 1 { n++; s += $3; q += $3 * $3 }
    END { m = s / n; printf "{\"mean\": %.6f, \"std\": %.6f}\n", m, sqrt(q / n - m * m) }' \
    "$out/dataset.csv" > "$out/scaler.json"

#!/bin/sh
# Usage: train.sh MODEL
# "Trains" MODEL on the training set and scores it on the evaluation set,
# both read from the steps this one needs. Writes a stand-in model file and
# metrics.json, which artifactctl merges into the run's metrics as
# MODEL.sharpe_ratio, MODEL.accuracy, ...
set -eu
model="$1"
train="$ARTIFACTCTL_NEED_TRAINING_DATA_DIR/dataset.csv"
scaler="$ARTIFACTCTL_NEED_TRAINING_DATA_DIR/scaler.json"
eval="$ARTIFACTCTL_NEED_EVALUATION_DATA_DIR/dataset.csv"
seq_length="${ARTIFACTCTL_PARAM_SEQ_LENGTH:-30}"
echo "training $model on $(($(wc -l < "$train") - 1)) bonds, seq_length=$seq_length"
{ echo "$model $seq_length"; cat "$scaler" "$train"; } | cksum > "$ARTIFACTCTL_STEP_DIR/model.joblib"
awk -F, -v model="$model" -v seq="$seq_length" '
    NR > 1 { n++; s += $3; if ($4 > 5) long++ }
    END {
        for (i = 1; i <= length(model); i++) k += index("abcdefghijklmnopqrstuvwxyz", tolower(substr(model, i, 1)))
        k = k / 10
        printf "{\"sharpe_ratio\": %.4f, \"accuracy\": %.4f, \"evaluated\": %d}\n",
            s / n / k * 3 + seq / 100, 0.5 + long / n / 4 + k / 100, n
    }' "$eval" > "$ARTIFACTCTL_STEP_DIR/metrics.json"
echo "$model: $(cat "$ARTIFACTCTL_STEP_DIR/metrics.json")"

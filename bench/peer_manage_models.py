#!/usr/bin/env python3
"""The peer for `artifactctl list`: what seed 003's `manage_models.py list`
does. Read every version's metadata file and sum its files' sizes, then print
id, creation time, model count, size and best Sharpe ratio."""
import json
import os
import sys

MODEL_EXTS = (".pt", ".pth", ".pkl", ".joblib", ".h5", ".hdf5", ".onnx", ".zip", ".pb", ".safetensors")


def main(root):
    rows = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
            continue
        meta = {}
        for name in ("metadata.json", "training_metadata.json"):
            path = os.path.join(entry.path, name)
            if os.path.exists(path):
                try:
                    with open(path) as f:
                        meta = json.load(f)
                except ValueError:
                    meta = {}
                break
        size = 0
        models = 0
        for dirpath, _dirs, files in os.walk(entry.path):
            for f in files:
                size += os.path.getsize(os.path.join(dirpath, f))
                if f.endswith(MODEL_EXTS):
                    models += 1
        metrics = meta.get("metrics") or {}
        rows.append((entry.name, meta.get("created_at", ""), models, size, metrics.get("sharpe_ratio")))
    rows.sort(key=lambda r: r[1], reverse=True)
    out = sys.stdout
    for r in rows:
        out.write(f"{r[0]}  {r[1]}  {r[2]}  {r[3]}  {r[4]}\n")


if __name__ == "__main__":
    main(sys.argv[1])

#!/usr/bin/env python3
"""Benchmark `artifactctl register --all` against `cp -r` of the same store.

Builds a legacy store in seed 003's shape (`backend/models/` of timestamped
versions, five model files and a training_metadata.json each; 300 versions
of 4 MiB per model by default), then times, side by side in the same run:
  - artifactctl register --all STORE into a fresh artifactctl store
  - cp -r STORE COPY
(each on fresh targets, removed untimed between repetitions) and prints the
medians and their ratio. Target (issue 12): register --all <= 0.2 x cp -r.

Python 3 standard library only. Usage:
  python3 bench/register_all.py --bin target/release/artifactctl [--versions 300] [--size-kib 4096] [--reps 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 0.2
MODELS = ["lstm_model.h5", "transformer_model.h5", "random_forest_model.pkl",
          "xgboost_model.pkl", "scalers.pkl"]


def rmtree(path):
    """Remove a tree whose files and folders may be read-only."""
    def fix(func, p, _):
        os.chmod(os.path.dirname(p), 0o755)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o755)
        func(p)
    shutil.rmtree(path, onerror=fix)


def make_store(store, versions, size):
    chunk = os.urandom(size)
    for i in range(versions):
        vid = "20250724_%02d%02d%02d" % (10 + i // 3600, (i // 60) % 60, i % 60)
        d = os.path.join(store, vid)
        os.makedirs(d)
        for name in MODELS:
            with open(os.path.join(d, name), "wb") as f:
                f.write(chunk)
        with open(os.path.join(d, "training_metadata.json"), "w") as f:
            json.dump({"timestamp": vid, "models": ["lstm", "transformer"],
                       "metrics": {"sharpe_ratio": 1.0 + i / 1000}}, f)
    os.symlink(vid, os.path.join(store, "latest"))


def timed(cmd, **kw):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return (time.perf_counter() - start) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--versions", type=int, default=300)
    ap.add_argument("--size-kib", type=int, default=4096, help="bytes per model file (KiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", default="target", help="where the fixture goes (same filesystem for both tools)")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    os.makedirs(args.workdir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="bench-register-all-", dir=args.workdir)
    try:
        legacy = os.path.join(root, "backend", "models")
        make_store(legacy, args.versions, args.size_kib << 10)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTCTL_")}
        env["NO_COLOR"] = "1"
        ours, peer = [], []
        for i in range(args.reps + 1):  # the first round is the warm-up
            copy = os.path.join(root, "copy")
            t_cp = timed(["cp", "-r", legacy, copy])
            rmtree(copy)
            project = os.path.join(root, "project")
            os.makedirs(project)
            t_ours = timed([binary, "--root", project, "--no-progress", "--quiet",
                            "register", "--all", legacy], env=env)
            rmtree(project)
            if i > 0:
                peer.append(t_cp)
                ours.append(t_ours)
        a, b = statistics.median(ours), statistics.median(peer)
        print(f"register-all-{args.versions}x{len(MODELS)}x{args.size_kib}KiB: artifactctl {a:.1f} ms, "
              f"peer {b:.1f} ms, ratio {a / b:.3f} (target <= {TARGET})  [peer: cp -r; median of {args.reps}]")
        return 0 if a / b <= TARGET else 1
    finally:
        rmtree(root)


if __name__ == "__main__":
    sys.exit(main())

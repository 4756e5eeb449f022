#!/usr/bin/env python3
"""Benchmark `artifactctl promote` against `cp -r` on the same filesystem.

Builds a raw run in seed 004's shape with one large checkpoint (1 GiB by
default), registers it, then times, side by side in the same run:
  - artifactctl promote RUN --to validated --checkpoint best (a new id each time)
  - cp -r RUN_FOLDER COPY (the copy is removed between repetitions, untimed)
after one warm-up of each, and prints the medians and their ratio.
Target (issue 5): promote <= 0.1 x cp -r.

Python 3 standard library only. Usage:
  python3 bench/promote.py --bin target/release/artifactctl [--size-mib 1024] [--reps 5]
"""

import argparse
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 0.1


def rmtree(path):
    """Remove a tree that promote made read-only."""
    def fix(func, p, _):
        os.chmod(os.path.dirname(p), 0o755)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o755)
        func(p)
    shutil.rmtree(path, onerror=fix)


def write_file(path, size, chunk=os.urandom(1 << 20)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def make_run(dirpath, checkpoint_bytes):
    """A training output folder as seed 004 shows raw/ (no metadata)."""
    write_file(os.path.join(dirpath, "checkpoints", "best.pt"), checkpoint_bytes)
    write_file(os.path.join(dirpath, "checkpoints", "epoch_10.pt"), 4096)
    with open(os.path.join(dirpath, "config.yaml"), "w") as f:
        f.write("lr: 0.001\nepochs: 103\n")
    os.makedirs(os.path.join(dirpath, "metrics"))
    with open(os.path.join(dirpath, "metrics", "training_metrics.json"), "w") as f:
        f.write('{"best_val_loss": 0.38, "coverage": 0.99}\n')
    with open(os.path.join(dirpath, "training.log"), "w") as f:
        f.write("epoch 1 loss 0.9\n" * 1000)


def timed(cmd, **kw):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return (time.perf_counter() - start) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--size-mib", type=int, default=1024, help="checkpoint size (default 1024 = 1 GiB)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workdir", default="target", help="where the fixture goes (same filesystem for both tools)")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    os.makedirs(args.workdir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="bench-promote-", dir=args.workdir)
    try:
        out = os.path.join(root, "out")
        make_run(out, args.size_mib << 20)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTCTL_")}
        env["NO_COLOR"] = "1"
        run = lambda *a: [binary, "--root", root, "--no-progress", "--quiet", *a]
        ref = subprocess.run(run("register", out, "--move", "--namespace", "bench", "--id", "run"),
                             check=True, capture_output=True, text=True, env=env).stdout.strip()
        raw_dir = os.path.join(root, "artifacts", "raw", "bench", "run")

        promote_ms, cp_ms = [], []
        for i in range(args.reps + 1):  # the first round is the warm-up
            copy = os.path.join(root, "copy")
            t_cp = timed(["cp", "-r", raw_dir, copy])
            rmtree(copy)
            t_promote = timed(run("promote", ref, "--to", "validated", "--checkpoint", "best",
                                  "--id", f"run_best_{i}"), env=env)
            if i > 0:
                cp_ms.append(t_cp)
                promote_ms.append(t_promote)
        a, b = statistics.median(promote_ms), statistics.median(cp_ms)
        print(f"promote-{args.size_mib}MiB: artifactctl {a:.1f} ms, peer {b:.1f} ms, "
              f"ratio {a / b:.3f} (target <= {TARGET})  [peer: cp -r; median of {args.reps}]")
        return 0 if a / b <= TARGET else 1
    finally:
        rmtree(root)


if __name__ == "__main__":
    sys.exit(main())

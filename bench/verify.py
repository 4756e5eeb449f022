#!/usr/bin/env python3
"""Benchmark `artifactctl verify` hashing against sha256sum (and b3sum).

Registers a run of several large files (1 GiB in 8 files by default), then
times, warm (page cache filled by a warm-up round), side by side:
  - artifactctl verify RUN (re-hashes every file with BLAKE3, in parallel)
  - sha256sum FILES... (and b3sum FILES... when installed)
and prints the medians, artifactctl's throughput (target: >= 1 GB/s warm on
2 cores, issue 5) and the ratio to each peer.

Python 3 standard library only. Usage:
  python3 bench/verify.py --bin target/release/artifactctl [--size-mib 1024] [--files 8] [--reps 5]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_GBPS = 1.0


def timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - start) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workdir", default="target")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    os.makedirs(args.workdir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="bench-verify-", dir=args.workdir)
    try:
        out = os.path.join(root, "out")
        os.makedirs(os.path.join(out, "checkpoints"))
        per_file = (args.size_mib << 20) // args.files
        for i in range(args.files):
            with open(os.path.join(out, "checkpoints", f"epoch_{i}.pt"), "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(per_file >> 20):
                    f.write(block)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTCTL_")}
        base = [binary, "--root", root, "--no-progress", "--quiet"]
        ref = subprocess.run(base + ["register", out, "--move", "--id", "run"], check=True,
                             capture_output=True, text=True, env=env).stdout.strip()
        run_dir = os.path.join(root, "artifacts", "raw", "run")
        files = sorted(os.path.join(run_dir, "checkpoints", n) for n in os.listdir(os.path.join(run_dir, "checkpoints")))
        total = sum(os.path.getsize(f) for f in files)

        tools = {"artifactctl": base + ["verify", ref], "sha256sum": ["sha256sum", *files]}
        if shutil.which("b3sum"):
            tools["b3sum"] = ["b3sum", *files]
        times = {name: [] for name in tools}
        for i in range(args.reps + 1):  # the first round warms the page cache
            for name, cmd in tools.items():
                t = timed(cmd, env=env)
                if i > 0:
                    times[name].append(t)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        ours = med["artifactctl"]
        gbps = total / (ours / 1000.0) / 1e9
        print(f"verify-throughput: artifactctl {ours:.1f} ms for {total / 1e9:.2f} GB, "
              f"{gbps:.2f} GB/s (target >= {TARGET_GBPS} GB/s)  [{os.cpu_count()} cpus, median of {args.reps}]")
        for peer in [n for n in tools if n != "artifactctl"]:
            print(f"verify-vs-{peer}: artifactctl {ours:.1f} ms, peer {med[peer]:.1f} ms, "
                  f"ratio {ours / med[peer]:.3f} (target <= 1.0)")
        if not shutil.which("b3sum"):
            print("verify-vs-b3sum: skipped, b3sum is not installed")
        return 0 if gbps >= TARGET_GBPS else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

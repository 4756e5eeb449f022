#!/usr/bin/env python3
"""Benchmark `artifactctl cleanup` against the issue's targets (issue 6).

Two figures, each measured side by side with its peer in the same run
(one warm-up, then the median of --reps repetitions):

- plan_10k: `cleanup --dry-run --keep 5 --json` over a native store of
  --plan-runs runs (default 10,000) in 20 namespaces. Target: at most 150 ms.
  Peer: the seed 003 way (`manage_models.py cleanup --keep 5`, dry): a Python
  loop that reads every metadata.json, sorts by time and picks what goes.
- delete: `cleanup --keep 5 --yes` removing --delete-runs runs versus
  `rm -rf` of the same run folders in an identical copy. Target: a ratio of
  at most 1.0 ("deletion throughput matches"). The fixture is seed 003's
  timestamped layout from ../shared/bench/mkfixture.py when that exists,
  else native runs made here.

Usage: bench/cleanup.py --bin target/release/artifactctl [--reps 4]
Python 3 standard library only.
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
from datetime import datetime, timedelta, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKFIXTURE = os.path.join(REPO, "..", "shared", "bench", "mkfixture.py")
PLAN_TARGET_MS = 150.0
DELETE_TARGET_RATIO = 1.0

PEER_PLAN = r"""
import json, os, sys
store, keep = sys.argv[1], int(sys.argv[2])
by_ns = {}
for ns in sorted(os.listdir(store)):
    d = os.path.join(store, ns)
    for run in os.listdir(d):
        with open(os.path.join(d, run, "metadata.json")) as f:
            meta = json.load(f)
        by_ns.setdefault(ns, []).append((meta["created_at"], run, meta["total_size"]))
plan = []
for ns, runs in by_ns.items():
    runs.sort(reverse=True)
    for i, (t, run, size) in enumerate(runs):
        plan.append({"ref": ns + "/" + run, "action": "keep" if i < keep else "remove", "size_bytes": size})
json.dump({"runs": plan}, sys.stdout)
"""


def native_store(store, runs, namespaces, files_per_run, file_bytes):
    """artifactctl's own layout, metadata.json in schema version 1."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    payload = b"\0" * file_bytes
    for i in range(runs):
        ns = "ns%02d" % (i % namespaces)
        created = start + timedelta(minutes=i)
        run_id = created.strftime("%Y%m%d_%H%M%S")
        run = os.path.join(store, "raw", ns, run_id)
        os.makedirs(run)
        files = []
        for k in range(files_per_run):
            name = "part_%03d.pt" % k
            with open(os.path.join(run, name), "wb") as f:
                f.write(payload)
            files.append({"path": name, "size": file_bytes, "blake3": "0" * 64})
        meta = {
            "schema_version": 1,
            "id": run_id,
            "namespace": ns,
            "stage": "raw",
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "status": "complete",
            "config": {},
            "params": {"seq_length": 30},
            "metrics": {"sharpe_ratio": 1.0 + i % 7 / 10},
            "tags": [],
            "files": files,
            "total_size": file_bytes * files_per_run,
            "file_count": files_per_run,
            "lineage": {"source": "bench", "parent": None, "promoted_from": None},
            "producer": {"command": ["bench"], "version": "0.1.0", "hostname": None, "git_commit": None},
        }
        with open(os.path.join(run, "metadata.json"), "w") as f:
            json.dump(meta, f, indent=2)


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


def report(name, ours, peer, target):
    ratio = ours / peer if peer else float("inf")
    print("%s: artifactctl %.1f ms, peer %.1f ms, ratio %.2f (target %s)" % (name, ours, peer, ratio, target))
    sys.stdout.flush()


def bench_plan(binary, work, runs, reps):
    store = os.path.join(work, "plan-store")
    native_store(store, runs, namespaces=20, files_per_run=2, file_bytes=16)
    ours_cmd = [binary, "--store", store, "--no-progress", "cleanup", "--dry-run", "--keep", "5", "--json"]
    peer_cmd = [sys.executable, "-c", PEER_PLAN, os.path.join(store, "raw"), "5"]
    timed(ours_cmd)
    timed(peer_cmd)
    ours = statistics.median(timed(ours_cmd) for _ in range(reps))
    peer = statistics.median(timed(peer_cmd) for _ in range(reps))
    report("plan_%d_runs" % runs, ours, peer, "artifactctl <= %.0f ms" % PLAN_TARGET_MS)
    # Left in place, the 10k-run tree slowed the deletion figures that follow
    # (rm -rf most of all) by an order of magnitude on ext4.
    shutil.rmtree(store)
    subprocess.run(["sync"], check=True)
    return ours <= PLAN_TARGET_MS


def delete_fixture(path, runs):
    """Returns the folder holding the runs (the store)."""
    if os.path.exists(MKFIXTURE):
        subprocess.run(
            [sys.executable, MKFIXTURE, "legacy-versions", path, "--runs", str(runs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return path
    native_store(path, runs, namespaces=1, files_per_run=6, file_bytes=4096)
    return os.path.join(path, "raw", "ns00")


def doomed_runs(store, keep):
    """The run folders `--keep keep` removes: all but the newest `keep` by id."""
    names = sorted(
        n for n in os.listdir(store)
        if not n.startswith(".") and n != "latest" and os.path.isdir(os.path.join(store, n))
    )
    return [os.path.join(store, n) for n in names[:-keep]]


def bench_delete(binary, work, runs, reps):
    ours_times, peer_times = [], []
    for rep in range(reps + 1):
        ours_dir = os.path.join(work, "del-ours-%d" % rep)
        peer_dir = os.path.join(work, "del-peer-%d" % rep)
        ours_store = delete_fixture(ours_dir, runs)
        peer_store = delete_fixture(peer_dir, runs)
        doomed = doomed_runs(peer_store, 5)
        ours_cmd = [binary, "--store", ours_dir, "--no-progress", "cleanup", "--keep", "5", "--yes"]
        peer_cmd = ["rm", "-rf", "--"] + doomed
        # Whoever goes second pays for the first one's deferred writeback, so
        # sync before each and alternate who goes first.
        order = [("ours", ours_cmd), ("peer", peer_cmd)]
        if rep % 2:
            order.reverse()
        took = {}
        for who, cmd in order:
            subprocess.run(["sync"], check=True)
            took[who] = timed(cmd)
        ours, peer = took["ours"], took["peer"]
        left = [n for n in os.listdir(ours_store) if not n.startswith(".") and n != "latest"]
        if len(left) != min(5, runs):
            sys.exit("cleanup left %d runs in %s, expected 5" % (len(left), ours_store))
        if rep > 0:  # the first round is the warm-up
            ours_times.append(ours)
            peer_times.append(peer)
        shutil.rmtree(ours_dir)
        shutil.rmtree(peer_dir)
    ours, peer = statistics.median(ours_times), statistics.median(peer_times)
    report("delete_%d_runs" % (runs - 5), ours, peer, "ratio <= %.1f, vs rm -rf" % DELETE_TARGET_RATIO)
    return ours / peer <= DELETE_TARGET_RATIO


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(REPO, "target", "release", "artifactctl"))
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--plan-runs", type=int, default=10_000)
    parser.add_argument("--delete-runs", type=int, default=300)
    parser.add_argument("--keep-fixtures", action="store_true", help="do not remove the work folder")
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit("no artifactctl at %s: run `cargo build --release` first" % binary)
    work = tempfile.mkdtemp(prefix="bench-cleanup-")
    try:
        ok = bench_plan(binary, work, args.plan_runs, args.reps)
        ok &= bench_delete(binary, work, args.delete_runs, args.reps)
    finally:
        if args.keep_fixtures:
            print("fixtures kept in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

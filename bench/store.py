#!/usr/bin/env python3
"""Foundation benchmarks (issue 2): `list` over 10,000 native runs against the
manage_models.py-style peer, `show` and `path` at 100 and 10,000 runs, and
`--version`. Prints each figure with its ratio, measured side by side."""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report, time_cmd, workdir  # noqa: E402

FILES = ["checkpoints/best.pt", "checkpoints/latest.pt", "model.pkl", "config.json", "training.log"]


def make_store(root, runs):
    """A native store of `runs` runs in schema v1, each with five small files."""
    raw = os.path.join(root, "raw")
    os.makedirs(raw)
    for i in range(runs):
        day, rest = divmod(i, 86400)
        hh, rem = divmod(rest, 3600)
        mm, ss = divmod(rem, 60)
        run_id = f"2026{1 + day // 28:02d}{1 + day % 28:02d}_{hh:02d}{mm:02d}{ss:02d}"
        d = os.path.join(raw, run_id)
        os.makedirs(os.path.join(d, "checkpoints"))
        files = []
        for j, rel in enumerate(FILES):
            data = (f"{i}:{j}:" * (8 + j)).encode()
            with open(os.path.join(d, rel), "wb") as f:
                f.write(data)
            files.append({"path": rel, "size": len(data), "blake3": hashlib.sha256(data).hexdigest()})
        files.sort(key=lambda f: f["path"])
        meta = {
            "schema_version": 1, "id": run_id, "namespace": "", "stage": "raw",
            "created_at": f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z",
            "status": "complete", "config": {"lr": 0.01, "layers": [64, 64]},
            "params": {"seq_length": 30, "batch_size": 100},
            "metrics": {"sharpe_ratio": (i % 100) / 40.0, "accuracy": 0.6, "max_drawdown": -0.2},
            "tags": ["bench"], "files": files, "total_size": sum(f["size"] for f in files),
            "file_count": len(files), "lineage": {"source": "bench", "parent": None, "promoted_from": None},
            "producer": {"command": ["bench"], "version": "0.1.0", "hostname": "bench", "git_commit": None},
        }
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump(meta, f, indent=2)
        last = run_id
    os.symlink(last, os.path.join(raw, "latest"))
    return last


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--runs", type=int, default=10000)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    here = os.path.dirname(os.path.abspath(__file__))
    peer = [sys.executable, os.path.join(here, "peer_manage_models.py")]
    ok = True
    work = workdir("store")
    try:
        stores = {}
        for n in (100, args.runs):
            path = os.path.join(work, f"store{n}")
            print(f"building a native store of {n} runs ...", file=sys.stderr, flush=True)
            stores[n] = (path, make_store(path, n))
        big, _ = stores[args.runs]
        ours = time_cmd([binary, "--store", big, "list", "--json"])
        theirs = time_cmd(peer + [os.path.join(big, "raw")])
        ok &= report(f"list, {args.runs} runs (warm)", ours, theirs, "peer manage_models.py list", "ms<=100")
        ours_table = time_cmd([binary, "--store", big, "list"])
        report(f"list table, {args.runs} runs (warm)", ours_table, theirs, "peer manage_models.py list")
        for n, (path, last) in sorted(stores.items()):
            for what in (["show", last], ["show", "latest"], ["path", last], ["path", "latest"]):
                t = time_cmd([binary, "--store", path] + what, reps=15)
                ok &= report(f"{' '.join(what[:1])} {what[1] if what[1] == 'latest' else '<id>'}, {n} runs", t, target="ms<=5")
        baseline = time_cmd(["/bin/true"], reps=25)
        version = time_cmd([binary, "--version"], reps=25)
        ok &= report("--version", version, baseline, "/bin/true (process start)", "ms<=3")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`make bench`: run every benchmark under bench/ against a release binary and
print their figures. Each figure is a ratio against the peer its issue names,
measured side by side in the same run."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (script, extra arguments): each prints its own figures.
BENCHES = [
    ("store.py", []),
    ("index.py", []),
    ("promote.py", []),
    ("register_all.py", []),
    ("verify.py", []),
    ("refresh.py", []),
    ("cleanup.py", []),
    ("clear.py", []),
    ("remote.py", []),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--only", help="run just this script (e.g. store.py)")
    args = ap.parse_args()
    failed = []
    for script, extra in BENCHES:
        if args.only and script != args.only:
            continue
        print(f"== bench/{script}", flush=True)
        rc = subprocess.call([sys.executable, os.path.join(HERE, script), "--bin", args.bin] + extra)
        if rc != 0:
            failed.append(script)
    if failed:
        print(f"targets missed or errors in: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the benchmarks: timing side by side, fixtures, output."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKFIXTURE = os.path.join(REPO, "..", "shared", "bench", "mkfixture.py")


def have_mkfixture():
    return os.path.isfile(MKFIXTURE)


def time_cmd(argv, reps=7, warmup=2, cwd=None, env=None, setup=None):
    """Median wall time in seconds of running argv (stdout discarded).
    `setup`, if given, runs before every repetition and is not timed."""
    samples = []
    for i in range(warmup + reps):
        if setup:
            setup()
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode not in (0,):
            sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.decode(errors='replace')}")
        if i >= warmup:
            samples.append(elapsed)
    return statistics.median(samples)


def report(name, ours, peer=None, peer_name="peer", target=None, unit="ms"):
    """Print one figure: artifactctl's time, the peer's, the ratio and the target."""
    scale = 1000.0 if unit == "ms" else 1.0
    line = f"{name}: artifactctl {ours * scale:.2f} {unit}"
    ok = True
    if peer is not None:
        ratio = ours / peer if peer > 0 else float("inf")
        line += f", {peer_name} {peer * scale:.2f} {unit}, ratio {ratio:.3f}"
        if target is not None and target.startswith("ratio<="):
            ok = ratio <= float(target.split("<=")[1])
    if target is not None and target.startswith("ms<="):
        ok = ours * 1000.0 <= float(target.split("<=")[1])
    if target:
        line += f" (target {target}: {'met' if ok else 'MISSED'})"
    print(line, flush=True)
    return ok


def workdir(name):
    base = os.path.join(REPO, "bench", ".work")
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=name + ".", dir=base)

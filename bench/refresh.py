#!/usr/bin/env python3
"""Benchmark `artifactctl refresh` against the shell it replaces and against
`dvc repro` (issues 4 and 11).

    python3 bench/refresh.py --bin target/release/artifactctl [--dataset-mib 1024]

Figures, each a median of several repetitions after a warm-up, the two
commands run alternately:

- step overhead: 50 steps of `true` run by `artifactctl refresh --force`,
  against the same 50 commands (`sh -c true`) run from one shell script.
  Target: (artifactctl - shell) / 50 <= 3 ms per step.
- up-to-date refresh: 50 unchanged steps (each with a dependency file and
  an output), `artifactctl refresh` (which then writes nothing) against
  `dvc repro`'s no-op on the same stages. dvc is installed into
  bench/.work/venv-dvc; the figure is skipped with a message when it cannot
  be. Target: <= 0.03x.
- dataset reuse: a refresh whose only step produced a 1 GiB dataset and is
  unchanged, published anyway (`--publish-unchanged`, so its outputs are
  brought into a new run by hard link), against `cp -r` of that dataset.
  Target: <= 0.1x the copy.

The project tree comes from ../shared/bench/mkfixture.py when it exists
(relative to the repository root), else from a small generator here.
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

STEPS = 50
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKFIXTURE = os.path.join(REPO, "..", "shared", "bench", "mkfixture.py")


def make_project(root):
    """A project tree to run in: the shared fixture, or a minimal one."""
    if os.path.exists(MKFIXTURE):
        subprocess.run(
            [sys.executable, MKFIXTURE, "project", root, "--scale", "1"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    else:
        os.makedirs(os.path.join(root, "scripts"), exist_ok=True)
        with open(os.path.join(root, "README.md"), "w") as f:
            f.write("bench project\n")


def write_config(root, steps_toml):
    with open(os.path.join(root, "artifactctl.toml"), "w") as f:
        f.write('[store]\ndir = "bench-artifacts"\n\n' + steps_toml)


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


def side_by_side(ours, peer, reps, warmup=1):
    """Medians of `ours` and `peer`, run alternately so that a change in the
    machine's load (it is shared) hits both alike."""
    for _ in range(warmup):
        ours()
        peer()
    a, b = [], []
    for _ in range(reps):
        a.append(ours())
        b.append(peer())
    return statistics.median(a), statistics.median(b)


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTCTL_")}
    env["NO_COLOR"] = "1"
    return env


def bench_overhead(bin_path, work, reps):
    root = os.path.join(work, "overhead")
    make_project(root)
    steps = "".join(f'[[refresh.steps]]\nname = "s{i:02d}"\nrun = "true"\n\n' for i in range(STEPS))
    write_config(root, steps)
    script = os.path.join(work, "fifty.sh")
    with open(script, "w") as f:
        f.write("".join("sh -c true\n" for _ in range(STEPS)))
    env = clean_env()
    ours, peer = side_by_side(
        lambda: timed([bin_path, "-q", "refresh", "--force"], root, env),
        lambda: timed(["sh", script], root, env),
        reps,
    )
    per_step = (ours - peer) / STEPS
    print(
        f"step overhead ({STEPS} steps of true): artifactctl {ours:.1f} ms, "
        f"peer {peer:.1f} ms (one shell), ratio {ours / peer:.2f}; "
        f"per step (artifactctl - shell) / {STEPS} = {per_step:.2f} ms (target <= 3 ms)"
    )
    return per_step <= 3.0


def dvc_venv(work):
    """A virtual environment with dvc, made once under bench/.work; None with
    a message when it cannot be made (no network, no venv module)."""
    venv = os.path.join(REPO, "bench", ".work", "venv-dvc")
    dvc = os.path.join(venv, "bin", "dvc")
    if os.path.exists(dvc):
        return dvc
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [os.path.join(venv, "bin", "pip"), "install", "--quiet", "dvc"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"up-to-date refresh vs dvc repro: skipped, dvc could not be installed ({e})")
        return None
    return dvc


def bench_noop(bin_path, work, reps):
    dvc = dvc_venv(work)
    if dvc is None:
        return True
    root = os.path.join(work, "noop")
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "out"))
    steps, stages = [], []
    for i in range(STEPS):
        with open(os.path.join(root, "data", f"s{i:02d}.txt"), "w") as f:
            f.write(f"input {i}\n" * 100)
        steps.append(
            f'[[refresh.steps]]\nname = "s{i:02d}"\n'
            f'run = "cat data/s{i:02d}.txt > $ARTIFACTCTL_STEP_DIR/out.txt"\n'
            f'deps = ["data/s{i:02d}.txt"]\n'
        )
        stages.append(
            f"  s{i:02d}:\n    cmd: cat data/s{i:02d}.txt > out/s{i:02d}.txt\n"
            f"    deps:\n      - data/s{i:02d}.txt\n    outs:\n      - out/s{i:02d}.txt\n"
        )
    write_config(root, "\n".join(steps))
    with open(os.path.join(root, "dvc.yaml"), "w") as f:
        f.write("stages:\n" + "".join(stages))
    env = clean_env()
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=root, check=True, env=env)
    subprocess.run([dvc, "repro", "-q"], cwd=root, check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([bin_path, "-q", "refresh"], cwd=root, check=True, env=env)
    check = subprocess.run([bin_path, "refresh", "--json"], cwd=root, env=env, check=True, capture_output=True)
    status = json.loads(check.stdout)["status"]
    if status != "up_to_date":
        print(f"warning: the second refresh was {status}, not up to date", file=sys.stderr)
    ours, peer = side_by_side(
        lambda: timed([bin_path, "-q", "refresh"], root, env),
        lambda: timed([dvc, "repro", "-q"], root, env),
        reps,
    )
    ratio = ours / peer
    print(
        f"up-to-date refresh ({STEPS} steps): artifactctl {ours:.1f} ms, peer {peer:.1f} ms (dvc repro), "
        f"ratio {ratio:.3f} (target <= 0.03)"
    )
    return ratio <= 0.03


def bench_reuse(bin_path, work, reps, mib):
    root = os.path.join(work, "reuse")
    make_project(root)
    source = os.path.join(work, "raw-dataset.bin")
    chunk = os.urandom(1 << 20)
    with open(source, "wb") as f:
        for _ in range(mib):
            f.write(chunk)
    os.makedirs(os.path.join(root, "scripts"), exist_ok=True)
    with open(os.path.join(root, "scripts", "make_dataset.sh"), "w") as f:
        f.write(f'cp "{source}" "$ARTIFACTCTL_STEP_DIR/dataset.bin"\n')
    write_config(
        root,
        '[[refresh.steps]]\nname = "training-data"\ngroup = "datasets"\n'
        'run = "sh scripts/make_dataset.sh"\ndeps = ["scripts/make_dataset.sh"]\n',
    )
    env = clean_env()
    first = subprocess.run(
        [bin_path, "-q", "refresh", "--json"], cwd=root, env=env, check=True, capture_output=True
    )
    run = json.loads(first.stdout)["run"]
    dataset_dir = os.path.join(root, "bench-artifacts", "raw", run, "training-data")

    def refresh_reusing():
        return timed([bin_path, "-q", "refresh", "--publish-unchanged"], root, env)

    def copy_dataset():
        target = os.path.join(work, "copied")
        elapsed = timed(["cp", "-r", dataset_dir, target], work, env)
        shutil.rmtree(target)
        return elapsed

    ours, peer = side_by_side(refresh_reusing, copy_dataset, reps)
    check = subprocess.run(
        [bin_path, "-q", "refresh", "--json", "--publish-unchanged"], cwd=root, env=env, check=True, capture_output=True
    )
    status = json.loads(check.stdout)["steps"][0]["status"]
    if status != "reused":
        print(f"warning: the dataset step was {status}, not reused", file=sys.stderr)
    ratio = ours / peer
    print(
        f"dataset reuse ({mib} MiB): artifactctl {ours:.1f} ms, peer {peer:.1f} ms (cp -r), "
        f"ratio {ratio:.3f} (target <= 0.1)"
    )
    return ratio <= 0.1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(REPO, "target", "release", "artifactctl"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dataset-mib", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the temporary trees")
    args = parser.parse_args()
    bin_path = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="artifactctl-bench-refresh-")
    try:
        ok = bench_overhead(bin_path, work, args.reps)
        ok = bench_noop(bin_path, work, args.reps) and ok
        ok = bench_reuse(bin_path, work, args.reps, args.dataset_mib) and ok
    finally:
        if args.keep:
            print(f"trees kept in {work}", file=sys.stderr)
        else:
            subprocess.run(["chmod", "-R", "u+w", work], check=False)
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

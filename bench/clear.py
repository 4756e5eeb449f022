#!/usr/bin/env python3
"""Benchmark `artifactctl clear` against find(1) on a generated ML project.

    python3 bench/clear.py --bin target/release/artifactctl [--scale 100] [--reps 3]

Builds the fixture once (../shared/bench/mkfixture.py when it exists, else a
small generator of its own), then for each figure runs artifactctl and the
peer side by side: one warm-up, then the median of --reps repetitions.

- dry run: `artifactctl clear --json` (walks every matched folder to count its
  files and bytes) against find printing every file that would be removed with
  its size (`-printf '%s %p'`), the same work. For reference, the figure of a
  find that only lists the top-level items (`-print -prune`) is printed too.
- deletion: `artifactctl clear --force` against
  `find ... -prune -exec rm -rf {} + ... -exec rm -f {} +`, each on a fresh
  copy (`cp -a`) of the fixture, made before the timer starts.
- peak RSS of artifactctl (deletion), from /usr/bin/time -v when present,
  else getrusage(RUSAGE_CHILDREN).

After every deletion it checks that exactly the fixture's keep set survives.
Python 3 standard library only.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

EXTS = [".joblib", ".pkl", ".h5", ".hdf5", ".pb", ".onnx", ".db"]
DIRS = ["trained_models", "training_data", "evaluation_data", "evaluation_results",
        "training_checkpoints", "mlruns", "htmlcov", ".pytest_cache", ".mypy_cache",
        ".hypothesis"]
FILES = ["coverage.xml", ".coverage"]
PROTECTED = [".git", ".hg", ".svn", "node_modules", "site-packages"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FIXTURE = os.path.join(REPO, "..", "shared", "bench", "mkfixture.py")


def name_tests(names):
    out = ["("]
    for i, n in enumerate(names):
        if i:
            out.append("-o")
        out += ["-name", n]
    out.append(")")
    return out


def find_prefix(root):
    # Same never-enter list and same filesystem rule as artifactctl clear.
    return ["find", root, "-xdev", "-type", "d"] + name_tests(PROTECTED) + ["-prune", "-o"]


def find_dry_files(root):
    """Every file a clear removes, with its size: descend into matched folders."""
    inside = ["("]
    for i, d in enumerate(DIRS):
        if i:
            inside.append("-o")
        inside += ["-path", f"*/{d}/*"]
    inside.append(")")
    return (find_prefix(root) + ["!", "-type", "d", "("] + inside + ["-o"]
            + name_tests(["*" + e for e in EXTS] + FILES) + [")", "-printf", "%s %p\n"])


def find_dry_items(root):
    """Only the top-level items, without counting inside folders."""
    return (find_prefix(root) + ["-type", "d"] + name_tests(DIRS) + ["-print", "-prune", "-o",
            "-type", "f"] + name_tests(["*" + e for e in EXTS] + FILES) + ["-print"])


def find_delete(root):
    return (find_prefix(root) + ["-type", "d"] + name_tests(DIRS)
            + ["-prune", "-exec", "rm", "-rf", "{}", "+", "-o", "!", "-type", "d"]
            + name_tests(["*" + e for e in EXTS] + FILES) + ["-exec", "rm", "-f", "{}", "+"])


def own_fixture(root, scale):
    """A reduced stand-in for mkfixture.py when ../shared is absent."""
    removed = kept = 0

    def write(rel, data, artifact):
        nonlocal removed, kept
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if artifact:
            removed += 1
        else:
            kept += 1

    for i in range(60):
        write(f"src/module_{i}.py", b"x = 1\n", False)
    write(".git/HEAD", b"ref\n", False)
    write(".venv/lib/python3.11/site-packages/m/iris.pkl", b"p", False)
    for i in range(100 * scale):
        write(f"trained_models/m_{i}.joblib", b"m" * 256, True)
        write(f"htmlcov/p_{i}.html", b"<html/>", True)
    for i in range(50 * scale):
        write(f"training_checkpoints/epoch_{i}/c.joblib", b"c" * 64, True)
    for i in range(5 * scale):
        write(f"src/stray_{i}.pkl", b"s" * 64, True)
    return {"remove_files": removed, "keep_files": kept}


def build_fixture(root, scale):
    if os.path.exists(SHARED_FIXTURE):
        out = subprocess.run([sys.executable, SHARED_FIXTURE, "project", root, "--scale", str(scale)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    return own_fixture(root, scale)


def tree_listing(root):
    """Every regular file, relative to root (what must survive)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out.add(os.path.relpath(p, root))
    return out


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def median_of(reps, fn):
    fn()  # warm-up
    return statistics.median(fn() for _ in range(reps))


def fresh_copy(fixture, work, n):
    dst = os.path.join(work, f"copy{n}")
    subprocess.run(["cp", "-a", fixture, dst], check=True)
    return dst


def peak_rss_mib(cmd):
    if os.path.exists("/usr/bin/time"):
        res = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, check=True)
        for line in res.stderr.splitlines():
            if "Maximum resident set size" in line:
                return int(line.split(":")[1]) / 1024
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def report(name, ours, peer, target):
    ratio = ours / peer if peer else float("inf")
    verdict = "ok" if ratio <= target else "MISSED"
    print(f"{name}: artifactctl {ours:.1f} ms, peer {peer:.1f} ms, ratio {ratio:.2f} (target <= {target}) {verdict}")
    return ratio <= target


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(REPO, "target", "release", "artifactctl"))
    p.add_argument("--scale", type=int, default=100)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--fixture", help="reuse an already built fixture (it is never modified)")
    p.add_argument("--work", help="scratch folder (default: a temporary one)")
    args = p.parse_args()
    binary = os.path.abspath(args.bin)
    work = args.work or tempfile.mkdtemp(prefix="clear-bench-")
    os.makedirs(work, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTCTL_")}
    env["NO_COLOR"] = "1"
    os.environ.clear()
    os.environ.update(env)
    ok = True
    try:
        if args.fixture:
            fixture = os.path.abspath(args.fixture)
            expected = None
        else:
            fixture = os.path.join(work, "fixture")
            expected = build_fixture(fixture, args.scale)
            print(f"fixture: {json.dumps(expected)}")
        # The set a correct clear keeps: every file find's own removal spares.
        probe = fresh_copy(fixture, work, "probe")
        subprocess.run(find_delete(probe), check=True)
        keep_set = tree_listing(probe)
        shutil.rmtree(probe)
        if expected and len(keep_set) != expected["keep_files"]:
            print(f"FAILED: find keeps {len(keep_set)} files, the fixture expects {expected['keep_files']}")
            ok = False

        ours = [binary, "--root", fixture, "--no-progress", "clear", "--json"]
        dry = subprocess.run(ours, capture_output=True, text=True)
        plan = json.loads(dry.stdout)
        print(f"plan: {len(plan['items'])} items, {plan['total_files']} files, "
              f"{plan['total_bytes']} bytes, {len(plan['errors'])} errors")
        before = tree_listing(fixture)
        ok &= report("dry-run scan", median_of(args.reps, lambda: timed(ours)),
                     median_of(args.reps, lambda: timed(find_dry_files(fixture))), 0.5)
        items_peer = median_of(args.reps, lambda: timed(find_dry_items(fixture)))
        print(f"  (reference: find listing top-level items only, no counting: {items_peer:.1f} ms)")
        if tree_listing(fixture) != before:
            print("FAILED: the dry run changed the fixture")
            ok = False

        n = [0]
        survivors_ok = [True]

        def delete_with(make_cmd):
            n[0] += 1
            copy = fresh_copy(fixture, work, n[0])
            os.sync()  # neither side pays for writing back the copy
            cmd = make_cmd(copy)
            ms = timed(cmd)
            survivors = tree_listing(copy)
            if survivors != keep_set:
                print(f"FAILED: {cmd[0]} left {len(survivors)} files, expected {len(keep_set)}: "
                      f"extra {sorted(survivors - keep_set)[:5]} missing {sorted(keep_set - survivors)[:5]}")
                survivors_ok[0] = False
            shutil.rmtree(copy)
            return ms


        def ours_delete(root):
            return [binary, "--root", root, "--no-progress", "-q", "clear", "--force"]

        ok &= report("deletion", median_of(args.reps, lambda: delete_with(ours_delete)),
                     median_of(args.reps, lambda: delete_with(find_delete)), 0.8)
        ok &= survivors_ok[0]
        if survivors_ok[0]:
            print(f"keep set: exactly {len(keep_set)} files survive every deletion")

        copy = fresh_copy(fixture, work, "rss")
        rss = peak_rss_mib(ours_delete(copy))
        shutil.rmtree(copy, ignore_errors=True)
        rss_ok = rss <= 64
        ok &= rss_ok
        print(f"peak RSS (deletion): artifactctl {rss:.1f} MiB (target <= 64) {'ok' if rss_ok else 'MISSED'}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

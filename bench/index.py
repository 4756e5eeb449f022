#!/usr/bin/env python3
"""Issue 15: the run index at 100,000 runs, side by side with the
manage_models.py-style peer (bench/peer_manage_models.py).

Figures: `list --json` warm (and with the index off, for comparison), the
cold-cache figure where /proc/sys/vm/drop_caches is writable, `list` over
10,000 runs, peak memory, `cleanup --keep 5 --dry-run`, `show` and `path`,
and `list` right after a legacy tool added 100 folders.

The fixture writes each run's native metadata.json (plus a model and a log
file, which the peer walks) directly, not through 100,000 `register` calls;
one `register` afterwards is the writer that builds the index, as in real
use."""
import argparse
import json
import os
import resource
import statistics
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report, time_cmd, workdir  # noqa: E402

FILES = [("model.pt", 64), ("training.log", 32)]


def run_id(i):
    day, rest = divmod(i, 86400)
    hh, rem = divmod(rest, 3600)
    mm, ss = divmod(rem, 60)
    return f"20{20 + day // 336:02d}{1 + (day // 28) % 12:02d}{1 + day % 28:02d}_{hh:02d}{mm:02d}{ss:02d}"


def created_at(rid):
    return f"{rid[0:4]}-{rid[4:6]}-{rid[6:8]}T{rid[9:11]}:{rid[11:13]}:{rid[13:15]}Z"


def make_store(root, runs):
    """`runs` native runs in raw/ (schema v1), written directly."""
    raw = os.path.join(root, "raw")
    os.makedirs(raw)
    blob = {name: b"x" * size for name, size in FILES}
    files = [{"path": name, "size": size, "blake3": "0" * 64} for name, size in FILES]
    last = None
    for i in range(runs):
        rid = run_id(i)
        d = os.path.join(raw, rid)
        os.mkdir(d)
        for name, _ in FILES:
            with open(os.path.join(d, name), "wb") as f:
                f.write(blob[name])
        meta = {
            "schema_version": 1, "id": rid, "namespace": "", "stage": "raw",
            "created_at": created_at(rid), "status": "complete",
            "config": {"lr": 0.01}, "params": {"seq_length": 30, "batch_size": 100},
            "metrics": {"sharpe_ratio": (i % 100) / 40.0, "accuracy": 0.6},
            "tags": ["bench"], "files": files, "total_size": sum(s for _, s in FILES),
            "file_count": len(FILES), "lineage": {"source": "bench", "parent": None, "promoted_from": None},
            "producer": {"command": ["bench"], "version": "0.1.0", "hostname": "bench", "git_commit": None},
        }
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump(meta, f)
        last = rid
    os.symlink(last, os.path.join(raw, "latest"))
    return last


def legacy_dirs(root, count):
    raw = os.path.join(root, "raw")
    return [os.path.join(raw, f"20300101_{i // 3600:02d}{(i // 60) % 60:02d}{i % 60:02d}") for i in range(count)]


def add_legacy(root, count):
    """What seed 003's old training code does: timestamped folders with a
    training_metadata.json, written behind artifactctl's back."""
    for i, d in enumerate(legacy_dirs(root, count)):
        os.mkdir(d)
        with open(os.path.join(d, "training_metadata.json"), "w") as f:
            json.dump({"timestamp": "20300101_000000", "models": ["gru"], "metrics": {"sharpe_ratio": 1.0}}, f)
        with open(os.path.join(d, "gru.pt"), "wb") as f:
            f.write(b"x" * 16)


def fixture(base, name, runs):
    """A store of `runs` native runs under `base`, built once and reused
    (a marker file says it is whole)."""
    store = os.path.join(base, name)
    marker = os.path.join(base, f".{name}.{runs}.done")
    if not os.path.exists(marker):
        shutil.rmtree(store, ignore_errors=True)
        print(f"building a native store of {runs} runs in {store} ...", file=sys.stderr, flush=True)
        make_store(store, runs)
        open(marker, "w").close()
    for d in legacy_dirs(store, 100):
        shutil.rmtree(d, ignore_errors=True)
    return store


def peak_rss_mib(cmd, env=None):
    res = subprocess.run(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    for line in res.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1]) / 1024
    return None


def cpu_ms(argv, reps=3, env=None):
    """Median CPU time (user + system, all threads) of running argv, in ms:
    next to the wall time it tells a slow run from a busy machine."""
    samples = []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(samples)


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--runs", type=int, default=100000)
    ap.add_argument("--small", type=int, default=10000, help="runs of the store `list` (table) is timed on")
    ap.add_argument("--fixture", help="build the stores here once and reuse them (default: a fresh folder, removed after)")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    here = os.path.dirname(os.path.abspath(__file__))
    peer = [sys.executable, os.path.join(here, "peer_manage_models.py")]
    off = dict(os.environ, ARTIFACTCTL_INDEX="off")
    ok = True
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(wall times below are shared with whatever else runs; CPU times are not)", flush=True)
    work = workdir("index")
    base = os.path.abspath(args.fixture) if args.fixture else work
    try:
        big = fixture(base, "big", args.runs)
        src = os.path.join(work, "one")
        os.makedirs(src)
        with open(os.path.join(src, "model.pt"), "wb") as f:
            f.write(b"m")

        def art(*a):
            return [binary, "--store", big] + list(a)

        def count_rows(store):
            rows = subprocess.run([binary, "--store", store, "list", "--json"], check=True, capture_output=True).stdout
            return len(json.loads(rows)["runs"])

        full = time_cmd(art("list", "--json"), reps=1, warmup=1, env=off)
        # One ordinary write brings the index of the namespace it touches up
        # to date (and builds it the first time).
        subprocess.run(art("register", src, "--no-progress"), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n = count_rows(big)
        report(f"list --json, {n} runs, no index (full scan, warm)", full)
        ours = time_cmd(art("list", "--json"), reps=5, warmup=1)
        theirs = time_cmd(peer + [os.path.join(big, "raw")], reps=1, warmup=0)
        ok &= report(f"list --json, {n} runs, warm", ours, theirs, "peer manage_models.py list", "ratio<=0.03")
        ok &= report(f"list --json, {n} runs, warm (absolute)", ours, target="ms<=300")
        print(f"  CPU time, list --json: {cpu_ms(art('list', '--json')):.0f} ms", flush=True)
        if drop_caches():
            cold = time_cmd(art("list", "--json"), reps=1, warmup=0, setup=drop_caches)
            cold_peer = time_cmd(peer + [os.path.join(big, "raw")], reps=1, warmup=0, setup=drop_caches)
            report(f"list --json, {n} runs, cold cache (warm: {ours * 1000:.0f} ms)", cold, cold_peer,
                   "peer manage_models.py list, cold")
        else:
            print("cold cache: not measured (/proc/sys/vm/drop_caches is not writable here)", flush=True)
        rss = peak_rss_mib(art("list", "--json"))
        rss_off = peak_rss_mib(art("list", "--json"), env=off)
        rss_peer = peak_rss_mib(peer + [os.path.join(big, "raw")])
        if rss is None:
            print("peak memory: not measured (/usr/bin/time -v unavailable)", flush=True)
        else:
            good = rss <= 64
            ok &= good
            print(f"peak memory, list --json, {n} runs: artifactctl {rss:.1f} MiB (full scan {rss_off:.1f} MiB), "
                  f"peer {rss_peer:.1f} MiB (target MiB<=64: {'met' if good else 'MISSED'})", flush=True)
        cleanup = time_cmd(art("cleanup", "--keep", "5", "--dry-run"), reps=3, warmup=1)
        ok &= report(f"cleanup --keep 5 --dry-run, {n} runs", cleanup, target="ms<=500")
        print(f"  CPU time, cleanup: {cpu_ms(art('cleanup', '--keep', '5', '--dry-run')):.0f} ms", flush=True)
        last = subprocess.run(art("path", "latest"), check=True, capture_output=True, text=True).stdout.strip()
        last = os.path.basename(last)
        for what in (["show", last], ["path", last], ["show", "latest"], ["path", "latest"]):
            t = time_cmd(art(*what), reps=15)
            label = what[1] if what[1] == "latest" else "<id>"
            ok &= report(f"{what[0]} {label}, {n} runs", t, target="ms<=3")
        add_legacy(big, 100)
        try:
            # Readers never write: every list until the next writer sees the
            # store as it is right after the legacy tool, so a median holds.
            after = time_cmd(art("list", "--json"), reps=3, warmup=0)
            count = count_rows(big)
        finally:
            for d in legacy_dirs(big, 100):
                shutil.rmtree(d, ignore_errors=True)
        correct = count == n + 100
        ok &= correct
        ok &= report(f"list --json right after a legacy tool added 100 folders, {n + 100} runs "
                     f"({'correct' if correct else f'WRONG: {count} rows'})", after, target=f"ms<={2 * ours * 1000:.0f}")
        if args.small != args.runs:
            if not args.fixture:
                shutil.rmtree(big)
            small = fixture(base, "small", args.small)
            subprocess.run([binary, "--store", small, "register", src, "--no-progress"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            small = big
        table = time_cmd([binary, "--store", small, "list"], reps=7)
        ok &= report(f"list (table), {count_rows(small)} runs, warm", table, target="ms<=40")
        print(f"  CPU time, list (table): {cpu_ms([binary, '--store', small, 'list'], reps=7):.0f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark remote stores (issue 14) against the same local S3 server,
side by side in one run:

- push_small / pull_small: `artifactctl push` / `pull` of one run of --files
  small files (default 10,000) against `dvc push` / `dvc pull` of the same
  files to an S3 remote on the same server. Target: ratio at most 0.5.
- push_big / pull_big: one run holding one file of --big-mib MiB (default
  1024) against `aws s3 cp --recursive` of the same folder. Target: ratio at
  most 1.2.
- repush: re-push of the unchanged run, against one plain HTTP round trip to
  the server. Target: at most 50 ms beyond it.
- list_remote: `list --remote` over --list-runs runs (default 10,000).
  Target: at most 2 s. The remote is built fast: one run is registered
  and pushed by artifactctl, its record is read back from the server and
  cloned under new ids straight into the bucket (16 PUTs at a time), then
  `cleanup --remote --yes` rebuilds the catalog index from those records
  (timed too, for information) and three more runs are pushed, so the
  listing reads the index plus a few segments as it would in use.

The server is moto's server mode; moto, dvc[s3] and awscli are installed in
virtual environments under bench/.work/venv-remote-*. Without moto nothing
can run (the benchmark says so and exits 0); a peer that cannot be
installed has its figure skipped with a message. Each figure is one timed
run (a push needs an empty bucket): this is a side-by-side comparison, not
a statistic. A quick smoke run: --files 500 --big-mib 16. --only-big runs
push_big and pull_big alone (the multipart path), --only-list list_remote.

Usage: bench/remote.py --bin target/release/artifactctl [--files N] [--big-mib N]
       [--list-runs N] [--only-list | --only-big]
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.client import HTTPConnection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, report, time_cmd, workdir  # noqa: E402

def venv_tool(name, package):
    """The path of `name` in its own virtual environment under bench/.work
    (moto, dvc and awscli pin different botocore versions), installing
    `package` if it is missing; None with a message when that fails."""
    venv = os.path.join(REPO, "bench", ".work", f"venv-remote-{name}")
    tool = os.path.join(venv, "bin", name)
    if os.path.exists(tool):
        return tool
    try:
        if not os.path.exists(os.path.join(venv, "bin", "pip")):
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [os.path.join(venv, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check", package],
            check=True,
        )
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"skipped: cannot install {package} into {venv}: {e}", flush=True)
        return None
    return tool if os.path.exists(tool) else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return r.status


class Server:
    def __init__(self, moto):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                http("GET", self.url + "/")
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        sys.exit("moto_server did not answer within 60 s")

    def bucket(self, name):
        http("PUT", f"{self.url}/{name}")
        return name

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def env():
    e = dict(os.environ)
    e.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
             AWS_DEFAULT_REGION="us-east-1")
    return e


def timed(argv, cwd):
    # Both sides start with nothing dirty in the page cache: a fixture just
    # written (register's copy, dvc add's cache) would otherwise be flushed
    # during whichever command runs next.
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n"
                 f"{proc.stderr.decode(errors='replace')}")
    return elapsed


def project(root, server, bucket):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "artifactctl.toml"), "w") as f:
        f.write(f'[remote]\ndefault = "origin"\n[remotes.origin]\nurl = "s3://{bucket}/p"\n'
                f'endpoint = "{server.url}"\nregion = "us-east-1"\n')
    return root


def small_files(folder, n):
    for i in range(n):
        d = os.path.join(folder, f"d{i % 100:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}.txt"), "wb") as f:
            f.write(f"file {i}\n".encode() * (1 + i % 16))


def big_file(folder, mib):
    os.makedirs(folder, exist_ok=True)
    block = os.urandom(1 << 20)
    with open(os.path.join(folder, "model.bin"), "wb") as f:
        for i in range(mib):
            f.write(block[:-8] + i.to_bytes(8, "little"))


def ours_push_pull(bin_, work, server, data, name):
    """Register `data`, time push to a fresh bucket, then pull elsewhere."""
    bucket = server.bucket(f"ours-{name}")
    a = project(os.path.join(work, f"{name}-a"), server, bucket)
    subprocess.run([bin_, "register", data, "--id", "20261101_000000"], cwd=a, env=env(),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    push = timed([bin_, "push", "20261101_000000"], a)
    repush = timed([bin_, "push", "20261101_000000"], a)
    b = project(os.path.join(work, f"{name}-b"), server, bucket)
    pull = timed([bin_, "pull", "20261101_000000"], b)
    return push, pull, repush


def dvc_push_pull(dvc, work, server, data):
    bucket = server.bucket("dvc-small")
    repo = os.path.join(work, "dvc-repo")
    os.makedirs(repo)
    shutil.copytree(data, os.path.join(repo, "data"))
    for argv in (
        [dvc, "init", "--no-scm", "-q"],
        [dvc, "remote", "add", "-d", "s3", f"s3://{bucket}/dvc"],
        [dvc, "remote", "modify", "s3", "endpointurl", server.url],
        [dvc, "add", "-q", "data"],
    ):
        subprocess.run(argv, cwd=repo, env=env(), check=True, stdout=subprocess.DEVNULL)
    push = timed([dvc, "push", "-q"], repo)
    shutil.rmtree(os.path.join(repo, ".dvc", "cache"))
    shutil.rmtree(os.path.join(repo, "data"))
    pull = timed([dvc, "pull", "-q"], repo)
    return push, pull


def aws_cp(aws, work, server, data):
    bucket = server.bucket("aws-big")
    base = [aws, "--endpoint-url", server.url, "s3", "cp", "--recursive", "--only-show-errors"]
    push = timed(base + [data, f"s3://{bucket}/big"], work)
    pull = timed(base + [f"s3://{bucket}/big", os.path.join(work, "aws-down")], work)
    return push, pull


def round_trip(server):
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        try:
            http("HEAD", f"{server.url}/ours-small")
        except OSError:
            pass
        samples.append(time.perf_counter() - start)
    samples.sort()
    return samples[len(samples) // 2]


# moto takes any signature; some of its routes refuse a request with none.
AUTH = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, "
                         "SignedHeaders=host, Signature=0"}


def put_many(server, bucket, objects):
    """PUT (key, bytes) pairs into the bucket, 16 at a time on kept-alive
    connections (moto takes unsigned requests)."""
    local = threading.local()

    def put(item):
        key, body = item
        if not hasattr(local, "conn"):
            local.conn = HTTPConnection("127.0.0.1", server.port, timeout=60)
        local.conn.request("PUT", f"/{bucket}/{key}", body=body, headers=AUTH)
        r = local.conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"PUT {key}: {r.status}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects))


def list_remote(bin_, work, server, n):
    """`list --remote` over n runs; returns (list seconds, rebuild seconds)."""
    bucket = server.bucket("ours-list")
    a = project(os.path.join(work, "list-a"), server, bucket)
    src = os.path.join(work, "list-src")
    os.makedirs(src)
    with open(os.path.join(src, "model.pt"), "wb") as f:
        f.write(b"weights")
    run = lambda *argv: subprocess.run([bin_, *argv], cwd=a, env=env(), check=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("register", src, "--namespace", "bench0", "--id", "20200101_000000")
    run("push", "bench0/20200101_000000")
    record = f"{server.url}/{bucket}/p/runs/raw/ns=bench0/20200101_000000.json"
    with urllib.request.urlopen(urllib.request.Request(record, headers=AUTH)) as r:
        template = json.loads(r.read())
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    objects = []
    for i in range(1, n):
        t = start + datetime.timedelta(seconds=i)
        rec = dict(template)
        rec["id"] = t.strftime("%Y%m%d_%H%M%S")
        rec["namespace"] = f"bench{i % 10}"
        rec["created_at"] = t.isoformat().replace("+00:00", "Z")
        rec["metrics"] = {"sharpe_ratio": (i % 100) / 10}
        objects.append((f"p/runs/raw/ns={rec['namespace']}/{rec['id']}.json", json.dumps(rec).encode()))
    put_many(server, bucket, objects)
    rebuild = timed([bin_, "cleanup", "--remote", "origin", "--yes"], a)
    for k in range(3):
        with open(os.path.join(src, "model.pt"), "wb") as f:
            f.write(f"weights {k}".encode())
        run("register", src, "--namespace", "bench0", "--id", f"20300101_00000{k}")
        run("push", f"bench0/20300101_00000{k}")
    b = project(os.path.join(work, "list-b"), server, bucket)
    out = subprocess.run([bin_, "list", "--remote", "origin", "--json"], cwd=b, env=env(),
                         check=True, capture_output=True)
    listed = len(json.loads(out.stdout)["runs"])
    if listed != n + 3:
        sys.exit(f"list --remote listed {listed} runs, expected {n + 3}")
    return time_cmd([bin_, "list", "--remote", "origin"], reps=5, warmup=1, cwd=b, env=env()), rebuild


def small_cases(bin_, work, server, files):
    """push_small, pull_small and repush; whether their targets are met."""
    ok = True
    small = os.path.join(work, "small")
    small_files(small, files)
    push, pull, repush = ours_push_pull(bin_, work, server, small, "small")
    dvc = venv_tool("dvc", "dvc[s3]")
    if dvc is None:
        print("skipped: push_small and pull_small need dvc")
        report(f"push_small ({files} files)", push)
        report(f"pull_small ({files} files)", pull)
    else:
        dpush, dpull = dvc_push_pull(dvc, work, server, small)
        ok &= report(f"push_small ({files} files)", push, dpush, "dvc push", "ratio<=0.5")
        ok &= report(f"pull_small ({files} files)", pull, dpull, "dvc pull", "ratio<=0.5")
    rt = round_trip(server)
    beyond = repush - rt
    print(f"repush: artifactctl {repush * 1000:.2f} ms, one round trip {rt * 1000:.2f} ms, "
          f"{beyond * 1000:.2f} ms beyond (target <= 50 ms: {'met' if beyond <= 0.05 else 'MISSED'})")
    ok &= beyond <= 0.05

    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default="target/release/artifactctl")
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--list-runs", type=int, default=10_000,
                    help="runs on the remote for list_remote (0 skips it)")
    ap.add_argument("--only-list", action="store_true", help="run list_remote only")
    ap.add_argument("--only-big", action="store_true",
                    help="run push_big and pull_big only (the multipart path)")
    args = ap.parse_args()
    if args.only_list and args.only_big:
        ap.error("--only-list and --only-big exclude each other")
    bin_ = os.path.abspath(args.bin)
    moto = venv_tool("moto_server", "moto[server]")
    if moto is None:
        print("skipped: every remote figure needs moto's S3 server")
        return 0
    work = workdir("remote")
    server = Server(moto)
    ok = True
    try:
        if args.list_runs > 0 and not args.only_big:
            listed, rebuild = list_remote(bin_, work, server, args.list_runs)
            print(f"catalog rebuild by cleanup --remote over {args.list_runs} records: "
                  f"{rebuild * 1000:.2f} ms", flush=True)
            ok &= report(f"list_remote ({args.list_runs + 3} runs)", listed, target="ms<=2000")
        if args.only_list:
            return 0 if ok else 1
        if not args.only_big:
            ok &= small_cases(bin_, work, server, args.files)
        big = os.path.join(work, "big")
        big_file(big, args.big_mib)
        bpush, bpull, _ = ours_push_pull(bin_, work, server, big, "big")
        aws = venv_tool("aws", "awscli")
        if aws is None:
            print("skipped: push_big and pull_big need awscli")
            report(f"push_big ({args.big_mib} MiB)", bpush)
            report(f"pull_big ({args.big_mib} MiB)", bpull)
        else:
            apush, apull = aws_cp(aws, work, server, big)
            ok &= report(f"push_big ({args.big_mib} MiB)", bpush, apush, "aws s3 cp", "ratio<=1.2")
            ok &= report(f"pull_big ({args.big_mib} MiB)", bpull, apull, "aws s3 cp", "ratio<=1.2")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""A Python API over the ``artifactctl`` binary.

Every call runs the binary with ``--json`` and returns typed results; the
store is never read or written from Python. The binary is found next to this
package (the wheel installs it into the environment's scripts folder), then
through ``ARTIFACTCTL_BIN``, then on ``PATH``.

    import artifactctl

    model_dir = artifactctl.resolve("gru/BTCEUR/latest")
    runs = artifactctl.list_runs("gru", where=["metrics.sharpe_ratio>1.0"])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = [
    "ArtifactctlError",
    "FileEntry",
    "Run",
    "binary",
    "list_runs",
    "promote",
    "register",
    "resolve",
    "show",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The exit codes of ``src/exit_codes.rs`` and the error kind each means
#: when the binary gives no JSON error object.
_KIND_BY_EXIT = {1: "failure", 2: "usage", 130: "interrupted"}

_INSTALL_HINT = (
    "install it with `pip install artifactctl` (or `pip install .` from a clone), "
    "or `cargo install --path .`, or set ARTIFACTCTL_BIN to the binary"
)


class ArtifactctlError(Exception):
    """A command failed: ``exit_code`` is the binary's exit code, ``kind`` the
    error kind of its JSON error object (or ``usage``/``failure``/``interrupted``
    from the exit code), ``message`` what went wrong."""

    def __init__(self, message: str, exit_code: int, kind: str, command: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.kind = kind
        self.command = list(command)

    def __str__(self) -> str:
        return f"{self.message} (exit {self.exit_code}, {self.kind})"


@dataclass(frozen=True)
class FileEntry:
    """One file of a run's manifest (``show``)."""

    path: str
    size: int
    blake3: Optional[str]
    symlink: Optional[str] = None


@dataclass(frozen=True)
class Run:
    """One run, with the fields of ``docs/json.md``. ``path``, ``files``,
    ``features``, ``lineage``, ``config``, ``producer`` and ``extra`` are
    filled by :func:`show` (and the calls that return one run); ``list_runs``
    leaves them empty."""

    ref: str
    id: str
    namespace: str
    stage: str
    created_at: Optional[str]
    status: str
    size_bytes: int
    file_count: int
    model_count: int
    dataset_count: int
    metrics: Dict[str, float]
    params: Dict[str, Any]
    tags: List[str]
    latest: bool
    pinned: bool
    layout: str
    problems: List[str]
    path: Optional[Path] = None
    files: List[FileEntry] = field(default_factory=list)
    features: Optional[Dict[str, Any]] = None
    lineage: Dict[str, Any] = field(default_factory=dict)
    config: Any = None
    producer: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Run":
        files = [
            FileEntry(
                path=f.get("path", ""),
                size=int(f.get("size", 0)),
                blake3=f.get("blake3"),
                symlink=f.get("symlink"),
            )
            for f in doc.get("files") or []
        ]
        path = doc.get("path")
        return cls(
            ref=doc["ref"],
            id=doc.get("id", ""),
            namespace=doc.get("namespace", ""),
            stage=doc.get("stage", "raw"),
            created_at=doc.get("created_at"),
            status=doc.get("status", "unknown"),
            size_bytes=int(doc.get("size_bytes", 0)),
            file_count=int(doc.get("file_count", 0)),
            model_count=int(doc.get("model_count", 0)),
            dataset_count=int(doc.get("dataset_count", 0)),
            metrics=dict(doc.get("metrics") or {}),
            params=dict(doc.get("params") or {}),
            tags=list(doc.get("tags") or []),
            latest=bool(doc.get("latest", False)),
            pinned=bool(doc.get("pinned", False)),
            layout=doc.get("layout", ""),
            problems=list(doc.get("problems") or []),
            path=Path(path) if path else None,
            files=files,
            features=doc.get("features"),
            lineage=dict(doc.get("lineage") or {}),
            config=doc.get("config"),
            producer=dict(doc.get("producer") or {}),
            extra=dict(doc.get("extra") or {}),
        )


def _bundled() -> Optional[Path]:
    """The binary the wheel installed beside this package: the scripts folder
    of the installation scheme whose library folder holds the package."""
    here = Path(__file__).resolve().parent.parent
    exe = "artifactctl.exe" if os.name == "nt" else "artifactctl"
    schemes = [sysconfig.get_default_scheme()] if hasattr(sysconfig, "get_default_scheme") else []
    schemes += [s for s in sysconfig.get_scheme_names() if s not in schemes]
    for scheme in schemes:
        try:
            paths = sysconfig.get_paths(scheme)
        except KeyError:
            continue
        libs = {Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths}
        if here in libs and "scripts" in paths:
            candidate = Path(paths["scripts"]) / exe
            if candidate.is_file():
                return candidate
    return None


def binary() -> Path:
    """The ``artifactctl`` binary this package runs."""
    bundled = _bundled()
    if bundled is not None:
        return bundled
    env = os.environ.get("ARTIFACTCTL_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ArtifactctlError(
                f"ARTIFACTCTL_BIN is {env}, which is not a file; {_INSTALL_HINT}", 2, "usage"
            )
        return path
    found = shutil.which("artifactctl")
    if found:
        return Path(found)
    raise ArtifactctlError(f"the artifactctl binary was not found; {_INSTALL_HINT}", 2, "usage")


def _error(cmd: Sequence[str], proc: "subprocess.CompletedProcess[str]") -> ArtifactctlError:
    """The error of a failed command: from its JSON error object on stdout
    when it prints one, else from the exit code and stderr."""
    kind = _KIND_BY_EXIT.get(proc.returncode, "failure")
    message = ""
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "error" in doc:
        err = doc["error"]
        if isinstance(err, dict):
            kind = str(err.get("kind") or kind)
            message = str(err.get("message") or "")
        elif err is not None:
            message = str(err)
    if not message:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        message = "\n".join(errors or lines) or f"artifactctl exited with {proc.returncode}"
        if message.startswith("error: "):
            message = message[len("error: "):]
    return ArtifactctlError(message, proc.returncode, kind, cmd)


def _run(args: Sequence[str], store: Optional[PathLike] = None) -> Dict[str, Any]:
    cmd = [str(binary())]
    if store is not None:
        cmd += ["--store", os.fspath(store)]
    cmd += [*args, "--json", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _error(cmd, proc)
    try:
        doc = json.loads(proc.stdout)
    except ValueError as e:
        raise ArtifactctlError(f"artifactctl printed no JSON: {e}", proc.returncode, "failure", cmd) from e
    if not isinstance(doc, dict):
        raise ArtifactctlError("artifactctl printed JSON that is not an object", 1, "failure", cmd)
    return doc


def resolve(ref: str, store: Optional[PathLike] = None) -> Path:
    """The folder of the run ``ref`` names: ``resolve("latest")``,
    ``resolve("gru/BTCEUR/latest") / "model.pth"``,
    ``resolve("production/gru/BTCEUR/1.0.0")``."""
    run = show(ref, store=store)
    assert run.path is not None
    return run.path


def show(ref: str, store: Optional[PathLike] = None) -> Run:
    """Everything about one run: metadata, metrics, files, lineage, problems."""
    return Run.from_json(_run(["show", ref], store)["run"])


def list_runs(
    namespace: Optional[str] = None,
    stage: str = "raw",
    where: Sequence[str] = (),
    sort: Optional[str] = None,
    store: Optional[PathLike] = None,
) -> List[Run]:
    """Runs in ``namespace`` (or below) of ``stage`` (``raw``, ``validated``,
    ``production`` or ``all``) where every ``FIELD OP VALUE`` of ``where``
    holds, sorted by ``sort`` (``created`` by default, newest first)."""
    if isinstance(where, str):
        where = [where]
    args = ["list"]
    if namespace:
        args.append(namespace)
    args += ["--stage", stage]
    for expr in where:
        args += ["--where", expr]
    if sort:
        args += ["--sort", sort]
    return [Run.from_json(r) for r in _run(args, store)["runs"]]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def register(
    path: PathLike,
    metrics: Optional[Mapping[str, float]] = None,
    params: Optional[Mapping[str, Any]] = None,
    config: Union[Mapping[str, Any], PathLike, None] = None,
    id: Optional[str] = None,
    namespace: Optional[str] = None,
    store: Optional[PathLike] = None,
) -> Run:
    """Copy the folder ``path`` into the store as a new raw run (seed 004's
    ``register_training_session``). ``config`` is a dict, or a JSON file."""
    args = ["register", os.fspath(path)]
    if namespace:
        args += ["--namespace", namespace]
    if id is not None:
        args += ["--id", id]
    for key, value in (metrics or {}).items():
        args += ["--metric", f"{key}={_scalar(value)}"]
    for key, value in (params or {}).items():
        args += ["--param", f"{key}={_scalar(value)}"]
    with tempfile.TemporaryDirectory(prefix="artifactctl-") as tmp:
        if isinstance(config, Mapping):
            config_file = Path(tmp) / "config.json"
            config_file.write_text(json.dumps(dict(config)), encoding="utf-8")
            args += ["--config", str(config_file)]
        elif config is not None:
            args += ["--config", os.fspath(config)]
        done = _run(args, store)
    return show(done["ref"], store=store)


def promote(
    ref: str,
    to: str,
    checkpoint: Optional[str] = None,
    version: Optional[str] = None,
    approve: bool = False,
    results: Union[Mapping[str, Any], PathLike, None] = None,
    deploy_config: Union[Mapping[str, Any], PathLike, None] = None,
    notes: Optional[str] = None,
    store: Optional[PathLike] = None,
) -> Run:
    """Promote ``ref`` to ``validated`` (picking ``checkpoint``) or to
    ``production`` (at ``version``, with ``approve=True`` since there is no
    prompt): seed 004's ``promote_to_validated`` and ``promote_to_production``.

    ``results`` (validation results: a dict or a JSON file) are stored with a
    validated artifact and checked by its gates; ``deploy_config`` (a dict,
    written as ``deployment.json``, or a file or folder) goes into a
    release's ``deployment/``. A failed gate raises
    :class:`ArtifactctlError` with exit code 1."""
    args = ["promote", ref, "--to", to]
    if checkpoint is not None:
        args += ["--checkpoint", checkpoint]
    if version is not None:
        args += ["--version", version]
    if approve:
        args.append("--approve")
    if notes is not None:
        args += ["--notes", notes]
    with tempfile.TemporaryDirectory(prefix="artifactctl-") as tmp:
        for flag, value, name in (
            ("--results", results, "validation_results.json"),
            ("--deploy-config", deploy_config, "deployment.json"),
        ):
            if isinstance(value, Mapping):
                file = Path(tmp) / name
                file.write_text(json.dumps(dict(value), indent=2), encoding="utf-8")
                args += [flag, str(file)]
            elif value is not None:
                args += [flag, os.fspath(value)]
        done = _run(args, store)
    return show(done["ref"], store=store)


def _main() -> None:  # pragma: no cover - convenience for `python -m artifactctl`
    os.execv(str(binary()), ["artifactctl", *sys.argv[1:]])

"""Fixtures for the Python API tests: the seed layouts, built in temporary
folders, and the binary the build just made (``ARTIFACTCTL_BIN``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, data: "bytes | str") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session", autouse=True)
def _binary() -> None:
    """The suite runs against the binary cargo built; never a silent skip."""
    path = os.environ.get("ARTIFACTCTL_BIN")
    assert path, "set ARTIFACTCTL_BIN to the artifactctl binary (make test does)"
    assert Path(path).is_file(), f"ARTIFACTCTL_BIN={path} is not a file: build it first"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project folder, the working directory of the test, with a
    clean artifactctl environment."""
    for key in list(os.environ):
        if key.startswith("ARTIFACTCTL_") and key != "ARTIFACTCTL_BIN":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def training_output(dir: Path) -> Path:
    """A folder of training outputs in seed 004's raw shape."""
    for name in ["best.pt", "epoch_10.pt", "epoch_70.pt", "latest.pt"]:
        write(dir / "checkpoints" / name, f"{name} weights")
    write(dir / "metrics/training_metrics.json", '{"best_val_loss": 0.38}')
    write(dir / "config.yaml", "lr: 0.01\n")
    write(dir / "training.log", "epoch 1 loss 0.9\n")
    return dir


def seed003(dir: Path, runs: int = 3, corrupt: "int | None" = None) -> List[str]:
    """Timestamped folders with ``training_metadata.json`` and a ``latest`` link."""
    ids = []
    for i in range(runs):
        run_id = f"20250724_15{8 + i // 60:02d}{i % 60:02d}"
        for name in ["lstm_model.h5", "xgboost_model.pkl", "scalers.pkl"]:
            write(dir / run_id / name, bytes([i]) * 64)
        meta = {
            "timestamp": run_id,
            "models": ["lstm", "xgboost"],
            "metrics": {"accuracy": 0.6, "sharpe_ratio": 0.5 + i / 10},
            "ensemble_weights": {"lstm": 0.5, "xgboost": 0.5},
        }
        text = json.dumps(meta, indent=2)
        if corrupt == i:
            text = text[: len(text) // 2]
        write(dir / run_id / "training_metadata.json", text)
        ids.append(run_id)
    (dir / "latest").symlink_to(ids[-1])
    return ids


def seed002(dir: Path) -> List[str]:
    """``models/{type}/{symbol}/{run_id}/`` with ``metadata.json`` and a
    ``latest`` link per symbol; gru/BTCEUR's first run has a feature mismatch."""
    refs = []
    for t, model_type in enumerate(["gru", "lightgbm"]):
        for s, symbol in enumerate(["BTCEUR", "ETHEUR"]):
            last = None
            for i in range(2):
                run_id = f"2024081{5 + i}_14{t}{s}0{i}"
                run = dir / model_type / symbol / run_id
                write(run / ("model.pth" if model_type == "gru" else "model.pkl"), b"w" * 32)
                names = [f"feature_{k}" for k in range(114)]
                count = 50 if (t, s, i) == (0, 0, 0) else 114
                meta = {
                    "model_type": model_type,
                    "run_id": run_id,
                    "symbol": symbol,
                    "created_at": f"2024-08-1{5 + i}T14:{t}{s}:0{i}.234567",
                    "feature_names": names,
                    "feature_count": count,
                    "input_size_actual": 5,
                    "selected_features": [0, 1, 5, 8, 12],
                }
                write(run / "metadata.json", json.dumps(meta))
                refs.append(f"{model_type}/{symbol}/{run_id}")
                last = run_id
            (dir / model_type / symbol / "latest").symlink_to(last)
    return refs


def seed004(store: Path) -> None:
    """``raw/ validated/ production/`` in the shapes seed 004 shows."""
    raw = store / "raw/v5_5_20251123_103epochs"
    for name in ["latest.pt", "best.pt", "epoch_70.pt"]:
        write(raw / "checkpoints" / name, b"weights")
    write(raw / "metrics/training_metrics.json", '{"best_val_loss": 0.38, "coverage": 0.99}')
    write(raw / "config.yaml", "lr: 0.01\n")
    validated = store / "validated/v5_5_epoch70_validated"
    write(validated / "model.pt", b"clean weights")
    write(validated / "metadata.json", '{"created_at": "2025-11-24T10:00:00", "metrics": {"coverage": 0.99}}')
    production = store / "production/v5_5_prod_v1.0"
    write(production / "model.pt", b"optimized weights")
    write(production / "metadata.json", '{"created_at": "2025-11-25T10:00:00"}')

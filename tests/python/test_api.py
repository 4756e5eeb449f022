"""Every call of the Python API on each seed layout, and errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import artifactctl
from artifactctl import ArtifactctlError, Run

from conftest import seed002, seed003, seed004, training_output, write


def test_the_binary_is_the_one_the_build_made() -> None:
    assert artifactctl.binary() == Path(os.environ["ARTIFACTCTL_BIN"])


def test_register_show_list_resolve_on_a_new_store(project: Path) -> None:
    out = training_output(project / "out")
    run = artifactctl.register(
        out,
        metrics={"best_val_loss": 0.38, "coverage": 0.99},
        params={"seq_length": 30, "bidirectional": True},
        config={"lr": 0.001},
        id="v5_5_20251124",
        namespace="gru/BTCEUR",
    )
    assert isinstance(run, Run)
    assert run.ref == "gru/BTCEUR/v5_5_20251124"
    assert run.metrics == {"best_val_loss": 0.38, "coverage": 0.99}
    assert run.params == {"seq_length": 30, "bidirectional": True}
    assert run.config == {"lr": 0.001}
    assert run.latest and run.status == "complete" and run.problems == []
    assert run.path == project / "artifacts/raw/gru/BTCEUR/v5_5_20251124"
    assert {f.path for f in run.files} >= {"checkpoints/epoch_70.pt", "config.yaml"}
    assert all(f.blake3 and len(f.blake3) == 64 for f in run.files)
    assert run.lineage["source"]

    assert artifactctl.resolve("gru/BTCEUR/latest") == run.path
    assert (artifactctl.resolve("gru/BTCEUR/latest") / "checkpoints/best.pt").is_file()
    assert artifactctl.show("gru/BTCEUR/latest").ref == run.ref

    second = artifactctl.register(out, metrics={"coverage": 0.5}, id="v5_6", namespace="gru/BTCEUR")
    listed = artifactctl.list_runs("gru")
    assert [r.ref for r in listed] == [second.ref, run.ref], "newest first"
    assert listed[0].path is None and listed[0].files == []
    kept = artifactctl.list_runs(where=["metrics.coverage>0.9"])
    assert [r.ref for r in kept] == [run.ref]
    by_coverage = artifactctl.list_runs(sort="metrics.coverage")
    assert [r.ref for r in by_coverage] == [run.ref, second.ref]
    assert artifactctl.list_runs("lightgbm") == []


def test_promote_to_validated_and_production(project: Path) -> None:
    raw = artifactctl.register(training_output(project / "out"), metrics={"coverage": 0.99}, id="r1")
    validated = artifactctl.promote(raw.ref, to="validated", checkpoint="epoch_70", results={"test_loss": 0.4})
    assert validated.ref == "validated/r1_epoch_70_validated"
    assert validated.stage == "validated"
    assert validated.lineage["promoted_from"] == "raw/r1"
    assert validated.metrics["test_loss"] == 0.4
    release = artifactctl.promote(validated.ref, to="production", version="1.0.0", approve=True, deploy_config={"replicas": 2})
    assert release.ref == "production/1.0.0"
    assert release.lineage["promoted_from"] == "validated/r1_epoch_70_validated"
    assert artifactctl.resolve("production/latest") == release.path
    assert (release.path / "model.pt").is_file()
    assert [r.ref for r in artifactctl.list_runs(stage="production")] == ["production/1.0.0"]
    assert len(artifactctl.list_runs(stage="all")) == 3


def test_seed003_timestamped_folders(project: Path) -> None:
    ids = seed003(project / "backend/models", corrupt=0)
    store = project / "backend/models"
    assert artifactctl.resolve("latest", store=store) == store / ids[-1]
    runs = artifactctl.list_runs(store=store)
    assert {r.id for r in runs} == set(ids)
    newest = artifactctl.show("latest", store=store)
    assert newest.layout == "training_metadata"
    assert newest.metrics["sharpe_ratio"] == pytest.approx(0.7)
    assert newest.extra["ensemble_weights"] == {"lstm": 0.5, "xgboost": 0.5}
    broken = artifactctl.show(ids[0], store=store)
    assert broken.problems, "a truncated training_metadata.json is reported"
    best = artifactctl.list_runs(where=["metrics.sharpe_ratio>0.55"], store=store)
    assert {r.id for r in best} == set(ids[1:]) - {ids[0]}


def test_seed002_per_symbol_models(project: Path) -> None:
    refs = seed002(project / "models")
    store = project / "models"
    model = artifactctl.resolve("gru/BTCEUR/latest", store=store) / "model.pth"
    assert model.is_file()
    assert model.parent.name == refs[1].split("/")[-1]
    runs = artifactctl.list_runs("gru", store=store)
    assert sorted(r.ref for r in runs) == sorted(r for r in refs if r.startswith("gru/"))
    mismatch = artifactctl.show(refs[0], store=store)
    assert mismatch.problems and "feature" in mismatch.problems[0]
    assert mismatch.features is not None and mismatch.features["feature_count"] == 50


def test_seed004_stages(project: Path) -> None:
    seed004(project / "artifacts")
    raw = artifactctl.show("raw/v5_5_20251123_103epochs")
    assert raw.layout == "plain" and raw.model_count == 3
    assert artifactctl.show("validated/v5_5_epoch70_validated").metrics == {"coverage": 0.99}
    assert [r.id for r in artifactctl.list_runs(stage="validated")] == ["v5_5_epoch70_validated"]
    assert artifactctl.resolve("production/v5_5_prod_v1.0").name == "v5_5_prod_v1.0"
    validated = artifactctl.promote("v5_5_20251123_103epochs", to="validated", checkpoint="epoch_70")
    assert validated.lineage["promoted_from"] == "raw/v5_5_20251123_103epochs"
    # The gates saw metrics/training_metrics.json; the artifact keeps the run's own metrics.
    assert validated.path is not None and (validated.path / "model.pt").is_file()


def test_an_unknown_ref_is_a_usage_error(project: Path) -> None:
    artifactctl.register(training_output(project / "out"), id="r1")
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.show("no_such_run")
    assert e.value.exit_code == 2
    assert e.value.kind
    assert "no_such_run" in e.value.message
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.resolve("../escape")
    assert e.value.exit_code == 2


def test_a_failed_gate_is_exit_1(project: Path) -> None:
    write(project / "artifactctl.toml", '[promote.validated]\nrequire = ["coverage > 0.95"]\n')
    raw = artifactctl.register(training_output(project / "out"), metrics={"coverage": 0.5}, id="r1")
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.promote(raw.ref, to="validated", checkpoint="epoch_70")
    assert e.value.exit_code == 1
    assert e.value.message
    assert artifactctl.list_runs(stage="validated") == []


def test_register_refuses_an_existing_id(project: Path) -> None:
    out = training_output(project / "out")
    artifactctl.register(out, id="r1")
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.register(out, id="r1")
    assert e.value.exit_code == 2
    assert "r1" in e.value.message


def test_production_without_approval_is_refused(project: Path) -> None:
    raw = artifactctl.register(training_output(project / "out"), id="r1")
    validated = artifactctl.promote(raw.ref, to="validated", checkpoint="epoch_70")
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.promote(validated.ref, to="production", version="1.0.0")
    assert e.value.exit_code in (1, 2)
    assert artifactctl.list_runs(stage="production") == []


def test_a_json_error_object_on_stdout_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the binary prints {"error": {...}} on stdout under --json, its kind
    and message are what the exception carries."""
    fake = write(
        tmp_path / "fake-artifactctl",
        "#!/bin/sh\n"
        'echo \'{"schema_version": 1, "error": {"kind": "not_found", "message": "no run <x> here", "exit_code": 2}}\'\n'
        "echo 'error: plain text' >&2\n"
        "exit 2\n",
    )
    fake.chmod(0o755)
    monkeypatch.setenv("ARTIFACTCTL_BIN", str(fake))
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.show("x")
    assert (e.value.exit_code, e.value.kind, e.value.message) == (2, "not_found", "no run <x> here")


def test_a_missing_binary_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACTCTL_BIN", str(tmp_path / "nope"))
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.list_runs()
    assert "pip install artifactctl" in e.value.message
    monkeypatch.delenv("ARTIFACTCTL_BIN")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ArtifactctlError) as e:
        artifactctl.list_runs()
    assert "not found" in e.value.message and "ARTIFACTCTL_BIN" in e.value.message


def test_run_has_the_fields_of_json_md(project: Path) -> None:
    """Every field docs/json.md lists for list and show is on Run."""
    doc = (Path(__file__).resolve().parents[2] / "docs/json.md").read_text()
    block = doc.split("## `list --json`", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    listed = json.loads(block)["runs"][0]
    fields = set(Run.__dataclass_fields__)
    assert set(listed) - {"ref"} <= fields and "ref" in fields
    assert {"path", "files", "features", "lineage", "config", "producer", "extra"} <= fields

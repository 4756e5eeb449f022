"""The seed 004 example of docs/python.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, training_output, write


def test_seed004_usage_in_docs_python_md_runs(project: Path) -> None:
    text = (REPO / "docs/python.md").read_text()
    section = text.split("## Seed 004's usage, with artifactctl", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one python block in the seed 004 section"
    training_output(project / "sandbox-training/checkpoints/v5_5")
    write(
        project / "artifactctl.toml",
        '[promote.validated]\nrequire = ["coverage > 0.95", "generalization.passed == true"]\n',
    )
    exec(compile(blocks[0], "docs/python.md", "exec"), {"__name__": "docs_example"})
    assert (project / "artifacts/production/1.0.0/deployment").is_dir()

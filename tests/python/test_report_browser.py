"""`artifactctl report` in a real browser (issue 16): headless Chromium
renders the page of a small store, takes a screenshot and dumps the DOM. The
page must log nothing to the console, hold one SVG point per version, show
hostile run ids and metric names as text, and sort its table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import artifactctl

from conftest import training_output, write

HOSTILE_IDS = [
    "<script>document.title='pwned'<!--",
    "<img src=x onerror=document.body.setAttribute('data-pwned',1)>",
]
QUOTED_METRIC = "we\"ird' <b>metric"


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return str(shutil.which(name))
    reason = "chromium is not installed: apt-get install -y chromium (.ci/run does this)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser test", pytrace=False)
    pytest.skip(reason)
    raise AssertionError("unreachable")


def render(page: Path, out: Path) -> Tuple[str, str, Path]:
    """(DOM after scripts ran, Chromium's stderr, screenshot) of `page`."""
    shot = out / "report.png"
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={out / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--log-level=0",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout, proc.stderr, shot


class Page(HTMLParser):
    """Counts what the tests look at in the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.figure: Optional[str] = None
        self.points: Dict[str, List[str]] = {}
        self.scripts = 0
        self.imgs = 0
        self.body: Dict[str, Optional[str]] = {}
        self.title = ""
        self.in_title = False
        self.rows: List[str] = []
        self.in_tbody = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        if tag == "figure" and a.get("class") == "metric":
            self.figure = a.get("data-metric")
            self.points.setdefault(self.figure or "", [])
        elif tag == "circle" and self.figure is not None and "pt" in (a.get("class") or "").split():
            self.points[self.figure].append(a.get("data-ref") or "")
        elif tag == "script":
            self.scripts += 1
        elif tag == "img":
            self.imgs += 1
        elif tag == "body":
            self.body = a
        elif tag == "title" and not self.title:
            self.in_title = True
        elif tag == "tbody":
            self.in_tbody = True
        elif tag == "tr" and self.in_tbody:
            self.rows.append(a.get("data-ref") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.figure = None
        elif tag == "title":
            self.in_title = False
        elif tag == "tbody":
            self.in_tbody = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data


def small_store(project: Path) -> Dict[str, float]:
    """Four raw runs, a validated artifact and two releases, two hostile
    legacy folders; returns each version's `loss`."""
    losses: Dict[str, float] = {}
    out = training_output(project / "out")
    for i, loss in enumerate([0.9, 0.5, 0.7, 0.6]):
        run = artifactctl.register(out, id=f"r{i}", metrics={"loss": loss, "coverage": 0.99})
        losses[run.ref] = loss
    validated = artifactctl.promote("r1", to="validated", checkpoint="epoch_70")
    losses[validated.ref] = 0.5
    for version in ["1.0.0", "1.1.0"]:
        release = artifactctl.promote(validated.ref, to="production", version=version, approve=True)
        losses[release.ref] = 0.5
    for k, hostile in enumerate(HOSTILE_IDS):
        run = project / "artifacts/raw" / hostile
        write(run / "model.pt", b"w")
        write(
            run / "metadata.json",
            f'{{"created_at": "2020-01-0{k + 1}T00:00:00", "metrics": {{"loss": 0.{k + 2}, "we\\"ird\' <b>metric": 1.5}}}}',
        )
        losses[hostile] = float(f"0.{k + 2}")
    return losses


def test_the_report_renders_in_chromium(project: Path, tmp_path: Path) -> None:
    losses = small_store(project)
    bin_path = os.environ["ARTIFACTCTL_BIN"]
    subprocess.run([bin_path, "report", "-o", "report.html"], check=True, capture_output=True)
    page = (project / "report.html").read_text(encoding="utf-8")
    # A probe appended to a copy: sort by loss, as a click on its header would.
    probe = (
        "<script>(function(){var ths=document.querySelectorAll('#runs th');"
        "for(var i=0;i<ths.length;i++){if(ths[i].textContent==='loss'){ths[i].click();}}"
        "var refs=[];document.querySelectorAll('#runs tbody tr').forEach(function(r){refs.push(r.getAttribute('data-ref'));});"
        "document.body.setAttribute('data-sorted',JSON.stringify(refs));})();</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")

    dom, log, shot = render(project / "report.html", tmp_path / "plain")
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], "console messages:\n" + "\n".join(console)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000, "a blank screenshot"

    parsed = Page()
    parsed.feed(dom)
    assert parsed.title.startswith("artifactctl report"), "hostile markup must not retitle the page"
    assert parsed.scripts == 1, "the page's own sorting script only"
    assert parsed.imgs == 0
    assert "data-pwned" not in parsed.body
    assert sorted(parsed.points["loss"]) == sorted(losses), "one point per version"
    assert len(parsed.points[QUOTED_METRIC]) == len(HOSTILE_IDS)
    assert len(parsed.rows) == len(losses)
    for hostile in HOSTILE_IDS:
        assert hostile in parsed.rows, f"{hostile} is a row, as text"

    dom, log, _ = render(probed, tmp_path / "probed")
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], "console messages:\n" + "\n".join(console)
    parsed = Page()
    parsed.feed(dom)
    order = json.loads(parsed.body["data-sorted"] or "[]")
    assert [losses[r] for r in order] == sorted(losses.values()), "ascending by loss"

"""report.html rendered by headless Chromium: loads without errors, figures equal the manifest.

Oracles: Debian's chromium (the rendered DOM after the inline script ran, and a
screenshot), Python's html.parser over that DOM, and the manifest/acquisition members.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from collections import Counter
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian package chromium)")


class _Dom(HTMLParser):
    """Text by element id, and attributes of every element."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._open: list[str | None] = []
        self.visible_rows = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag in ("br", "input", "meta", "option"):
            return
        self._open.append(a.get("id"))
        if a.get("id"):
            self.text.setdefault(a["id"], "")

    def handle_endtag(self, tag):
        if tag in ("br", "input", "meta", "option"):
            return
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.text[ident] += data


def _render(chromium: str, page, fragment: str = "") -> _Dom:
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            f"file://{page}{fragment}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dom = _Dom()
    dom.feed(proc.stdout)
    return dom


@pytest.fixture(scope="module")
def collected(unpacked, tmp_path_factory):
    image = unpacked("gpt-ntfs.raw")
    out = tmp_path_factory.mktemp("report") / "gpt.zip"
    result = CliRunner().invoke(
        app, ["collect", str(image), "-o", str(out), "--quiet", "--rule", "triage"]
    )
    assert result.exit_code == 0, result.output
    page = out.parent / "report.html"
    with zipfile.ZipFile(out) as zf:
        page.write_bytes(zf.read("report.html"))
        records = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
        acq = json.loads(zf.read("acquisition.json"))
    return out, page, records, acq


def test_report_renders_with_the_manifest_figures(collected):
    chromium = _chromium()
    _, page, records, acq = collected
    text = page.read_text()
    assert "<script src" not in text and "http://" not in text and "https://" not in text
    dom = _render(chromium, page)
    body = next(a for tag, a in dom.elements if tag == "body")
    assert body.get("data-ready") == "1", "the inline script did not finish"
    assert dom.text["js-errors"].strip() == ""
    outcomes = Counter(r["outcome"] for r in records)
    assert int(dom.text["count-items"]) == len(records)
    for outcome in ("collected", "duplicate", "partial", "failed", "skipped"):
        assert int(dom.text[f"count-{outcome}"]) == outcomes.get(outcome, 0)
        assert int(dom.text[f"count-{outcome}"]) == acq["counts"][outcome]
    rules = Counter(rule for r in records for rule in r["rules"])
    shown = {a["data-rule"]: a for tag, a in dom.elements if a.get("data-rule")}
    assert set(shown) == set(rules)
    for alg, value in acq["disk_hash"]["digests"].items():
        assert dom.text[f"disk-{alg}"] == value
    assert dom.text["shown"] == f"{len(records)} of {len(records)} items shown"
    vols = [a["data-volume"] for tag, a in dom.elements if tag == "tr" and a.get("data-volume")]
    assert vols == [v["label"] for v in acq["volumes"]]
    assert "SEAL.json" in dom.text["seal"]


def test_report_filter_from_the_fragment(collected):
    chromium = _chromium()
    _, page, records, _ = collected
    dom = _render(chromium, page, "#outcome=duplicate")
    n = sum(1 for r in records if r["outcome"] == "duplicate")
    assert dom.text["shown"] == f"{n} of {len(records)} items shown"
    dom = _render(chromium, page, "#q=system32/config/SAM")
    n = sum(
        1 for r in records if "system32/config/sam" in f"{r['volume_label']}/{r['path']}".lower()
    )
    assert n > 0
    assert dom.text["shown"] == f"{n} of {len(records)} items shown"


def test_report_screenshot_and_export(collected, tmp_path):
    chromium = _chromium()
    out, _, records, _ = collected
    dest = tmp_path / "export"
    result = CliRunner().invoke(app, ["show", str(out), "--export", str(dest)])
    assert result.exit_code == 0, result.output
    page = dest / "report.html"
    dom = _render(chromium, page)
    assert dom.text["js-errors"].strip() == ""
    assert int(dom.text["count-items"]) == len(records)
    with zipfile.ZipFile(out) as zf:
        sealed = json.loads(zf.read("SEAL.json"))["members"]
        others = [n for n in zf.namelist() if n != "SEAL.json"]
    assert sorted(sealed) == sorted(others)
    assert f"listing {len(sealed)} member(s), exactly the other members" in dom.text["seal"]
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            f"file://{page}",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")

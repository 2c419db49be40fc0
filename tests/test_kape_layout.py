"""``extract --layout kape`` writes KAPE's target output, and dissect.target opens it.

Oracles: dissect.target (AGPL-3.0; installed with pip into its own virtual environment
in the pytest cache, run as a separate program, never imported), the fixture builder's
registry values (fixtures/build_disks.py: ComputerName FIXTURE-PC, the ProfileList of
alice and bob), and the manifest's hashes (themselves checked against icat elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app


@pytest.fixture(scope="session")
def dissect_bin(request, tmp_path_factory) -> Path:
    cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    venv = Path(cache.mkdir("dissect-target-venv")) if cache else tmp_path_factory.mktemp("dissect")
    tool = venv / "bin" / "target-info"
    if not tool.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True
            )
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "dissect.target"],
                check=True,
                capture_output=True,
                timeout=600,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"cannot install dissect.target into its own venv (offline?): {exc}")
    return venv / "bin"


@pytest.fixture(scope="module")
def kape_folder(unpacked, tmp_path_factory):
    image = unpacked("gpt-ntfs.raw")
    work = tmp_path_factory.mktemp("kape")
    out = work / "gpt.zip"
    result = CliRunner().invoke(
        app, ["collect", str(image), "-o", str(out), "--quiet", "--rule", "triage"]
    )
    assert result.exit_code == 0, result.output
    dest = work / "kape"
    result = CliRunner().invoke(app, ["extract", str(out), str(dest), "--layout", "kape"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        records = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
    return dest, records


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kape_layout_paths(kape_folder):
    dest, records = kape_folder
    assert sorted(p.name for p in dest.iterdir()) == ["C"]
    by_key = {(r["path"], r["stream"]): r for r in records}
    system = by_key[("Windows/System32/config/SYSTEM", "")]
    assert (
        _sha(dest / "C" / "Windows" / "System32" / "config" / "SYSTEM")
        == system["hashes"]["sha256"]
    )
    j = by_key[("$Extend/$UsnJrnl", "$J")]
    restored = dest / "C" / "$Extend" / "$J"
    assert restored.stat().st_size == j["size"]
    assert _sha(restored) == j["hashes"]["sha256"]  # the logical file, holes included


def test_dissect_sees_the_windows_system(kape_folder, dissect_bin):
    dest, _ = kape_folder
    info = subprocess.run(
        [str(dissect_bin / "target-info"), str(dest), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    facts = json.loads(info.stdout)
    assert facts["os_family"] == "windows"
    assert facts["hostname"] == "FIXTURE-PC"
    assert "Windows 10" in facts["os_version"]
    users = subprocess.run(
        [str(dissect_bin / "target-query"), "-f", "users", "-j", str(dest)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    names = {
        r["name"]
        for r in map(json.loads, users.stdout.splitlines())
        if r.get("_type") != "recorddescriptor"
    }
    assert {"alice", "bob"} <= names

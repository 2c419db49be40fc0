"""``extract --layout kape`` writes KAPE's target output, and dissect.target opens it.

Oracles: dissect.target (AGPL-3.0; installed with pip into its own virtual environment
in the pytest cache, run as a separate program, never imported), the fixture builder's
registry values (fixtures/build_disks.py: ComputerName FIXTURE-PC, SystemRoot, the
ProfileList of alice and bob, the version values) and its events of every .evtx log
(``evtx_events`` in gpt-ntfs.truth.json, themselves checked with python-evtx in
test_fixtures_truth), and the manifest's hashes (checked against icat elsewhere).
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
    # $Secure:$SDS as KapeFiles' $SDS target saves it (SaveAsFileName: $Secure_$SDS).
    sds = by_key[("$Secure", "$SDS")]
    assert _sha(dest / "C" / "$Secure_$SDS") == sds["hashes"]["sha256"]
    assert not any(":" in p.name or "%3A" in p.name for p in (dest / "C").iterdir())


def _query(dissect_bin: Path, dest: Path, functions: str) -> list[dict]:
    done = subprocess.run(
        [str(dissect_bin / "target-query"), "-f", functions, "-j", str(dest)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return [
        r
        for r in map(json.loads, done.stdout.splitlines())
        if r.get("_type") != "recorddescriptor"
    ]


def test_dissect_sees_the_windows_system(kape_folder, dissect_bin, truth):
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
    assert facts["hostname"] == truth("gpt-ntfs")["volumes"]["3"]["hostname"]
    # ProductName (NT CurrentMajor.CurrentMinor) CurrentBuildNumber.UBR, as the builder wrote
    assert facts["os_version"] == "Windows 10 Pro (NT 10.0) 19045.3086"
    users = {r["name"]: r for r in _query(dissect_bin, dest, "users")}
    assert users["alice"]["sid"] == "S-1-5-21-1111111111-2222222222-3333333333-1001"
    assert users["bob"]["sid"] == "S-1-5-21-1111111111-2222222222-3333333333-1002"
    assert users["alice"]["home"] == "C:\\Users\\alice"


def test_dissect_reads_every_event_log(kape_folder, dissect_bin, truth):
    """``target-query -f users,evtx``: the users and every event the builder wrote."""
    import datetime as dt

    dest, _ = kape_folder
    records = _query(dissect_bin, dest, "users,evtx")
    assert {"alice", "bob"} <= {r["name"] for r in records if "sid" in r and "name" in r}
    events = [r for r in records if "EventID" in r]
    logs = truth("gpt-ntfs")["volumes"]["3"]["evtx_events"]
    want = sorted(
        (path.rsplit("/", 1)[1], e["record_id"], e["event_id"], e["provider"], e["channel"],
         e["computer"], e["message"])
        for path, evs in logs.items()
        for e in evs
    )
    got = sorted(
        (r["source"].rsplit("\\", 1)[1], int(r["EventRecordID"]), r["EventID"],
         r["Provider_Name"], r["Channel"], r["Computer"], r["Message"])
        for r in events
    )
    assert got == want
    epoch = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
    by_key = {(p.rsplit("/", 1)[1], e["record_id"]): e for p, evs in logs.items() for e in evs}
    for r in events:
        e = by_key[(r["source"].rsplit("\\", 1)[1], int(r["EventRecordID"]))]
        want_ts = epoch + dt.timedelta(microseconds=e["filetime"] // 10)
        # dissect converts the FILETIME through a float: within 2 microseconds.
        assert abs(dt.datetime.fromisoformat(r["ts"]) - want_ts) <= dt.timedelta(microseconds=2)

"""KAPE and ForensicArtifacts import: pinned mappings and the full public corpora."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from conftest import SHARED

from selective_imager.selection.globs import compile_glob
from selective_imager.selection.importers import ConversionStatus, import_paths
from selective_imager.selection.importers.kape import convert_kape_text
from selective_imager.selection.rules import (
    load_file_rules,
    load_rule_file,
    resolve,
    validate_files,
)

if TYPE_CHECKING:
    from pathlib import Path

CORPORA = SHARED / "rule-corpora"
KAPE = CORPORA / "kapefiles" / "Targets"
FA = CORPORA / "forensicartifacts" / "artifacts" / "data"

TKAPE = """\
Description: Test target
Author: tester
Version: 1.0
Id: 00000000-0000-0000-0000-000000000000
RecreateDirectories: true
Targets:
{targets}
"""


def kape_paths(tmp_path: Path, targets: str) -> list[str]:
    path = tmp_path / "Targets" / "Test.tkape"
    path.parent.mkdir(exist_ok=True)
    conversion = convert_kape_text(TKAPE.format(targets=targets), path)
    assert conversion.document is not None, conversion.reasons
    return [p for t in conversion.document["targets"] for p in t["paths"]]


def entry(path: str, **extra: object) -> str:
    lines = ["    -", "        Name: T", "        Category: C", f"        Path: {path}"]
    lines += [f"        {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # A folder Path without FileMask/Recursive: the files directly in the folder.
        (entry(r"C:\Windows\Prefetch\\"), "Windows/Prefetch/*"),
        (entry(r"C:\Windows\Prefetch"), "Windows/Prefetch/*"),
        (entry(r"C:\Windows\Prefetch\\", FileMask="'*.pf'"), "Windows/Prefetch/*.pf"),
        (entry(r"C:\Windows\System32\Tasks", Recursive="true"), "Windows/System32/Tasks/**"),
        (entry(r"C:\Logs", Recursive="true", FileMask="'*.log'"), "Logs/**/*.log"),
        (entry(r"C:\Users\%user%\NTUSER.DAT\\"), "Users/*/NTUSER.DAT/*"),
        (entry(r"C:\Users\%User%\AppData", FileMask="x.db"), "Users/*/AppData/x.db"),
        (entry(r"C:\Users\*\AppData\Local\\", FileMask="a?.txt"), "Users/*/AppData/Local/a?.txt"),
        (entry(r"C:\$Extend\\", FileMask="$UsnJrnl:$J"), "$Extend/$UsnJrnl:$J"),
        (entry("C:\\", FileMask="$MFT"), "$MFT"),
        (entry(r"C:\Windows\WDI\{*\\"), "Windows/WDI/[{]*/*"),
        (entry(r"C:\x", FileMask=r"'regex:.*\.(jpg|pdf)'"), "x/*.{jpg,pdf}"),
        (entry(r"C:\x", FileMask=r"'regex:.+\.(db)'"), "x/?*.db"),
    ],
)
def test_kape_mapping(tmp_path: Path, target: str, expected: str) -> None:
    assert kape_paths(tmp_path, target) == [expected]


def test_kape_folder_path_is_not_recursive(tmp_path: Path) -> None:
    (pattern,) = kape_paths(tmp_path, entry(r"C:\Windows\Prefetch\\"))
    glob = compile_glob(pattern, case_sensitive=False)
    assert glob.match_path("Windows/Prefetch/A.pf")
    assert not glob.match_path("Windows/Prefetch/sub/A.pf")
    assert not glob.match_path("Windows/Prefetch")


def test_kape_unconvertible_regex_and_notes(tmp_path: Path) -> None:
    path = tmp_path / "Test.tkape"
    text = TKAPE.format(
        targets=entry(r"C:\x", FileMask=r"'regex:(a|b).+\.(jpg|txt)'")
        + "\n"
        + entry(r"C:\y", FileMask="z", SaveAsFileName="renamed")
    )
    conversion = convert_kape_text(text, path)
    assert conversion.status is ConversionStatus.PARTIAL
    assert any("no exact glob equivalent" in r for r in conversion.reasons)
    assert any("SaveAsFileName" in r for r in conversion.reasons)
    assert [t["paths"] for t in conversion.document["targets"]] == [["y/z"]]


def test_kape_compound_and_missing_reference(tmp_path: Path) -> None:
    root = tmp_path / "Targets"
    (root / "Windows").mkdir(parents=True)
    (root / "Windows" / "EventLogs.tkape").write_text(
        TKAPE.format(targets=entry(r"C:\Windows\System32\winevt\Logs", FileMask="'*.evtx'"))
    )
    compound = root / "MyCompound.tkape"
    compound.write_text(
        TKAPE.format(targets=entry("EventLogs.tkape") + "\n" + entry("Missing.tkape"))
    )
    conversion = convert_kape_text(compound.read_text(), compound)
    assert conversion.document["include"] == ["kape-event-logs"]
    assert conversion.status is ConversionStatus.PARTIAL
    assert any("Missing.tkape not found" in r for r in conversion.reasons)
    # A .tkape file can be given wherever a rule can; its references come along.
    (root / "Missing.tkape").write_text(TKAPE.format(targets=entry(r"C:\m")))
    rs = resolve([str(compound)])
    assert set(rs.rules) == {"kape-my-compound", "kape-event-logs", "kape-missing"}


def test_forensic_artifacts_file(tmp_path: Path) -> None:
    fa = tmp_path / "test.yaml"
    fa.write_text(
        """\
name: TestEvtx
doc: Event logs.
sources:
- type: FILE
  attributes:
    paths: ['%%environ_systemroot%%\\System32\\winevt\\Logs\\*.evtx']
    separator: '\\'
supported_os: [Windows]
---
name: TestHistory
doc: Shell history.
sources:
- type: FILE
  attributes: {paths: ['%%users.homedir%%/.bash_history']}
supported_os: [Linux]
---
name: TestGroup
doc: Group.
sources:
- type: ARTIFACT_GROUP
  attributes: {names: [TestEvtx, TestRun]}
---
name: TestRun
doc: Registry only.
sources:
- type: REGISTRY_KEY
  attributes: {keys: ['HKEY_LOCAL_MACHINE\\Software\\Run']}
supported_os: [Windows]
"""
    )
    rules = {r.name: r for r in load_file_rules(fa)}
    assert set(rules) == {"fa-test-evtx", "fa-test-history", "fa-test-group"}
    assert rules["fa-test-evtx"].targets[0].paths == ("Windows/System32/winevt/Logs/*.evtx",)
    assert rules["fa-test-history"].targets[0].paths == (
        "home/*/.bash_history",
        "root/.bash_history",
    )
    assert rules["fa-test-group"].include == ("fa-test-evtx",)
    assert load_rule_file(f"{fa}#TestHistory").name == "fa-test-history"
    report = import_paths([fa], tmp_path / "out")
    statuses = {c.item: c.status for c in report.conversions}
    assert statuses["TestRun"] is ConversionStatus.NOT_APPLICABLE
    assert statuses["TestEvtx"] is ConversionStatus.FULL
    assert validate_files(sorted((tmp_path / "out").glob("*.yaml"))) == []


# ------------------------------------------------------------------ full corpora

needs_corpora = pytest.mark.skipif(
    not CORPORA.is_dir(),
    reason=f"{CORPORA} is absent: KAPE/ForensicArtifacts corpora not available",
)


@needs_corpora
def test_kape_corpus(tmp_path: Path) -> None:
    files = sorted(KAPE.rglob("*.tkape"))
    assert len(files) == 377
    report = import_paths([KAPE], tmp_path)
    assert len(report.conversions) == 377
    plain = [c for c in report.conversions if not c.compound]
    full = [c for c in plain if c.status is ConversionStatus.FULL]
    assert len(full) / len(plain) >= 0.95, len(full) / len(plain)
    for c in plain:
        if c.status is not ConversionStatus.FULL:
            assert c.reasons, c.item  # every non-full conversion says why
    assert all(c.document is not None for c in report.conversions if c.compound)
    written = sorted(tmp_path.glob("*.yaml"))
    assert len(written) == sum(1 for c in report.conversions if c.document is not None)
    assert validate_files(written) == []


@needs_corpora
def test_forensic_artifacts_corpus(tmp_path: Path) -> None:
    report = import_paths([FA], tmp_path)
    counts = report.counts()
    assert counts["failed"] == 0
    assert counts["full"] > 400
    written = sorted(tmp_path.glob("*.yaml"))
    assert len(written) == counts["full"] + counts["partial"]
    assert validate_files(written) == []


@needs_corpora
def test_community_files_load_directly() -> None:
    rs = resolve([str(KAPE / "Compound" / "KapeTriage.tkape")])
    assert "kape-kape-triage" in rs.requested and len(rs.rules) > 10
    rs = resolve([f"{FA / 'windows.yaml'}#WindowsEventLogs"])
    assert rs.requested == ("fa-windows-event-logs",)

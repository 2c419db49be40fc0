"""Community rules by their own names: --rule-path with KAPE and ForensicArtifacts folders.

Oracles: the builder's truth (which files of the fixture are registry hives, event
logs, prefetch...), The Sleuth Kit's listing of the same image, the KapeFiles /
ForensicArtifacts text itself (which target names exist, what a target's Description says)
and tests/kape_oracle.py, an independent reading of the .tkape entries (Path, FileMask,
Recursive) applied to ``fls -r -p``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import SHARED
from tests.oracles import fls_tree

KAPE = SHARED / "rule-corpora" / "kapefiles" / "Targets"
FA = SHARED / "rule-corpora" / "forensicartifacts" / "artifacts" / "data"
needs_corpora = pytest.mark.skipif(
    not KAPE.is_dir(), reason="../shared/data/rule-corpora is absent: community rules not available"
)
# What KapeTriage must reach on the fixture, by the builder's own labels.
TRIAGE_KINDS = {"registry-system", "registry-user", "evtx", "prefetch", "lnk", "amcache", "srum"}


def dry_run(image, *args) -> list[dict]:
    result = CliRunner().invoke(app, ["collect", str(image), "--dry-run", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["items"]


def paths(items) -> set[tuple[int, str]]:
    return {(i["volume"], i["path"] + (f":{i['stream']}" if i["stream"] else "")) for i in items}


@needs_corpora
def test_kape_target_by_name_selects_what_the_truth_says(unpacked, truth):
    image = unpacked("gpt-ntfs.raw")
    items = dry_run(image, "--rule", "KapeTriage", "--rule-path", str(KAPE))
    found = {p for v, p in paths(items) if v == 3}
    files = truth("gpt-ntfs")["volumes"]["3"]["files"]
    expected = {f["path"] for f in files if TRIAGE_KINDS & set(f["kind"])}
    assert expected and expected <= found
    # Everything selected exists on the volume according to TSK.
    tsk, _ads, _ = fls_tree(image, 20480)
    assert {p.split(":", 1)[0] for p in found} <= tsk | {"$Extend/$UsnJrnl"}


@needs_corpora
def test_converted_set_is_usable_as_it_is(unpacked, tmp_path):
    """`rules import` output used directly: includes found beside the compound."""
    image = unpacked("gpt-ntfs.raw")
    # Only KapeTriage and the targets it reaches, to keep the import small.
    from selective_imager.selection.importers.kape import kape_dependencies

    queue, needed = [(KAPE / "Compound" / "KapeTriage.tkape").resolve()], set()
    while queue:
        file = queue.pop()
        if file not in needed:
            needed.add(file)
            queue.extend(d.resolve() for d in kape_dependencies(file))
    corpus = tmp_path / "Targets"
    for file in needed:
        dest = corpus / file.resolve().relative_to(KAPE.resolve())
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(file.read_bytes())
    runner = CliRunner()
    result = runner.invoke(app, ["rules", "import", str(corpus), "-o", str(tmp_path / "conv")])
    assert result.exit_code in (0, 1), result.output
    converted = dry_run(image, "--rule", str(tmp_path / "conv" / "kape-kape-triage.yaml"))
    by_name = dry_run(image, "--rule", "KapeTriage", "--rule-path", str(corpus))
    assert paths(converted) == paths(by_name)
    # Both select exactly what an independent reading of the .tkape files selects from
    # TSK's listing of the system volume (and nothing on the other volumes).
    from tests.kape_oracle import entries, fls_files, select

    reached, skipped = entries(KAPE, "KapeTriage")
    assert len(reached) > 1000 and all("regex:" in s for s in skipped), skipped
    oracle = select(reached, fls_files(image, 20480))
    assert len(oracle) > 50
    assert paths(by_name) == {(3, p) for p in oracle}
    # A folder given as --rule is a rule path.
    as_folder = dry_run(image, "--rule", str(tmp_path / "conv"), "--rule", "kape-kape-triage")
    assert paths(as_folder) == paths(converted)


@needs_corpora
def test_forensic_artifacts_name_and_env_rule_path(unpacked, truth, monkeypatch):
    image = unpacked("gpt-ntfs.raw")
    monkeypatch.setenv("SELECTIVE_IMAGER_RULE_PATH", str(FA))
    items = dry_run(image, "--rule", "WindowsEventLogs")
    found = {p for v, p in paths(items) if v == 3}
    files = truth("gpt-ntfs")["volumes"]["3"]["files"]
    assert {f["path"] for f in files if "evtx" in f["kind"]} <= found


@needs_corpora
def test_rules_search_reads_names_and_descriptions():
    result = CliRunner().invoke(
        app, ["rules", "search", "RegistryHives", "--rule-path", str(KAPE), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    hit = next(r for r in rows if r["name"] == "RegistryHives")
    # The title is the tkape file's own Description line.
    text = (KAPE / "Compound" / "RegistryHives.tkape").read_text(encoding="utf-8-sig")
    assert f"Description: {hit['title']}" in text


def test_unknown_name_says_where_it_looked(unpacked, tmp_path):
    image = unpacked("gpt-ntfs.raw")
    folder = tmp_path / "rules"
    folder.mkdir()
    result = CliRunner().invoke(
        app, ["collect", str(image), "--dry-run", "--rule", "NoSuchTarget", "--rule-path", str(folder)]
    )
    assert result.exit_code == 2
    assert "NoSuchTarget" in result.output and "rule paths" in result.output
    assert "Traceback" not in result.output


def test_own_rule_folder_by_name(unpacked, truth, tmp_path):
    image = unpacked("gpt-ntfs.raw")
    folder = tmp_path / "team-rules"
    folder.mkdir()
    (folder / "hives.yaml").write_text(
        "name: team-hives\ntitle: SYSTEM hive only\n"
        "targets:\n  - name: system\n    paths: ['Windows/System32/config/SYSTEM']\n"
    )
    items = dry_run(image, "--rule", "team-hives", "--rule-path", str(folder))
    assert paths(items) == {(3, "Windows/System32/config/SYSTEM")}

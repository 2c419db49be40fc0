"""Three damaged MFT records in Windows/System32/config lose only themselves.

The fixture builder damages the records after building the volume (one zeroed, one
with a bad FILE signature, one with garbage attributes) and says which in the truth.
Oracles: the builder's truth (paths, MFT entries, hashes, how each record was damaged)
and The Sleuth Kit (``icat`` of every undamaged sibling, ``fls`` for the names).
"""

from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests import oracles

CONFIG = "Windows/System32/config"
# How the builder damaged a record -> words the reason must contain.
REASONS = {
    "zeroed": "all zeros",
    "bad-signature": "no FILE signature",
    "garbage-attributes": "invalid attribute",
}
RULE = "name: hives\ntitle: t\ntargets:\n  - name: t\n    paths: [{paths}]\n"


@pytest.fixture(scope="module")
def damaged(unpacked, truth):
    image = unpacked("ntfs-damaged-mft.raw")
    vol = truth("ntfs-damaged-mft")["volumes"]["0"]
    config = [f for f in vol["files"] if f["path"].rpartition("/")[0] == CONFIG]
    parent = next(d["mft_entry"] for d in vol["directory_entries"] if d["path"] == CONFIG)
    assert len(config) == 19 and sum("damage" in f for f in config) == 3
    return image, config, parent


def _collect(image, tmp_path, paths: str, strategy: str):
    rule = tmp_path / "hives.yaml"
    rule.write_text(RULE.format(paths=paths))
    out = tmp_path / f"{strategy}.zip"
    result = CliRunner().invoke(
        app,
        ["collect", str(image), "-o", str(out), "--rule", str(rule), "--strategy", strategy,
         "--disk-hash", "none", "-q"],
    )
    assert "Traceback" not in result.output
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]
        log = [json.loads(line) for line in zf.read("log.jsonl").decode().splitlines()]
        acq = json.loads(zf.read("acquisition.json"))
    return result, {i["path"]: i for i in items}, log, acq


@pytest.mark.parametrize(
    ("strategy", "paths"),
    [
        ("walk", f"'{CONFIG}/*'"),  # the directory is listed
        ("walk", f"'{CONFIG}/{{SAM,SECURITY,SOFTWARE,DEFAULT,ELAM}}'"),  # names looked up
        ("scan", f"'{CONFIG}/*'"),  # the sequential $MFT scan
    ],
)
def test_siblings_collected_damaged_recorded(damaged, tmp_path, strategy, paths):
    image, config, parent = damaged
    result, items, log, acq = _collect(image, tmp_path, paths, strategy)
    wanted = [f for f in config if "{" not in paths or f["path"].rpartition("/")[2] in paths]
    assert result.exit_code == 1, result.output
    assert acq["status"] == "partial"  # never "complete" with damaged entries
    assert acq["counts"]["collected"] == sum("damage" not in f for f in wanted)
    for f in wanted:
        if "damage" in f:
            continue
        item = items[f["path"]]
        assert item["outcome"] == "collected"
        assert item["entry"] == f["mft_entry"]
        assert item["hashes"]["sha256"] == f["sha256"]
        assert item["hashes"]["sha256"] == oracles.icat_sha256(image, 0, str(f["mft_entry"]))
    events = [e for e in log if e["event"] == "entry-damaged"]
    for f in wanted:
        if "damage" not in f:
            continue
        reason = REASONS[f["damage"]]
        if strategy == "scan":
            # The scan reads the damaged record itself: only its number is known.
            (event,) = [e for e in events if e["entry"] == f["mft_entry"]]
            assert reason in event["message"], event
            assert f["path"] not in items
            continue
        item = items[f["path"]]
        assert item["outcome"] == "failed", item
        assert item["entry"] == f["mft_entry"]
        assert item["parent_entry"] == parent
        assert f"MFT record {f['mft_entry']}" in item["error"] and reason in item["error"]
    if strategy == "scan":
        assert acq["unreadable"] == 3


def test_ls_names_every_entry_and_the_damage(damaged):
    image, config, _ = damaged
    result = CliRunner().invoke(app, ["ls", str(image), CONFIG, "--json"])
    assert result.exit_code == 1, result.output
    listed = {e["path"]: e for e in map(json.loads, result.stdout.splitlines())}
    # fls (independent) lists the same 19 names from the same index.
    paths, _, addr = oracles.fls_tree(image, 0)
    assert {p for p in paths if p.rpartition("/")[0] == CONFIG} == set(listed)
    for f in config:
        entry = listed[f["path"]]
        assert entry["entry"] == f["mft_entry"] == addr[f["path"]]
        if "damage" in f:
            assert REASONS[f["damage"]] in entry["damage"]
        else:
            assert "damage" not in entry and entry["size"] == f["size"]


def test_unlistable_directory_is_rebuilt_from_the_mft(damaged, tmp_path):
    """The config directory's own record zeroed too: its files are found through the $MFT."""
    image, config, parent = damaged
    broken = tmp_path / "dir-zeroed.raw"
    data = bytearray(image.read_bytes())
    boot = data[:512]
    cluster = int.from_bytes(boot[0x0B:0x0D], "little") * boot[0x0D]
    mft = int.from_bytes(boot[0x30:0x38], "little") * cluster
    data[mft + parent * 1024 : mft + parent * 1024 + 1024] = bytes(1024)
    broken.write_bytes(bytes(data))
    result, items, log, _ = _collect(broken, tmp_path, f"'{CONFIG}/*'", "walk")
    assert result.exit_code == 1, result.output
    for f in config:
        if "damage" in f:
            assert f["path"] not in items  # their records name no parent
            continue
        assert items[f["path"]]["outcome"] == "collected"
        assert items[f["path"]]["hashes"]["sha256"] == oracles.icat_sha256(
            broken, 0, str(f["mft_entry"])
        )
    messages = " ".join(e["message"] for e in log if e["event"] == "directory-unreadable")
    assert "found through the $MFT" in messages
    for f in config:
        if "damage" in f:
            assert str(f["mft_entry"]) in messages  # named as possibly lost

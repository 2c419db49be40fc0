"""The layers on the project's own fixtures, against the builder's truth and TSK."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.discovery import open_disk
from tests import oracles
from tests.conftest import FIXTURES


def info_json(image, *extra: str) -> dict:
    result = CliRunner().invoke(app, ["info", str(image), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ls_tree(image, volume: int, *extra: str) -> tuple[set[str], set[str]]:
    result = CliRunner().invoke(app, ["ls", str(image), "-r", "--json", "--volume", str(volume), *extra])
    assert result.exit_code == 0, result.output
    paths, ads = set(), set()
    for line in result.stdout.splitlines():
        entry = json.loads(line)
        paths.add(entry["path"])
        ads.update(f"{entry['path']}:{s['name']}" for s in entry["streams"])
    return paths, ads


@pytest.mark.parametrize("name", ["gpt-ntfs", "gpt-bitlocker"])
def test_info_layout_matches_mmls_and_truth(unpacked, truth, name):
    image = unpacked(f"{name}.raw")
    data = info_json(image)
    got = [(v["offset"] // 512, v["size"] // 512) for v in data["volumes"]]
    assert got == [(start, length) for start, length, _ in oracles.mmls(image)]
    expected = truth(name)
    want = [(p["start_sector"], p["sectors"]) for p in expected["partitions"]]
    assert got == want
    assert data["partition_table"]["scheme"] == "gpt"
    for vol, part in zip(data["volumes"], expected["partitions"], strict=True):
        assert vol["type"].upper() == part.get("type", part.get("type_guid", "")).upper()
        assert vol["guid"].upper() == part["guid"].upper()
        assert vol["name"] == part["name"]


def test_gpt_ntfs_filesystems(unpacked, truth):
    data = info_json(unpacked("gpt-ntfs.raw"))
    t = truth("gpt-ntfs")["volumes"]
    fs = {v["index"]: v["filesystem"] for v in data["volumes"]}
    assert fs[1]["type"] == t["1"]["filesystem"]
    assert fs[3]["type"] == "ntfs"
    assert fs[3]["label"] == t["3"]["label"]
    assert fs[3]["serial"] == t["3"]["serial"]
    assert fs[2] is None  # the MSR holds no file system
    assert "no supported file system" in data["volumes"][1]["error"]


def test_ls_ntfs_equals_fls_plus_ads(unpacked, truth):
    image = unpacked("gpt-ntfs.raw")
    start = truth("gpt-ntfs")["partitions"][2]["start_sector"]
    fls_paths, fls_ads, _ = oracles.fls_tree(image, start)
    paths, ads = ls_tree(image, 3)
    assert paths == fls_paths
    assert ads == fls_ads
    # Every ADS the builder wrote, on files and directories, is listed.
    vol = truth("gpt-ntfs")["volumes"]["3"]
    written = {f"{f['path']}:{a['name']}" for f in vol["files"] for a in f.get("ads", [])}
    written |= {f"{d['path']}:{d['name']}" for d in vol["directory_ads"]}
    assert written <= ads
    assert {f["path"] for f in vol["files"]} <= paths


def test_ls_fat_equals_fls(unpacked, truth):
    image = unpacked("gpt-ntfs.raw")
    start = truth("gpt-ntfs")["partitions"][0]["start_sector"]
    fls_paths, _, _ = oracles.fls_tree(image, start)
    paths, _ = ls_tree(image, 1)
    # TSK lists its virtual files ($MBR, $FAT1...) too; they are TSK's, and so ours.
    assert paths == fls_paths
    assert {f["path"] for f in truth("gpt-ntfs")["volumes"]["1"]["files"]} <= paths


def test_ntfs_entries_against_truth(unpacked, truth):
    image = unpacked("gpt-ntfs.raw")
    vol_truth = truth("gpt-ntfs")["volumes"]["3"]
    with open_disk(image) as disk:
        fs = disk.volume(3).filesystem
        assert fs is not None
        for f in vol_truth["files"]:
            entry = fs.lookup(f["path"])
            assert entry.path == f["path"]
            assert entry.size == f["size"]
            assert entry.entry == f["mft_entry"]
            assert entry.si is not None and entry.si.created is not None
            assert entry.si.created.isoformat() == f["times"]["created"]
            assert entry.si.modified is not None
            assert entry.si.modified.isoformat() == f["times"]["modified"]


def test_ls_case_insensitive_path(unpacked):
    image = unpacked("gpt-ntfs.raw")
    result = CliRunner().invoke(app, ["ls", str(image), "windows/SYSTEM32/Config", "--volume", "3"])
    assert result.exit_code == 0, result.output
    assert "Windows/System32/config/SYSTEM" in result.stdout


def test_ls_needs_volume_when_ambiguous(unpacked):
    result = CliRunner().invoke(app, ["ls", str(unpacked("gpt-ntfs.raw"))])
    assert result.exit_code == 2
    assert "--volume" in result.output


def test_bitlocker_fixture_states(unpacked, truth):
    image = unpacked("gpt-bitlocker.raw")
    pw = str(FIXTURES / "gpt-bitlocker.password.txt")
    rp = str(FIXTURES / "gpt-bitlocker.recovery.txt")
    for extra, state, via in (
        (["--password-file", pw], "unlocked", "password"),
        (["--recovery-password-file", rp], "unlocked", "recovery_password"),
        ([], "locked", None),
    ):
        data = info_json(image, *extra)
        vol = data["volumes"][1]
        enc = vol["encryption"]
        assert enc["type"] == "bitlocker"
        assert enc["state"] == state
        assert enc["method"] == "AES-XTS 128"
        assert set(enc["protectors"]) == {"password", "recovery_password"}
        assert enc["volume_guid"].lower() == truth("gpt-bitlocker")["bitlocker"]["volume_guid"].lower()
        if via:
            assert enc["unlocked_with"] == via
            assert vol["filesystem"]["type"] == "ntfs"
            assert vol["error"] is None
        else:
            assert vol["filesystem"] is None
            assert "locked" in vol["error"]


def test_bitlocker_fixture_lists_plain_volume_tree(unpacked, truth):
    """Browsing through BitLocker lists what fls lists on the plain volume it came from."""
    image = unpacked("gpt-bitlocker.raw")
    plain = unpacked("gpt-bitlocker.plain-volume.raw")
    fls_paths, fls_ads, _ = oracles.fls_tree(plain, 0)
    paths, ads = ls_tree(image, 2, "--password-file", str(FIXTURES / "gpt-bitlocker.password.txt"))
    assert paths == fls_paths
    assert ads == fls_ads

"""E01, MBR with logical partitions, unpartitioned and ISO fixtures; damaged inputs."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.sources import open_source
from tests import oracles
from tests.conftest import FIXTURES
from tests.test_source import sha256_stream


def info_json(image, *extra: str) -> dict:
    result = CliRunner().invoke(app, ["info", str(image), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_e01_source_facts(truth):
    t = truth("gpt-ntfs-e01")
    with open_source(FIXTURES / "gpt-ntfs.E01") as src:
        assert src.info.format == "ewf"
        assert src.info.size == t["size"]
        assert len(src.info.segments) == len(t["segments"]) >= 2
        for key, value in t["headers"].items():
            assert src.info.details[f"header.{key}"] == value
        assert src.info.details["stored_hash.md5"] == t["md5"]
        assert sha256_stream(src.stream) == t["sha256"]


def test_e01_layout_equals_raw_and_mmls(unpacked):
    e01 = info_json(FIXTURES / "gpt-ntfs.E01")
    raw_image = unpacked("gpt-ntfs.raw")
    raw = info_json(raw_image)
    assert [(v["offset"], v["size"], v["type"]) for v in e01["volumes"]] == [
        (v["offset"], v["size"], v["type"]) for v in raw["volumes"]
    ]
    assert [(v["offset"] // 512, v["size"] // 512) for v in e01["volumes"]] == [
        (s, n) for s, n, _ in oracles.mmls(raw_image)
    ]


def test_e01_hash_equals_stored_md5(truth):
    result = CliRunner().invoke(app, ["hash", str(FIXTURES / "gpt-ntfs.E01"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["digests"]["md5"] == data["stored_hashes"]["md5"] == truth("gpt-ntfs-e01")["md5"]
    assert data["stored_hash_mismatch"] == []


def test_hash_pieces_are_opt_in_and_equal_hashlib(unpacked):
    """No pieces by default; --piece-size gives a SHA-256 per slice, checked with hashlib."""
    import hashlib

    image = unpacked("gpt-ntfs.raw")
    plain = json.loads(CliRunner().invoke(app, ["hash", str(image), "--json", "-q"]).stdout)
    assert plain["pieces"] == []
    result = CliRunner().invoke(app, ["hash", str(image), "--json", "-q", "--piece-size", "24MiB"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    raw = image.read_bytes()
    step = 24 << 20
    assert [(p["offset"], p["length"], p["sha256"]) for p in data["pieces"]] == [
        (o, len(raw[o : o + step]), hashlib.sha256(raw[o : o + step]).hexdigest())
        for o in range(0, len(raw), step)
    ]
    assert data["digests"] == plain["digests"]


def test_e01_missing_segment_is_one_line_exit_2(tmp_path):
    shutil.copy(FIXTURES / "gpt-ntfs.E01", tmp_path / "x.E01")
    result = CliRunner().invoke(app, ["info", str(tmp_path / "x.E01")])
    assert result.exit_code == 2
    assert "x.E01" in result.output
    assert "segment" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_mbr_extended_layout(unpacked, truth):
    image = unpacked("mbr-extended.raw")
    data = info_json(image)
    t = truth("mbr-extended")
    usable = [p for p in t["partitions"] if not p.get("extended")]
    assert data["partition_table"]["scheme"] == "mbr"
    assert [(v["offset"] // 512, v["size"] // 512) for v in data["volumes"]] == [
        (p["start_sector"], p["sectors"]) for p in usable
    ]
    # mmls also lists the extended containers as Meta; the allocated slots match ours.
    mm = [(s, n) for s, n, d in oracles.mmls(image) if "Extended" not in d]
    assert [(v["offset"] // 512, v["size"] // 512) for v in data["volumes"]] == mm
    for vol, part in zip(data["volumes"], usable, strict=True):
        assert vol["type"] == f"0x{part['type']:02x}"
        assert ("logical" in vol["flags"]) == part["logical"]
        fs = vol["filesystem"]
        assert fs is not None and fs["type"] == part["filesystem"]


def test_mbr_ext4_listing_equals_fls(unpacked, truth):
    image = unpacked("mbr-extended.raw")
    part = next(p for p in truth("mbr-extended")["partitions"] if p["filesystem"] == "ext4")
    fls_paths, _, _ = oracles.fls_tree(image, part["start_sector"])
    result = CliRunner().invoke(app, ["ls", str(image), "-r", "--json", "--volume", "2"])
    assert result.exit_code == 0, result.output
    paths = {json.loads(line)["path"] for line in result.stdout.splitlines()}
    assert paths == fls_paths


def test_linux_rules_on_ext4(unpacked, truth, tmp_path):
    image = unpacked("mbr-extended.raw")
    result = CliRunner().invoke(
        app, ["collect", str(image), "--dry-run", "--json", "--volume", "2", "--rule", "triage"]
    )
    assert result.exit_code == 0, result.output
    got = {i["path"] for i in json.loads(result.stdout)["items"]}
    vol = next(v for k, v in truth("mbr-extended")["volumes"].items() if v["filesystem"] == "ext4")
    wanted = {f["path"] for f in vol["files"] if set(f.get("kind", [])) - {"other"}}
    assert wanted and wanted <= got, sorted(wanted - got)


def test_unpartitioned_ntfs(unpacked, truth):
    data = info_json(unpacked("ntfs-noparts.raw"))
    assert data["partition_table"] is None
    (vol,) = data["volumes"]
    assert vol["index"] == 0 and vol["offset"] == 0
    assert vol["filesystem"]["type"] == "ntfs"


def test_iso9660(unpacked):
    data = info_json(unpacked("iso9660.iso"))
    assert any(v["filesystem"] and v["filesystem"]["type"] == "iso9660" for v in data["volumes"])


def test_truncated_image_reports_partition_and_lists_others(unpacked, tmp_path):
    cut = tmp_path / "cut.raw"
    with open(unpacked("mbr-extended.raw"), "rb") as fin:
        cut.write_bytes(fin.read(40000 * 512))
    data = info_json(cut)
    errors = {v["index"]: v["error"] for v in data["volumes"]}
    assert data["volumes"][0]["filesystem"]["type"] == "fat16"
    # mmls (independent) says where the cut partition ends; the message says how far.
    cut_parts = [
        (start, length)
        for start, length, desc in oracles.mmls(unpacked("mbr-extended.raw"))
        if start <= 40000 < start + length and "0x07" in desc
    ]
    ((start, length),) = cut_parts
    beyond = f"{(start + length - 40000) * 512 / (1 << 20):.1f} MiB after the end of the image"
    assert any(e and "image truncated" in e and beyond in e for e in errors.values()), errors
    assert data["partition_table"]["problems"]


@pytest.mark.parametrize("offset", [510, 446 + 8])
def test_damaged_table_does_not_traceback(unpacked, tmp_path, offset):
    bad = tmp_path / "bad.raw"
    data = bytearray(open(unpacked("mbr-extended.raw"), "rb").read(4 << 20))
    data[offset : offset + 4] = b"\xff\xff\xff\x7f"
    bad.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["info", str(bad)])
    assert result.exit_code in (0, 2)
    assert "Traceback" not in result.output


def test_exfat_volume(unpacked, truth):
    image = unpacked("exfat.raw")
    t = truth("exfat")
    data = info_json(image)
    (vol,) = data["volumes"]
    assert vol["filesystem"]["type"] == "exfat"
    assert vol["filesystem"]["label"] == t["label"]
    fls_paths, _, _ = oracles.fls_tree(image, 0)
    result = CliRunner().invoke(app, ["ls", str(image), "-r", "--json"])
    assert result.exit_code == 0, result.output
    entries = {json.loads(x)["path"]: json.loads(x) for x in result.stdout.splitlines()}
    assert set(entries) == fls_paths
    for f in t["files"]:
        assert entries[f["path"]]["size"] == f["size"]


def test_exfat_collect_hashes_equal_truth(unpacked, truth, tmp_path):
    import zipfile

    rule = tmp_path / "all.yaml"
    rule.write_text("name: all-files\ntitle: t\ntargets:\n  - name: every file\n    paths: ['**']\n")
    out = tmp_path / "ex.zip"
    result = CliRunner().invoke(
        app, ["collect", str(unpacked("exfat.raw")), "-o", str(out), "--rule", str(rule), "--quiet", "--json"]
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
    got = {i["path"]: i["hashes"]["sha256"] for i in items if not i["path"].startswith("$")}
    assert got == {f["path"]: f["sha256"] for f in truth("exfat")["files"]}


def test_block_device_source(unpacked):
    """A read-only loop device of a fixture: size by ioctl, same layout as the file."""
    import subprocess

    losetup = shutil.which("losetup")
    if losetup is None:
        pytest.skip("losetup not available")
    image = unpacked("gpt-ntfs.raw")
    attach = subprocess.run([losetup, "-r", "-f", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"cannot attach a loop device here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        with open_source(device) as src:
            assert src.info.format == "device"
            assert src.info.is_device
            assert src.info.size == image.stat().st_size
            assert src.info.sector_size == 512
        assert [(v["offset"], v["size"]) for v in info_json(device)["volumes"]] == [
            (v["offset"], v["size"]) for v in info_json(image)["volumes"]
        ]
        import zipfile

        out = image.parent / "from-device.zip"
        out.unlink(missing_ok=True)
        result = CliRunner().invoke(
            app, ["collect", device, "-o", str(out), "--rule", "registry-and-mft", "--quiet", "--json"]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["disk_hash"]["digests"]["md5"] == oracles.file_digest(image, "md5sum")
        with zipfile.ZipFile(out) as zf:
            acq = json.loads(zf.read("acquisition.json"))
        assert acq["source"]["is_device"] is True
        assert acq["live_source"]["changed_during_read"] is False
        # A live device is streamed (no pre-count): metadata read right before content.
        from selective_imager.collect.collector import CollectOptions, collect
        from selective_imager.discovery import open_disk
        from selective_imager.selection.rules import resolve
        from tests.conftest import PhaseRecorder

        recorder = PhaseRecorder()
        out.unlink()
        with open_disk(device) as disk:
            collect(disk, resolve(["registry-and-mft"]), out, CollectOptions(disk_hash=()), recorder)
        assert ("collect p3", None, None) in recorder.phases
    finally:
        subprocess.run([losetup, "-d", device], check=False)


def test_overlapping_partitions_reported_and_others_listed(unpacked, tmp_path):
    import struct

    bad = tmp_path / "overlap.raw"
    shutil.copy(unpacked("mbr-extended.raw"), bad)
    with open(bad, "r+b") as fh:
        mbr = bytearray(fh.read(512))
        start1 = struct.unpack_from("<I", mbr, 446 + 8)[0]
        struct.pack_into("<I", mbr, 446 + 16 + 8, start1 + 1000)  # partition 2 inside 1
        fh.seek(0)
        fh.write(mbr)
    data = info_json(bad)
    assert any("overlap" in p for p in data["partition_table"]["problems"])
    errors = {v["index"]: v["error"] or "" for v in data["volumes"]}
    assert "overlap" in errors[1] and "overlap" in errors[2]
    assert {v["filesystem"]["type"] for v in data["volumes"] if v["filesystem"]} >= {"fat16", "ntfs", "fat32"}

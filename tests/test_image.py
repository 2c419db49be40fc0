"""``image``: E01 and raw images written during the hash pass.

Oracles: ``ewfverify`` (MD5 recomputed by libewf), ``ewfinfo`` (header values, digests,
acquiry errors), ``ewfexport`` piped to hashlib (libewf's read-back), pyewf, coreutils
``sha256sum``/``md5sum`` of the source, the BitLocker fixture's plain twin and its
builder's truth.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import FIXTURES, need_tool
from tests.test_ewf_reader import VARIANTS, _damage, ewfacquire, ewfverify_bad_sectors

HEADER = {
    "--case": "CASE-13",
    "--evidence": "EV-0042",
    "--examiner": "Ann Examiner",
    "--description": "lab disk",
    "--notes": "seized 2026-12-01",
}
EWFINFO_LABELS = {
    "--case": "Case number",
    "--evidence": "Evidence number",
    "--examiner": "Examiner name",
    "--description": "Description",
    "--notes": "Notes",
}


def coreutils(tool: str, path: Path) -> str:
    return subprocess.run(
        [tool, str(path)], check=True, capture_output=True, text=True
    ).stdout.split()[0]


def run_image(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["image", *args, "-q", "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def ewfinfo(first: Path) -> str:
    return subprocess.run(
        [need_tool("ewfinfo"), str(first)], check=True, capture_output=True, text=True
    ).stdout


def ewfexport_sha256(first: Path, size: int) -> str:
    """sha256 of what libewf exports to stdout (it appends its status line after the media)."""
    run = subprocess.run(
        [need_tool("ewfexport"), "-u", "-q", "-t", "-", "-f", "raw", str(first)],
        check=True,
        capture_output=True,
    )
    assert run.stdout[size:].strip().endswith(b"SUCCESS")
    return hashlib.sha256(run.stdout[:size]).hexdigest()


def pyewf_sha256(first: Path) -> str:
    import pyewf

    handle = pyewf.handle()
    handle.open(pyewf.glob(str(first)))
    h = hashlib.sha256()
    size = handle.get_media_size()
    for offset in range(0, size, 4 << 20):
        h.update(handle.read_buffer_at_offset(min(4 << 20, size - offset), offset))
    handle.close()
    return h.hexdigest()


def check_e01(first: Path, source: Path, size: int) -> None:
    """ewfverify passes with the source's MD5; libewf and pyewf read back the source."""
    verify = subprocess.run(
        [need_tool("ewfverify"), "-q", "-d", "sha1", str(first)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    md5 = coreutils("md5sum", source)
    assert re.search(rf"MD5 hash stored in file:\s+{md5}", verify.stdout)
    assert re.search(rf"MD5 hash calculated over data:\s+{md5}", verify.stdout)
    sha256 = coreutils("sha256sum", source)
    assert ewfexport_sha256(first, size) == sha256
    assert pyewf_sha256(first) == sha256


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("fast-32k", []),
        ("best-1m", ["--compression", "best", "--chunk-size", "1MiB"]),
        ("none-64k-segments", ["--compression", "none", "--chunk-size", "64KiB", "--segment-size", "6MiB"]),
        ("empty-block-16k", ["--compression", "empty-block", "--chunk-size", "16KiB", "--segment-size", "1MiB"]),
    ],
)  # fmt: skip
def test_e01_image_of_a_disk(name, args, unpacked, tmp_path):
    disk = unpacked("gpt-ntfs.raw")
    first = tmp_path / f"{name}.E01"
    header = [x for pair in HEADER.items() for x in pair]
    code, record = run_image(str(disk), "-o", str(first), *args, *header)
    assert code == 0
    size = disk.stat().st_size
    check_e01(first, disk, size)
    assert record["digests"]["md5"] == coreutils("md5sum", disk)
    assert record["digests"]["sha1"] == coreutils("sha1sum", disk)
    assert len(record["files"]) == len(list(tmp_path.glob(f"{name}.E[0-9A-Z][0-9A-Z]")))
    if "--segment-size" in args:
        assert len(record["files"]) >= 3
        limit = int(args[args.index("--segment-size") + 1].removesuffix("MiB")) << 20
        assert all(Path(f).stat().st_size <= limit for f in record["files"])
    info = ewfinfo(first)
    for option, label in EWFINFO_LABELS.items():
        shown = re.search(rf"^\s*{label}:\s*(.*)$", info, re.M)
        assert shown is not None and shown.group(1).strip() == HEADER[option]
    assert re.search(rf"^\s*MD5:\s*{record['digests']['md5']}$", info, re.M)
    assert re.search(rf"^\s*SHA1:\s*{record['digests']['sha1']}$", info, re.M)
    chunk = {"best-1m": 2048, "none-64k-segments": 128, "empty-block-16k": 32}.get(name, 64)
    assert re.search(rf"Sectors per chunk:\s*{chunk}$", info, re.M)
    written = json.loads((tmp_path / f"{name}.E01.json").read_text())
    assert written["digests"] == record["digests"]


def test_empty_blocks_cost_almost_nothing(tmp_path):
    """A 32 MiB all-zero source makes an E01 of a few KiB (ewfverify: the zeros' MD5)."""
    zeros = tmp_path / "zeros.raw"
    with open(zeros, "wb") as f:
        f.truncate(32 << 20)
    first = tmp_path / "z.E01"
    code, record = run_image(str(zeros), "-o", str(first), "--compression", "empty-block")
    assert code == 0
    assert first.stat().st_size < 300 << 10
    assert record["pattern_chunks"] == record["chunks"] == 1024
    check_e01(first, zeros, 32 << 20)


def test_sparse_raw_image(unpacked, tmp_path):
    disk = unpacked("gpt-ntfs.raw")
    out = tmp_path / "disk.raw"
    code, record = run_image(str(disk), "-o", str(out), "--piece-size", "16MiB")
    assert code == 0 and record["format"] == "raw"
    assert coreutils("sha256sum", out) == coreutils("sha256sum", disk)
    assert out.stat().st_blocks * 512 < disk.stat().st_size // 2
    data = disk.read_bytes()
    pieces = [
        hashlib.sha256(data[o : o + (16 << 20)]).hexdigest() for o in range(0, len(data), 16 << 20)
    ]
    assert [p["sha256"] for p in record["pieces"]] == pieces


def test_unreadable_sectors_go_to_error2(media, tmp_path, monkeypatch):
    """Imaging an E01 with a damaged chunk: the new image's error2 lists that chunk's sectors."""
    from tests.test_ewf_reader import BACKEND_ENV

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    (tmp_path / "src").mkdir()
    source = ewfacquire(media, tmp_path / "src" / "img", VARIANTS["fast-32k-segments"])
    damaged = _damage(source, tmp_path / "damaged", compressed=True)
    (bad,) = ewfverify_bad_sectors(damaged)
    first = tmp_path / "copy.E01"
    code, record = run_image(str(damaged), "-o", str(first))
    assert code == 1  # partial: unreadable sectors
    assert [
        (u["first_sector"], u["first_sector"] + u["sectors"] - 1) for u in record["unreadable"]
    ] == [bad]
    info = ewfinfo(first)
    assert re.search(rf"at sector\(s\): {bad[0]} - {bad[1]} number: {bad[1] - bad[0] + 1}", info)
    verify = subprocess.run(
        [need_tool("ewfverify"), "-q", str(first)], capture_output=True, text=True
    )
    assert verify.returncode == 0  # the zero-filled sectors are the imaged data


def test_decrypted_bitlocker_volume_equals_the_plain_volume(unpacked, truth, tmp_path):
    facts = truth("gpt-bitlocker")
    disk = unpacked("gpt-bitlocker.raw")
    plain = unpacked("gpt-bitlocker.plain-volume.raw")
    first = tmp_path / "vol.E01"
    index = facts["bitlocker"]["partition_index"]
    code, record = run_image(
        str(disk), "--volume", str(index), "--decrypted", "-o", str(first),
        "--password-file", str(FIXTURES / "gpt-bitlocker.password.txt"),
    )  # fmt: skip
    assert code == 0
    size = facts["plain_volume"]["size"]
    check_e01(first, plain, size)
    assert ewfexport_sha256(first, size) == facts["plain_volume"]["sha256"]
    enc = record["source"]["encrypted_source"]
    raw = disk.read_bytes()
    offset = facts["bitlocker"]["partition_offset"]
    part = next(p for p in facts["partitions"] if p["index"] == index)
    assert enc["offset"] == offset
    assert (
        enc["digests"]["sha256"] == hashlib.sha256(raw[offset : offset + part["size"]]).hexdigest()
    )
    assert record["source"]["decrypted"]["unlocked_with"] == "password"
    notes = re.search(r"^\s*Notes:\s*(.*)$", ewfinfo(first), re.M)
    assert notes is not None
    assert f"volume p{index}" in notes.group(1) and "unlocked with password" in notes.group(1)
    assert enc["digests"]["sha256"] in notes.group(1)


def test_collect_writes_the_image_in_the_disk_hash_pass(unpacked, truth, tmp_path):
    """collect --image: one pass gives the disk hash and an E01 that libewf verifies."""
    import zipfile

    disk = unpacked("gpt-ntfs.raw")
    first = tmp_path / "disk.E01"
    result = CliRunner().invoke(
        app,
        ["collect", str(disk), "-o", str(tmp_path / "case.zip"), "--rule", "registry-and-mft",
         "--image", str(first), "--case", "C-7", "--examiner", "Ann", "-q", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["collected"] > 0
    assert summary["image"] == {"files": [str(first)], "complete": True}
    check_e01(first, disk, disk.stat().st_size)
    with zipfile.ZipFile(tmp_path / "case.zip") as zf:
        acquisition = json.loads(zf.read("acquisition.json"))
    assert acquisition["image"]["digests"] == acquisition["disk_hash"]["digests"]
    assert acquisition["disk_hash"]["digests"]["sha256"] == coreutils("sha256sum", disk)
    info = ewfinfo(first)
    assert re.search(r"^\s*Case number:\s*C-7$", info, re.M)
    again = CliRunner().invoke(
        app, ["collect", str(disk), "-o", str(tmp_path / "b.zip"), "--image", str(first), "-q"]
    )
    assert again.exit_code == 2 and "exists" in again.output

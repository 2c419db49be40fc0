"""A dying disk under a collection: EIO sectors, short reads and a read that hangs.

The source is the gpt-ntfs fixture served through a small FUSE file system
(tests/faultyfs.py) that fails reads of chosen sectors the way failing hardware does.
Where the faults go comes from The Sleuth Kit (``istat`` cluster lists), what the
bytes should be from ``icat`` with the faulty sector zeroed, never from the tool.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests import oracles
from tests.conftest import need_tool

pytest.importorskip("fuse", reason="fusepy is not installed (pip install -e '.[test]')")
if not Path("/dev/fuse").exists() or shutil.which("umount") is None:
    pytest.skip("no /dev/fuse here: FUSE faults cannot be served", allow_module_level=True)

from tests.faultyfs import faulty_mount

PART = 3
CLUSTER = 4096


@pytest.fixture(scope="module")
def layout(unpacked, truth):
    image = unpacked("gpt-ntfs.raw")
    t = truth("gpt-ntfs")
    start = next(p["start_sector"] for p in t["partitions"] if p["index"] == PART)
    files = {f["path"]: f for f in t["volumes"][str(PART)]["files"]}
    return image, start, files


def _sector_of(image: Path, start: int, entry: int, file_offset: int) -> int:
    """Absolute sector holding ``file_offset`` of MFT entry ``entry`` (per istat)."""
    clusters = oracles.istat_data_clusters(image, start, entry)
    return start + (clusters[file_offset // CLUSTER] * CLUSTER + file_offset % CLUSTER) // 512


def _expected(image: Path, start: int, entry: int, holes: list[tuple[int, int]]) -> str:
    data = bytearray(
        subprocess.run(
            [need_tool("icat"), "-o", str(start), str(image), str(entry)],
            check=True, capture_output=True,
        ).stdout
    )
    for offset, length in holes:
        data[offset : offset + length] = bytes(length)
    return hashlib.sha256(data).hexdigest()


def _collect(source: Path, out: Path, paths: list[str], *extra: str) -> tuple[int, dict, dict, str]:
    rule = out.with_suffix(".yaml")
    rule.write_text(
        "name: faults\ntitle: t\ntargets:\n  - name: t\n    paths: "
        + json.dumps(paths) + "\n"
    )
    # A child process: a read abandoned after the timeout stays blocked in its own
    # thread until the FUSE server goes away, which must not hold up the test process.
    proc = subprocess.run(
        [sys.executable, "-m", "selective_imager", "collect", str(source), "-o", str(out),
         "--rule", str(rule), "-q", "--volume", str(PART), *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    with zipfile.ZipFile(out) as zf:
        items = {i["path"]: i for i in map(json.loads, zf.read("manifest.jsonl").decode().splitlines())}
        acq = json.loads(zf.read("acquisition.json"))
        log = zf.read("log.jsonl").decode()
    return proc.returncode, items, acq, log


def test_eio_and_short_reads_make_items_partial_with_their_ranges(layout, tmp_path):
    image, start, files = layout
    big = files["Users/bob/Downloads/big.bin"]
    frag = files["Users/alice/Documents/fragmented.bin"]
    eio = _sector_of(image, start, big["mft_entry"], 4096)
    # The second run of the fragmented file, one sector into it: a short read there.
    short = _sector_of(image, start, frag["mft_entry"], 5 * CLUSTER + 512)
    sam = "Windows/System32/config/SAM"
    with faulty_mount(image, tmp_path / "mnt", eio=(f"{eio}:1",), short=(f"{short}:1",)) as src:
        code, items, acq, log = _collect(src, tmp_path / "out.zip", [big["path"], frag["path"], sam])
    assert code == 1
    assert items[big["path"]]["outcome"] == "partial"
    assert items[big["path"]]["unreadable"] == [[4096, 512]]
    assert items[big["path"]]["hashes"]["sha256"] == _expected(
        image, start, big["mft_entry"], [(4096, 512)]
    )
    assert items[frag["path"]]["outcome"] == "partial"
    assert items[frag["path"]]["unreadable"] == [[5 * CLUSTER + 512, 512]]
    assert items[frag["path"]]["hashes"]["sha256"] == _expected(
        image, start, frag["mft_entry"], [(5 * CLUSTER + 512, 512)]
    )
    assert items[sam]["outcome"] == "collected"
    assert items[sam]["hashes"]["sha256"] == files[sam]["sha256"]
    # The disk hash names both sectors, and hashes zeros in their place (sha256sum of
    # the original image with those sectors zeroed).
    assert acq["disk_hash"]["unreadable"] == sorted([[eio * 512, 512], [short * 512, 512]])
    patched = tmp_path / "patched.raw"
    data = bytearray(image.read_bytes())
    for sector in (eio, short):
        data[sector * 512 : sector * 512 + 512] = bytes(512)
    patched.write_bytes(bytes(data))
    assert acq["disk_hash"]["digests"]["sha256"] == oracles.file_digest(patched, "sha256sum")
    assert "item-partial" in log


def test_a_hanging_read_is_abandoned_and_the_run_goes_on(layout, tmp_path):
    image, start, files = layout
    big = files["Users/bob/Downloads/big.bin"]
    hang = _sector_of(image, start, big["mft_entry"], 8192)
    sam = "Windows/System32/config/SAM"
    began = time.monotonic()
    with faulty_mount(image, tmp_path / "mnt", hang=(f"{hang}:1",)) as src:
        code, items, _, log = _collect(
            src, tmp_path / "out.zip", [big["path"], sam], "--read-timeout", "1",
            "--disk-hash", "none",
        )
    # Bound, not a speed claim: without the timeout this run would never end.
    assert time.monotonic() - began < 90
    assert code == 1
    assert items[big["path"]]["outcome"] == "partial"
    assert items[big["path"]]["unreadable"] == [[8192, 512]]
    assert items[big["path"]]["hashes"]["sha256"] == _expected(
        image, start, big["mft_entry"], [(8192, 512)]
    )
    assert items[sam]["outcome"] == "collected"
    assert items[sam]["hashes"]["sha256"] == files[sam]["sha256"]
    assert "item-partial" in log
    assert os.path.exists(tmp_path / "out.zip")

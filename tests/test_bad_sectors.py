"""Unreadable sectors under a collected file: the item is partial, the run goes on.

The source is the real gpt-ntfs fixture behind a wrapper that fails reads of chosen
sectors, the way a failing disk does (OSError from the read).
"""

from __future__ import annotations

import hashlib
import json
import zipfile

from selective_imager.collect.collector import CollectOptions, collect
from selective_imager.discovery import discover
from selective_imager.selection.rules import RuleSet, parse_rule_text
from selective_imager.sources import open_source
from selective_imager.streams import ByteStream
from tests import oracles


class FailingStream(ByteStream):
    def __init__(self, inner: ByteStream, bad: tuple[int, int]) -> None:
        super().__init__(inner.size)
        self.inner = inner
        self.bad = bad

    def _read_at(self, offset: int, size: int) -> bytes:
        lo, hi = self.bad
        if offset < hi and offset + size > lo:
            raise OSError(5, "Input/output error")
        return self.inner.read_at(offset, size)


def test_bad_sectors_make_item_partial_and_are_listed(unpacked, truth, tmp_path):
    image = unpacked("gpt-ntfs.raw")
    t = truth("gpt-ntfs")
    big = next(f for f in t["volumes"]["3"]["files"] if f["size"] >= 1 << 20)
    # Where the file lies, from The Sleuth Kit (not the tool): its second cluster holds
    # file offset 4096; break that cluster's first sector.
    start = next(p["start_sector"] for p in t["partitions"] if p["index"] == 3)
    clusters = oracles.istat_data_clusters(image, start, big["mft_entry"])
    bad_start = start * 512 + clusters[1] * t["volumes"]["3"]["cluster_size"]
    bad = (bad_start, bad_start + 512)
    src = open_source(image)
    src.stream = FailingStream(src.stream, bad)
    disk = discover(src)
    rule = parse_rule_text(
        "name: two\ntitle: t\ntargets:\n  - name: t\n    paths: ["
        + json.dumps(big["path"]) + ", Windows/System32/config/SAM]\n"
    )
    rs = RuleSet(requested=("two",), rules={"two": rule}, roots={"two": ("two",)})
    out = tmp_path / "bad.zip"
    try:
        report = collect(disk, rs, out, CollectOptions())
    finally:
        disk.close()
    assert report.exit_code == 1
    with zipfile.ZipFile(out) as zf:
        items = {i["path"]: i for i in map(json.loads, zf.read("manifest.jsonl").decode().splitlines())}
        acq = json.loads(zf.read("acquisition.json"))
        log = zf.read("log.jsonl").decode()
    broken = items[big["path"]]
    assert broken["outcome"] == "partial"
    # Only the bad sector (file offset 4096) was zero-filled, not the whole chunk.
    assert broken["unreadable"] == [[4096, 512]]
    assert broken["error"]
    assert broken["hashes"]["sha256"] != big["sha256"]
    assert items["Windows/System32/config/SAM"]["outcome"] == "collected"
    # The disk hash zero-filled exactly the bad sector and said so.
    assert acq["disk_hash"]["unreadable"] == [[bad[0], 512]]
    with open(image, "rb") as fh:
        data = bytearray(fh.read())
    data[bad[0] : bad[1]] = b"\0" * 512
    assert acq["disk_hash"]["digests"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert "item-partial" in log

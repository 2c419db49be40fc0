"""Ctrl-C leaves a valid, sealed container marked incomplete with what was collected."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from selective_imager.collect.collector import CollectOptions, collect
from selective_imager.discovery import open_disk
from selective_imager.progress import NullProgress
from selective_imager.selection.rules import resolve
from tests.conftest import need_tool
from tests.oracles import fls_streams, icat_sha256, run


class InterruptAt(NullProgress):
    """Raises KeyboardInterrupt when the n-th item starts (or in the given phase)."""

    def __init__(self, items: int | None = None, phase: str | None = None) -> None:
        self.items = items
        self.phase_name = phase
        self.seen = 0
        self.current = ""

    def phase(self, name, total_bytes, total_items):
        self.current = name

    def item(self, label):
        self.seen += 1
        if self.items is not None and self.seen == self.items:
            raise KeyboardInterrupt

    def advance(self, nbytes=0, items=0):
        if self.phase_name is not None and self.current == self.phase_name and nbytes:
            self.phase_name = None  # Ctrl-C is pressed once
            raise KeyboardInterrupt


def read(container):
    with zipfile.ZipFile(container) as zf:
        assert zf.testzip() is None
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
        acq = json.loads(zf.read("acquisition.json"))
    return items, acq


def assert_members_equal_oracles(container, image, truth):
    """Every stored member equals the builder's truth or TSK's icat; unzip -t accepts the ZIP.

    The container is read with Python's zipfile, not the tool's reader.
    """
    run(need_tool("unzip"), "-tq", str(container))
    starts = {str(p["index"]): p["start_sector"] for p in truth["partitions"]}
    known = {
        (vol, f["path"]): f["sha256"] for vol, v in truth["volumes"].items() for f in v["files"]
    }
    streams: dict[str, dict[str, str]] = {}
    items, _ = read(container)
    checked = 0
    with zipfile.ZipFile(container) as zf:
        for item in items:
            if item["outcome"] != "collected" or item.get("sparse"):
                continue
            vol = str(item["volume"])
            digest = hashlib.sha256(zf.read(item["container_path"])).hexdigest()
            name = item["path"] + (f":{item['stream']}" if item["stream"] else "")
            expected = known.get((vol, name))
            if expected is None:
                if vol not in streams:
                    streams[vol] = fls_streams(image, starts[vol])
                expected = icat_sha256(image, starts[vol], streams[vol][name])
            assert digest == expected, name
            checked += 1
    assert checked


def test_interrupt_during_collection(unpacked, truth, tmp_path):
    out = tmp_path / "c.zip"
    with open_disk(unpacked("gpt-ntfs.raw")) as disk, pytest.raises(KeyboardInterrupt):
        collect(disk, resolve(["triage"]), out, CollectOptions(), InterruptAt(items=10))
    items, acq = read(out)
    assert acq["status"] == "incomplete"
    assert len(items) == 9
    assert acq["disk_hash"] is None
    assert_members_equal_oracles(out, unpacked("gpt-ntfs.raw"), truth("gpt-ntfs"))
    assert not list(tmp_path.glob("*.part"))  # journals were moved into the container


def test_interrupt_during_disk_hash(unpacked, truth, tmp_path):
    out = tmp_path / "d.zip"
    with open_disk(unpacked("gpt-ntfs.raw")) as disk:
        report = collect(disk, resolve(["registry-and-mft"]), out, CollectOptions(), InterruptAt(phase="disk-hash"))
    assert report.status == "incomplete"
    assert report.exit_code == 1
    items, acq = read(out)
    assert items and all(i["outcome"] in ("collected", "duplicate") for i in items)
    assert acq["disk_hash"]["complete"] is False
    assert acq["disk_hash"]["digests"] is None
    assert acq["disk_hash"]["bytes_hashed"] < acq["disk_hash"]["size"]
    assert_members_equal_oracles(out, unpacked("gpt-ntfs.raw"), truth("gpt-ntfs"))

"""The Windows-made NTFS images in ../shared open and list like The Sleuth Kit says.

Oracles: ``fls -r -p`` for the tree, ../shared/README.md for documented facts.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.discovery import open_disk
from tests.conftest import need_tool


def fls_paths(image, offset_sectors: int) -> tuple[set[str], set[str]]:
    """(paths, ADS lines) of allocated entries as ``fls -r -p`` prints them."""
    fls = need_tool("fls")
    lines = subprocess.run(
        [fls, "-r", "-p", "-o", str(offset_sectors), str(image)],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    paths: set[str] = set()
    ads: set[str] = set()
    for line in lines:
        m = re.match(r"^(\S)/(\S) (\* )?(\S+):\t(.*)$", line)
        assert m, line
        if m.group(3) or m.group(5).startswith("$OrphanFiles"):
            continue
        name, addr = m.group(5), m.group(4).split("-")
        if ":" in name.rsplit("/", 1)[-1]:
            base = name.rsplit(":", 1)[0]
            paths.add(base)
            if len(addr) > 1 and addr[1] == "128":  # a named $DATA attribute: an ADS
                ads.add(name)
        else:
            paths.add(name)
    return paths, ads


def ls_paths(image, *extra: str) -> tuple[set[str], set[str]]:
    result = CliRunner().invoke(app, ["ls", str(image), "-r", "--json", *extra])
    assert result.exit_code == 0, result.output
    paths: set[str] = set()
    ads: set[str] = set()
    for line in result.stdout.splitlines():
        entry = json.loads(line)
        paths.add(entry["path"])
        ads.update(f"{entry['path']}:{s['name']}" for s in entry["streams"])
    return paths, ads


@pytest.mark.parametrize("name", ["ntfs-ptrn", "ntfs-lastaccess", "ntfs-ramslack"])
def test_ls_recursive_equals_fls(shared, name):
    image = shared(f"ntfs-samples/{name}.raw")
    assert ls_paths(image) == fls_paths(image, 128)


def test_ptrn_documented_files_and_streams(shared):
    image = shared("ntfs-samples/ntfs-ptrn.raw")
    paths, ads = ls_paths(image)
    assert {"1.txt", "2.txt", "os_version.txt"} <= paths
    assert {
        "$Extend/$RmMetadata/$Repair:$Corrupt",
        "$Extend/$RmMetadata/$Repair:$Verify",
    } <= ads


def test_2m_clusters_open_where_tsk_cannot(shared):
    image = shared("ntfs-samples/ntfs-2m.raw")
    # Oracle for "TSK cannot": fls itself fails on this file system.
    fls = need_tool("fls")
    assert subprocess.run([fls, "-o", "128", str(image)], capture_output=True).returncode != 0
    with open_disk(image) as disk:
        (vol,) = disk.volumes
        assert vol.filesystem is not None
        assert vol.report.filesystem is not None
        assert vol.report.filesystem.block_size == 2 * 1024 * 1024
        names = {e.name for e in vol.filesystem.iterdir(vol.filesystem.root())}
        assert {"$MFT", "$LogFile", "$Boot"} <= names


def test_lastaccess_si_and_i30_times(shared):
    """Documented: $SI last access 2019-03-03 12:37:55, the $I30 copy 12:35:17."""
    image = shared("ntfs-samples/ntfs-lastaccess.raw")
    with open_disk(image) as disk:
        fs = disk.volume(1).filesystem
        assert fs is not None
        entry = fs.lookup("test/1.txt")
        assert entry.si is not None and entry.si.accessed is not None
        assert entry.i30 is not None and entry.i30.accessed is not None
        assert entry.si.accessed.isoformat().startswith("2019-03-03T12:37:55.")
        assert entry.i30.accessed.isoformat().startswith("2019-03-03T12:35:17.")
        # Listing the directory gives the same $I30 copy as the path lookup.
        (listed,) = [e for e in fs.iterdir(fs.lookup("test")) if e.name == "1.txt"]
        assert listed.i30 == entry.i30


def test_lastaccess_times_match_istat(shared):
    """$SI and $FN times equal what istat prints (to the 100 ns tick)."""
    image = shared("ntfs-samples/ntfs-lastaccess.raw")
    istat = need_tool("istat")
    with open_disk(image) as disk:
        fs = disk.volume(1).filesystem
        assert fs is not None
        entry = fs.lookup("test/1.txt")
    text = subprocess.run(
        [istat, "-o", "128", str(image), str(entry.entry)],
        check=True, capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout
    si_block = text.split("$STANDARD_INFORMATION Attribute Values:")[1].split("$FILE_NAME")[0]
    fn_block = text.split("$FILE_NAME Attribute Values:")[1].split("Attributes:")[0]

    def istat_time(block: str, label: str) -> str:
        m = re.search(rf"{label}:\s+(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)", block)
        assert m, (label, block)
        return f"{m.group(1).replace(' ', 'T')}.{m.group(2)[:7]}"

    assert entry.si is not None and entry.fn is not None
    for label, ours in (
        ("Created", entry.si.created),
        ("File Modified", entry.si.modified),
        ("MFT Modified", entry.si.changed),
        ("Accessed", entry.si.accessed),
    ):
        assert ours is not None and ours.isoformat()[:-1] == istat_time(si_block, label)
    for label, ours in (("Created", entry.fn.created), ("Accessed", entry.fn.accessed)):
        assert ours is not None and ours.isoformat()[:-1] == istat_time(fn_block, label)

"""The evidence behind keeping ext2/3/4 on The Sleuth Kit: pytsk3 against pyfsext.

Standalone (not in ``run``): ``.venv/bin/python bench/ext_backends.py``. Reads
``fixtures/ext4-linux.raw.gz`` (times written to the nanosecond by ``debugfs``, xattrs by
``ea_set``: see ``fixtures/build_linux_fs.py``) through both bindings and counts, per
fact, how many entries equal the builder's truth. Also shows pyfsext's re-read problem:
the extended attributes of one inode retrieved twice in one process.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

import pyfsext
import pytsk3

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "ext4-linux.raw.gz"
TRUTH = ROOT / "fixtures" / "ext4-linux.truth.json"


def _iso(sec: int, nsec: int) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}.{nsec:09d}Z"


def _tsk_facts(image: Path, rows: dict[str, dict]) -> dict[str, int]:
    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(image)))
    counts = {"entries": 0, "times": 0, "crtime": 0, "xattrs": 0}
    for path, row in rows.items():
        meta = fs.open("/" + path).info.meta
        times = {
            "created": _iso(meta.crtime, meta.crtime_nano),
            "modified": _iso(meta.mtime, meta.mtime_nano),
            "changed": _iso(meta.ctime, meta.ctime_nano),
            "accessed": _iso(meta.atime, meta.atime_nano),
        }
        counts["entries"] += 1
        counts["times"] += times == row["times"]
        counts["crtime"] += times["created"] == row["times"]["created"]
        # TSK lists no ext extended attributes as attributes of the file.
        names = {a.info.name.decode() for a in fs.open("/" + path) if a.info.name}
        counts["xattrs"] += names >= set(row.get("xattrs", {})) and bool(row.get("xattrs"))
    return counts


def _fsext_facts(image: Path, rows: dict[str, dict]) -> dict[str, int]:
    volume = pyfsext.volume()
    volume.open(str(image))
    counts = {"entries": 0, "times": 0, "crtime": 0, "xattrs": 0}
    for path, row in rows.items():
        fe = volume.get_file_entry_by_path("/" + path)
        ns = {
            "created": fe.get_creation_time_as_integer(),
            "modified": fe.get_modification_time_as_integer(),
            "changed": fe.get_inode_change_time_as_integer(),
            "accessed": fe.get_access_time_as_integer(),
        }
        times = {k: _iso(v // 10**9, v % 10**9) for k, v in ns.items()}
        counts["entries"] += 1
        counts["times"] += times == row["times"]
        counts["crtime"] += times["created"] == row["times"]["created"]
        names = {fe.get_extended_attribute(i).name for i in range(fe.number_of_extended_attributes)}
        counts["xattrs"] += bool(row.get("xattrs")) and names == set(row["xattrs"])
    return counts


def main() -> None:
    rows = {r["path"]: r for r in json.loads(TRUTH.read_text())["entries"] if r["path"]}
    with_xattrs = sum(1 for r in rows.values() if r.get("xattrs"))
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "ext4.raw"
        with gzip.open(FIXTURE) as fin, open(image, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        print(f"{len(rows)} entries, {with_xattrs} with extended attributes")
        print(f"pytsk3 {pytsk3.TSK_VERSION_STR}: {_tsk_facts(image, rows)}")
        print(f"pyfsext {pyfsext.get_version()}: {_fsext_facts(image, rows)}  (first reads)")
        volume = pyfsext.volume()
        volume.open(str(image))
        reads = [
            volume.get_file_entry_by_path("/etc/hostname").number_of_extended_attributes
            for _ in range(3)
        ]
        inode = volume.get_file_entry_by_path("/etc/hostname").inode_number
        by_inode = volume.get_file_entry_by_inode(inode).number_of_extended_attributes
        print(f"pyfsext /etc/hostname xattrs on three reads by path: {reads}; by inode: {by_inode}")


if __name__ == "__main__":
    main()

"""The own MFT record parser and ``collect --listing``, against pyfsntfs and The Sleuth Kit.

Oracles: pyfsntfs (entry/sequence, names, parents, $SI and $FN FILETIMEs, sizes, ADS
names) for every in-use entry, ``fls -r -m`` for every bodyfile row (paths, deleted
marks, sizes, times, attribute ids) apart from the differences the listing module
documents, ``fls -r -p -d`` for the deleted paths, ``istat`` for a sample, hashlib for the
members acquisition.json names.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from selective_imager.cli.app import app
from selective_imager.discovery import open_disk
from selective_imager.filesystems.ntfs import NtfsFilesystem

FIXTURE_IMAGES = ["gpt-ntfs.raw", "ntfs-noparts.raw", "ntfs-damaged-mft.raw", "ntfs-listing.raw"]
SHARED_IMAGES = [
    "ntfs-samples/ntfs-lastaccess.raw",
    "ntfs-samples/ntfs-ptrn.raw",
    "ntfs-samples/ntfs-2m.raw",
    "vss/vsstest.raw",
]
_MASK = 0xFFFFFFFFFFFF


def _image(name: str, unpacked: Any, shared: Any) -> Path:
    return Path(unpacked(name)) if "/" not in name else Path(shared(name))


def _ntfs_volumes(path: Path) -> list[tuple[str, int, NtfsFilesystem]]:
    disk = open_disk(path)
    return [
        (v.report.label, v.report.volume.offset, v.filesystem)
        for v in disk.volumes
        if isinstance(v.filesystem, NtfsFilesystem)
    ]


def _pyfsntfs_view(fs: NtfsFilesystem) -> dict[int, tuple[Any, ...]]:
    """What pyfsntfs says of every in-use base record (the oracle)."""
    volume = fs._volume
    out: dict[int, tuple[Any, ...]] = {}
    for number in range(volume.get_number_of_file_entries()):
        try:
            fe = volume.get_file_entry(number)
            if not fe.is_allocated():
                continue
        except OSError:
            continue  # damaged or never used: the parser's damage reports are checked below
        if int(fe.get_base_record_file_reference()) & _MASK not in (0, number):
            continue
        names, si = [], None
        for k in range(fe.get_number_of_attributes()):
            attr = fe.get_attribute(k)
            kind = attr.get_attribute_type()
            times = (
                attr.get_creation_time_as_integer(),
                attr.get_modification_time_as_integer(),
                attr.get_entry_modification_time_as_integer(),
                attr.get_access_time_as_integer(),
            ) if kind in (0x10, 0x30) else None  # fmt: skip
            if kind == 0x30:
                ref = int(attr.get_parent_file_reference())
                names.append(
                    (attr.get_name(), attr.get_name_space(), ref & _MASK, ref >> 48, times)
                )
            elif kind == 0x10:
                si = times
        size = int(fe.get_size() or 0) if fe.has_default_data_stream() else None
        ads = sorted((str(a.get_name()), int(a.get_size())) for a in fe.alternate_data_streams)
        out[number] = (int(fe.get_file_reference()) >> 48, names, si, size, ads)
    return out


def _parser_view(fs: NtfsFilesystem) -> tuple[dict[int, tuple[Any, ...]], dict[int, str]]:
    mine: dict[int, tuple[Any, ...]] = {}
    damaged: dict[int, str] = {}
    for r in fs.mft_records():
        if r.damage:
            damaged[r.entry] = r.damage
            continue
        if not r.in_use:
            continue
        names = [(n.name, n.namespace, n.parent_entry, n.parent_sequence, n.times) for n in r.names]
        default = next((s for s in r.streams if not s.name), None)
        ads = sorted((s.name, s.size) for s in r.streams if s.name)
        mine[r.entry] = (r.sequence, names, r.si, default.size if default else None, ads)
    return mine, damaged


@pytest.mark.parametrize("name", FIXTURE_IMAGES + SHARED_IMAGES)
def test_parser_equals_pyfsntfs(name: str, unpacked: Any, shared: Any) -> None:
    for _label, _offset, fs in _ntfs_volumes(_image(name, unpacked, shared)):
        oracle = _pyfsntfs_view(fs)
        mine, _damaged = _parser_view(fs)
        assert mine == oracle
        assert len(mine) > 20


def test_damaged_records_are_reported_not_used(unpacked: Any, truth: Any) -> None:
    ((_label, _offset, fs),) = _ntfs_volumes(Path(unpacked("ntfs-damaged-mft.raw")))
    _mine, damaged = _parser_view(fs)
    files = truth("ntfs-damaged-mft")["volumes"]
    expected = {
        f["mft_entry"]
        for vol in (files.values() if isinstance(files, dict) else files)
        for f in vol.get("files", [])
        if f.get("damage")
    }
    assert expected and set(damaged) == expected
    assert damaged[70] == "all zeros"


def _fls(args: list[str]) -> list[str]:
    return subprocess.run(
        ["fls", *args], capture_output=True, text=True, check=True
    ).stdout.splitlines()


def _listing(path: Path, tmp_path: Path) -> dict[str, Any]:
    """Collect with --listing and nothing else; the container's members and acquisition."""
    from typer.testing import CliRunner

    out = tmp_path / "c.zip"
    result = CliRunner().invoke(
        app,
        [
            "collect",
            str(path),
            "-o",
            str(out),
            "--rule",
            "ntfs-mft",
            "--listing",
            "--disk-hash",
            "none",
            "--quiet",
        ],
    )
    assert result.exit_code in (0, 1), result.output
    with zipfile.ZipFile(out) as z:
        acquisition = json.loads(z.read("acquisition.json"))
        members = {n: z.read(n) for n in z.namelist() if n.startswith("listing/")}
    return {"out": out, "acquisition": acquisition, "members": members}


def _split(row: str) -> tuple[str, list[str]]:
    """(name, the 9 fields after it): TSK leaves a "|" in a name as it is, we write "\\|"."""
    parts = row.replace("\\|", "|").split("|")
    return "|".join(parts[1:-9]), parts[-9:]


def _normalised(row: str, zero_is_any: bool) -> str:
    """A body row with the documented differences taken out (see collect/listing.py)."""
    name, rest = _split(row)
    rest[2] = "uid"  # TSK reads the owner id past a short $STANDARD_INFORMATION
    times = [int(x) & 0xFFFFFFFF for x in rest[5:]]  # TSK wraps pre-1970 seconds
    rest[5:] = ["*" if zero_is_any and t == 0 else str(t) for t in times]
    return "|".join([name, *rest])


def _kept(rows: list[str], skip: set[int], label: str, is_tsk: bool) -> set[str]:
    out = set()
    for row in rows:
        name, rest = _split(row)
        if int(rest[0].split("-")[0]) in skip:
            continue  # TSK renumbers/repeats these; damaged records we never use
        if is_tsk and (rest[1].startswith("V/V") or "/.:" in name):
            continue  # the $OrphanFiles virtual directory, a directory's streams twice
        if not is_tsk and name in (f"{label}/", f"{label}/ ($FILE_NAME)"):
            continue  # the root's rows (fls -m writes none)
        out.add(_normalised(row, not is_tsk))
    return out


def _matches(ours: str, tsk: str) -> bool:
    a, b = ours.split("|"), tsk.split("|")
    return len(a) == len(b) and all(x in (y, "*") for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", FIXTURE_IMAGES + SHARED_IMAGES[:2] + SHARED_IMAGES[3:])
def test_bodyfile_equals_fls(name: str, unpacked: Any, shared: Any, tmp_path: Path) -> None:
    path = _image(name, unpacked, shared)
    got = _listing(path, tmp_path)
    for label, offset, fs in _ntfs_volumes(path):
        ours = got["members"][f"listing/{label}.bodyfile"].decode().splitlines()
        tsk = _fls(["-r", "-m", f"{label}/", "-o", str(offset // 512), str(path)])
        records = list(fs.mft_records())
        multi = {
            r.entry
            for r in records
            if len({(n.parent_entry, n.name) for n in r.names if n.namespace != 2}) > 1
            or r.extensions
        }
        damaged = {r.entry for r in records if r.damage}
        a = _kept(ours, multi, label, False)
        b = _kept(tsk, multi | damaged, label, True)
        # A "*" time (ours 0: the FILETIME is 0, no time) matches what TSK makes of it.
        left = {x for x in a if not any(_matches(x, y) for y in b)}
        missing = {y for y in b if not any(_matches(x, y) for x in a)}
        assert not left and not missing, (sorted(left)[:5], sorted(missing)[:5])
        assert len(a) > 40


def test_deleted_paths_equal_fls_d(unpacked: Any, tmp_path: Path) -> None:
    path = Path(unpacked("ntfs-listing.raw"))
    got = _listing(path, tmp_path)
    lines = gzip.decompress(got["members"]["listing/v0.jsonl.gz"]).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    deleted = {(r["path"], r["entry"]) for r in rows if r["deleted"]}
    tsk = set()
    for line in _fls(["-r", "-p", "-d", str(path)]):
        meta, _, shown = line.partition(":\t")
        tsk.add((shown, int(meta.split()[-1].split("-")[0])))
    assert {p for p in tsk if not p[0].startswith("$OrphanFiles/OrphanFile-")} <= deleted
    assert ("gone/x0.dat", 115) in deleted and ("gone", 114) in deleted
    # Every in-use path TSK lists is a path (or link) of an in-use entry of ours.
    ours = {(p, r["entry"]) for r in rows if r["in_use"] for p in [r["path"], *r["links"]]}
    for line in _fls(["-r", "-p", str(path)]):
        meta, _, shown = line.partition(":\t")
        if meta.startswith("V/V") or "*" in meta or ":" in shown:
            continue  # virtual, deleted (checked above) or a stream
        assert (shown, int(meta.split()[-1].split("-")[0])) in ours


def test_listing_fields_against_istat(unpacked: Any, tmp_path: Path) -> None:
    path = Path(unpacked("ntfs-listing.raw"))
    got = _listing(path, tmp_path)
    rows = {
        r["path"]: r
        for r in map(
            json.loads, gzip.decompress(got["members"]["listing/v0.jsonl.gz"]).splitlines()
        )
    }
    row = rows["keep/a long file name.txt"]
    text = subprocess.run(
        ["istat", str(path), str(row["entry"])], capture_output=True, text=True, check=True
    ).stdout
    assert f"Sequence: {row['sequence']}" in text
    assert "Name: ALONGF~1.TXT" in text and row["dos_name"] == "ALONGF~1.TXT"
    assert f"Parent MFT Entry: {row['parent_entry']}" in text
    created = row["si"]["created"]  # 7 digits of 100 ns, as istat's 9 (two trailing zeros)
    assert f"Created:\t{created[:10]} {created[11:27]}00 (UTC)" in text
    ads = rows["keep/file1.txt"]["ads"]
    assert [a["name"] for a in ads] == ["Zone.Identifier"] and ads[0]["size"] == 26
    linked = rows["many-links.bin"]
    assert len(linked["links"]) == 60 and linked["link_count"] == 61


def test_acquisition_names_members_and_verify_checks_them(unpacked: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    got = _listing(Path(unpacked("gpt-ntfs.raw")), tmp_path)
    records = got["acquisition"]["listing"]
    assert {r["volume"] for r in records} == {"p1", "p3"}  # the FAT ESP is walked
    for record in records:
        for key in ("jsonl", "bodyfile"):
            data = got["members"][record[key]["member"]]
            assert hashlib.sha256(data).hexdigest() == record[key]["sha256"]
        lines = gzip.decompress(got["members"][record["jsonl"]["member"]]).splitlines()
        assert len(lines) == record["entries"]
    fat = next(r for r in records if r["volume"] == "p1")
    assert fat["source"] == "walk"
    fat_paths = {
        json.loads(x)["path"]
        for x in gzip.decompress(got["members"]["listing/p1.jsonl.gz"]).splitlines()
    }
    tsk = {
        line.partition(":\t")[2]
        for line in _fls(["-r", "-p", "-o", "2048", str(unpacked("gpt-ntfs.raw"))])
        if not line.startswith(("v/v", "V/V")) and "(Volume Label Entry)" not in line
    }
    assert tsk <= fat_paths
    result = CliRunner().invoke(app, ["verify", str(got["out"])])
    assert result.exit_code == 0, result.output


def test_listing_default_follows_the_rule(unpacked: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    image = str(unpacked("ntfs-noparts.raw"))
    for rule, expected in (("registry-and-mft", False), ("triage", True)):
        out = tmp_path / f"{rule}.zip"
        result = CliRunner().invoke(
            app,
            ["collect", image, "-o", str(out), "--rule", rule, "--disk-hash", "none", "--quiet"],
        )
        assert result.exit_code == 0, result.output
        with zipfile.ZipFile(out) as z:
            assert any(n.startswith("listing/") for n in z.namelist()) is expected

"""The committed fixture images agree with their ground-truth JSON.

Only independent tools are used here (The Sleuth Kit's command-line programs, libewf's
ewfinfo): never the code under test, and not the builder either.  If these fail, the fixture
or its truth is wrong, not selective_imager.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import subprocess

import pytest
from conftest import need_tool

SECTOR = 512


def _run(*args: str) -> bytes:
    return subprocess.run(args, check=True, capture_output=True).stdout


def _mmls(image) -> list[tuple[int, int, str]]:
    """(start, length, description) of every partition row, Meta and unallocated excluded."""
    rows = []
    for line in _run(need_tool("mmls"), str(image)).decode().splitlines():
        m = re.match(r"\s*\d+:\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$", line)
        if m and m.group(1) not in ("Meta", "-------"):
            rows.append((int(m.group(2)), int(m.group(4)), m.group(5).strip()))
    return rows


def _fls(image, offset: int, fstype: str | None = None) -> dict[str, str]:
    """path -> metadata address ("64-128-2") for every allocated entry, ADS included."""
    args = [need_tool("fls"), "-r", "-p", "-o", str(offset)]
    if fstype:
        args += ["-f", fstype]
    out = {}
    for line in _run(*args, str(image)).decode("utf-8", "surrogateescape").splitlines():
        head, sep, path = line.partition(":\t")
        if not sep or "*" in head:
            continue
        out[path] = head.split()[-1]
    return out


def _icat(image, offset: int, addr: str, fstype: str | None = None) -> bytes:
    args = [need_tool("icat"), "-o", str(offset)]
    if fstype:
        args += ["-f", fstype]
    return _run(*args, str(image), addr)


def _istat_times(image, offset: int, addr: str) -> dict[str, str]:
    """First block of times istat prints ($STANDARD_INFORMATION for NTFS, inode for ext4),
    as 7-fraction-digit ISO strings like the truth files."""
    text = _run(need_tool("istat"), "-z", "UTC", "-o", str(offset), str(image), addr).decode()
    names = {"Created": "created", "File Created": "created", "File Modified": "modified",
             "Accessed": "accessed", "Inode Modified": "changed", "Written": "modified"}
    out: dict[str, str] = {}
    for m in re.finditer(r"^([A-Za-z ]+):\t(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))? \(UTC\)",
                         text, re.M):
        key = names.get(m.group(1))
        if key and key not in out:
            frac = (m.group(4) or "0").ljust(9, "0")
            if frac[7:] != "00":  # TSK prints ns: NTFS/ext4 values here are 100 ns multiples
                frac = frac[:7] + "?"
            out[key] = f"{m.group(2)}T{m.group(3)}.{frac[:7]}Z"
    return out


def _volumes(truth: dict) -> list[tuple[str, int, dict]]:
    starts = {str(p["index"]): p["start_sector"] for p in truth.get("partitions", [])}
    return [(k, starts.get(k, 0), v) for k, v in truth["volumes"].items()]


def _check_volume_hashes(image, offset: int, vol: dict, fstype: str | None = None) -> None:
    entries = _fls(image, offset, fstype)
    missing, wrong = [], []
    for f in vol["files"]:
        items = [(f["path"], f["sha256"])]
        items += [(f"{f['path']}:{a['name']}", a["sha256"]) for a in f.get("ads", [])]
        for path, want in items:
            if path not in entries:
                missing.append(path)
                continue
            got = hashlib.sha256(_icat(image, offset, entries[path], fstype)).hexdigest()
            if got != want:
                wrong.append(path)
    for a in vol.get("directory_ads", []):
        path = f"{a['path']}:{a['name']}"
        if path not in entries:
            missing.append(path)
        elif hashlib.sha256(_icat(image, offset, entries[path])).hexdigest() != a["sha256"]:
            wrong.append(path)
    for d in vol.get("directories", []):
        if d not in entries:
            missing.append(d + "/")
    assert not missing, f"not found by fls: {missing}"
    assert not wrong, f"icat content differs from truth: {wrong}"


DISKS = ["gpt-ntfs", "mbr-extended"]


@pytest.mark.parametrize("name", DISKS)
def test_partition_layout_matches_mmls(name, unpacked, truth):
    t = truth(name)
    image = unpacked(t["image"])
    assert image.stat().st_size == t["size"]
    rows = _mmls(image)
    want = [(p["start_sector"], p["sectors"]) for p in t["partitions"]
            if not p.get("extended")]
    assert [(s, n) for s, n, _ in rows] == want
    if t["partition_table"] == "gpt":
        assert [d for _, _, d in rows] == [p["name"] for p in t["partitions"]]
    else:
        types = [int(re.search(r"\(0x([0-9a-f]+)\)", d).group(1), 16) for _, _, d in rows]
        assert types == [p["type"] for p in t["partitions"] if not p.get("extended")]
        logical = [p["start_sector"] for p in t["partitions"] if p.get("logical")]
        assert logical == [36864, 59392]


@pytest.mark.parametrize(
    "name", ["gpt-ntfs", "mbr-extended", "ntfs-noparts", "iso9660", "ntfs-damaged-mft"]
)
def test_whole_image_hashes(name, unpacked, truth):
    t = truth(name)
    data = unpacked(t["image"]).read_bytes()
    assert len(data) == t["size"]
    assert hashlib.sha256(data).hexdigest() == t["sha256"]
    assert hashlib.md5(data).hexdigest() == t["md5"]
    assert hashlib.sha1(data).hexdigest() == t["sha1"]


@pytest.mark.parametrize("name", ["gpt-ntfs", "mbr-extended", "ntfs-noparts"])
def test_every_file_and_stream_hashes_to_truth(name, unpacked, truth):
    t = truth(name)
    image = unpacked(t["image"])
    for _, start, vol in _volumes(t):
        _check_volume_hashes(image, start, vol)


def test_iso9660_files(unpacked, truth):
    t = truth("iso9660")
    image = unpacked(t["image"])
    _check_volume_hashes(image, 0, t["volumes"]["0"], "iso9660")


def test_ntfs_standard_information_times(unpacked, truth):
    t = truth("gpt-ntfs")
    image = unpacked(t["image"])
    start = t["partitions"][2]["start_sector"]
    vol = t["volumes"]["3"]
    entries = _fls(image, start)
    checked = 0
    for f in vol["files"][::7] + [x for x in vol["files"] if "fragmented" in x["path"]]:
        got = _istat_times(image, start, entries[f["path"]])
        assert {k: got[k] for k in ("created", "modified", "accessed")} == f["times"], f["path"]
        checked += 1
    for d in vol["directory_entries"][::9]:
        got = _istat_times(image, start, entries[d["path"]])
        assert {k: got[k] for k in ("created", "modified", "accessed")} == d["times"], d["path"]
    assert checked >= 10


def test_ext4_inode_times(unpacked, truth):
    t = truth("mbr-extended")
    image = unpacked(t["image"])
    start = t["partitions"][1]["start_sector"]
    entries = _fls(image, start)
    for f in t["volumes"]["2"]["files"]:
        got = _istat_times(image, start, entries[f["path"]])
        assert got == f["times"], f["path"]


def test_fat_modification_times(unpacked, truth):
    t = truth("gpt-ntfs")
    image = unpacked(t["image"])
    entries = _fls(image, 2048)
    for f in t["volumes"]["1"]["files"]:
        got = _istat_times(image, 2048, entries[f["path"]])
        assert got["modified"] == f["times"]["modified"], f["path"]


def test_fragmented_file_has_two_runs(unpacked, truth):
    t = truth("gpt-ntfs")
    image = unpacked(t["image"])
    start = t["partitions"][2]["start_sector"]
    f = next(x for x in t["volumes"]["3"]["files"] if x.get("fragmented"))
    addr = _fls(image, start)[f["path"]]
    text = _run(need_tool("istat"), "-o", str(start), str(image), addr).decode()
    clusters = [int(x) for x in text.split("Type: $DATA (128-", 1)[1].split("\n", 1)[1].split()]
    gaps = sum(1 for a, b in itertools.pairwise(clusters) if b != a + 1)
    assert gaps + 1 == f["data_runs"] >= 2


def test_usnjrnl_is_sparse_and_matches(unpacked, truth):
    t = truth("gpt-ntfs")
    image = unpacked(t["image"])
    start = t["partitions"][2]["start_sector"]
    u = t["volumes"]["3"]["usnjrnl"]
    entries = _fls(image, start)
    j = _icat(image, start, entries["$Extend/$UsnJrnl:$J"])
    assert len(j) == u["J_size"]
    assert hashlib.sha256(j).hexdigest() == u["J_sha256"]
    mx = _icat(image, start, entries["$Extend/$UsnJrnl:$Max"])
    assert hashlib.sha256(mx).hexdigest() == u["Max_sha256"]
    addr = entries["$Extend/$UsnJrnl:$J"]
    text = _run(need_tool("istat"), "-o", str(start), str(image), addr.split("-")[0]).decode()
    assert re.search(r"Name: \$J\s+Non-Resident, Sparse", text)
    first = u["records"][0]
    off = first["usn"]
    assert int.from_bytes(j[off + 24 : off + 32], "little") == first["usn"]
    assert j[: u["J_data_offset"]].count(0) == u["J_data_offset"]


def test_recorded_mft_entries_match_fls(unpacked, truth):
    t = truth("gpt-ntfs")
    image = unpacked(t["image"])
    start = t["partitions"][2]["start_sector"]
    entries = _fls(image, start)
    vol = t["volumes"]["3"]
    for f in vol["files"] + vol["directory_entries"]:
        assert int(entries[f["path"]].split("-")[0]) == f["mft_entry"], f["path"]


def test_truth_shape(truth):
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
    for name in ("gpt-ntfs", "mbr-extended", "ntfs-noparts", "iso9660"):
        t = truth(name)
        for vol in t["volumes"].values():
            for f in vol["files"]:
                assert f["kind"], f["path"]
                assert all(iso.match(v) for v in f["times"].values()), f["path"]
                dt.datetime.fromisoformat(f["times"]["modified"][:19])
    kinds = {k for f in truth("gpt-ntfs")["volumes"]["3"]["files"] for k in f["kind"]}
    assert {"registry-system", "registry-user", "registry-log", "evtx", "evt", "prefetch",
            "amcache", "syscache", "srum", "scheduled-task", "lnk", "jumplist", "recycle-bin",
            "browser-chrome", "browser-edge", "browser-firefox", "powershell-history", "wmi",
            "setupapi", "pagefile", "hiberfil"} <= kinds


def test_e01_segments_and_headers(unpacked, truth):
    t = truth("gpt-ntfs-e01")
    assert len(t["segments"]) >= 2
    first = unpacked(t["segments"][0])
    for seg in t["segments"]:
        assert unpacked(seg).exists()
    info = _run(need_tool("ewfinfo"), str(first)).decode()
    h = t["headers"]
    for label, key in (("Case number", "case_number"), ("Description", "description"),
                       ("Examiner name", "examiner_name"), ("Evidence number", "evidence_number"),
                       ("Notes", "notes")):
        assert re.search(rf"^\s*{label}:\s+{re.escape(h[key])}\s*$", info, re.M), label
    assert re.search(rf"MD5:\s+{t['md5']}", info)
    assert f"({t['size']} bytes)" in info
    # TSK reads the E01 through libewf: the media equals the raw disk of gpt-ntfs
    media = _run(need_tool("img_cat"), "-i", "ewf", str(first))
    assert hashlib.sha256(media).hexdigest() == t["sha256"] == truth("gpt-ntfs")["sha256"]


def test_iso9660_recording_times(unpacked, truth):
    t = truth("iso9660")
    image = unpacked(t["image"])
    entries = _fls(image, 0, "iso9660")
    for f in t["volumes"]["0"]["files"]:
        text = _run(need_tool("istat"), "-z", "UTC", "-f", "iso9660", str(image),
                    entries[f["path"]]).decode()
        m = re.search(r"Created:\t(\S+) (\S+) \(UTC\)", text)
        assert m, f["path"]
        assert f"{m.group(1)}T{m.group(2)}.0000000Z" == f["times"]["modified"], f["path"]


def test_windows_evtx_logs_parse_as_their_truth(unpacked, truth):
    """Every .evtx of the Windows-like volume, read by icat and parsed by python-evtx
    (an independent pure-Python EVTX parser, checksums verified), holds exactly the
    events the builder recorded."""
    evtx = pytest.importorskip("Evtx.Evtx", reason="python-evtx (test extra) not installed")
    import tempfile
    import xml.etree.ElementTree as ET

    t = truth("gpt-ntfs")
    image = unpacked("gpt-ntfs.raw")
    offset = t["partitions"][2]["start_sector"]
    addrs = _fls(image, offset)
    ns = {"e": "http://schemas.microsoft.com/win/2004/08/events/event"}
    expected_logs = t["volumes"]["3"]["evtx_events"]
    assert len(expected_logs) == 4
    for path, events in expected_logs.items():
        data = _icat(image, offset, addrs[path])
        with tempfile.NamedTemporaryFile(suffix=".evtx") as tmp:
            tmp.write(data)
            tmp.flush()
            with evtx.Evtx(tmp.name) as log:
                header = log.get_file_header()
                assert header.verify() and not header.is_dirty(), path
                assert all(chunk.verify() for chunk in header.chunks()), path
                got = []
                for record in log.records():
                    root = ET.fromstring(record.xml())
                    system = root.find("e:System", ns)
                    got.append({
                        "record_id": record.record_num(),
                        "written": record.timestamp(),
                        "event_id": int(system.find("e:EventID", ns).text),
                        "level": int(system.find("e:Level", ns).text),
                        "provider": system.find("e:Provider", ns).get("Name"),
                        "channel": system.find("e:Channel", ns).text,
                        "computer": system.find("e:Computer", ns).text,
                        "message": root.find("e:EventData/e:Data[@Name='Message']", ns).text,
                    })
        keys = ("record_id", "event_id", "level", "provider", "channel", "computer", "message")
        assert [{k: g[k] for k in keys} for g in got] == [{k: e[k] for k in keys} for e in events]
        epoch = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
        for g, e in zip(got, events, strict=True):
            # python-evtx converts the FILETIME through a float: within 2 microseconds.
            want = epoch + dt.timedelta(microseconds=e["filetime"] // 10)
            assert abs(g["written"] - want) <= dt.timedelta(microseconds=2), path

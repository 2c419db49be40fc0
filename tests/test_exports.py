"""CopyLog.csv, SkipLog.csv and bodyfile.txt inside the container and from ``show --export``.

Oracles: The Sleuth Kit's ``fls -m`` and ``mactime`` on the same image, hashlib over
the members as unzip stores them, and the manifest for the CopyLog rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import zipfile

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import need_tool

VOLUME3_SECTOR = 20480


@pytest.fixture(scope="module")
def collected(unpacked, tmp_path_factory):
    image = unpacked("gpt-ntfs.raw")
    out = tmp_path_factory.mktemp("exports") / "gpt.zip"
    result = CliRunner().invoke(
        app, ["collect", str(image), "-o", str(out), "--quiet", "--rule", "triage"]
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        records = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
        members = {n: zf.read(n) for n in ("CopyLog.csv", "SkipLog.csv", "bodyfile.txt")}
    return image, out, records, members


def _fields(line: str) -> list[str]:
    return line.rstrip("\n").split("|")


def test_bodyfile_rows_equal_fls_m(collected, tmp_path):
    need_tool("fls")
    need_tool("mactime")
    image, _, records, members = collected
    ours = members["bodyfile.txt"].decode().splitlines()
    fls = subprocess.run(
        ["fls", "-r", "-m", "C:", "-o", str(VOLUME3_SECTOR), str(image)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    by_name = {_fields(x)[1]: _fields(x) for x in fls}
    live = [r for r in records if r["volume"] == 3 and r["vss"] is None]
    # One row per item and stream, one $FILE_NAME row per file (not per ADS).
    assert len(ours) == len(live) + sum(1 for r in live if not r["stream"])
    compared = []
    for line in ours:
        f = _fields(line)
        theirs = by_name.get(f[1])
        assert theirs is not None, f"{f[1]} not in fls -m"
        # name, entry number, file type, size, atime, mtime, ctime, crtime
        assert f[2] == theirs[2].split("-")[0], f[1]
        assert f[3][0] == theirs[3][0], f[1]
        if f[7:] == ["0", "0", "0", "0"]:
            # The manifest has no $SI time for this entry ($MFT in this fixture: TSK
            # reads 2076-11 there, the reader gives none); only the size is compared.
            assert f[6] == theirs[6], f[1]
            continue
        assert f[6:] == theirs[6:], f[1]
        compared.append("|".join(theirs))
    md5 = {r["path"] + (":" + r["stream"] if r["stream"] else ""): r["hashes"]["md5"] for r in live}
    for line in ours:
        f = _fields(line)
        if not f[1].endswith("($FILE_NAME)"):
            assert f[0] == md5[f[1][3:]]
    # mactime takes our file as it takes fls output: same timeline rows.
    (tmp_path / "ours.txt").write_text("\n".join(ours) + "\n")
    (tmp_path / "fls.txt").write_text("\n".join(compared) + "\n")

    def timeline(path):
        text = subprocess.run(
            ["mactime", "-b", str(path), "-d", "-z", "UTC"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0][:3] == ["Date", "Size", "Type"]
        # Date, size, MACB type, file name (mode bits, UID and attribute ids aside).
        return sorted((r[0], r[1], r[2], r[7]) for r in rows[1:])

    assert timeline(tmp_path / "ours.txt") == timeline(tmp_path / "fls.txt")
    assert len(timeline(tmp_path / "ours.txt")) >= len(ours)


def test_copylog_rows_equal_manifest(collected):
    _, out, records, members = collected
    rows = list(csv.DictReader(io.StringIO(members["CopyLog.csv"].decode())))
    stored = [r for r in records if r["outcome"] in ("collected", "partial")]
    assert len(rows) == len(stored) > 0
    with zipfile.ZipFile(out) as zf:
        for row, rec in zip(rows, stored, strict=True):
            path = rec["path"].replace("/", "\\") + (":" + rec["stream"] if rec["stream"] else "")
            assert row["SourceFile"] == "C:\\" + path
            assert row["DestinationFile"] == rec["container_path"]
            assert int(row["FileSize"]) == rec["size"]
            assert row["SourceFileSha1"] == rec["hashes"]["sha1"]
            si = rec["timestamps"]["si"]
            assert (row["CreatedOnUtc"], row["ModifiedOnUtc"], row["LastAccessedOnUtc"]) == (
                si["created"] or "",
                si["modified"] or "",
                si["accessed"] or "",
            )
            if "sparse" not in rec:
                assert (
                    hashlib.sha1(zf.read(rec["container_path"])).hexdigest()
                    == row["SourceFileSha1"]
                )
    skipped = list(csv.DictReader(io.StringIO(members["SkipLog.csv"].decode())))
    others = [r for r in records if r["outcome"] not in ("collected", "partial")]
    assert len(skipped) == len(others)
    for row, rec in zip(skipped, others, strict=True):
        assert row["SourceFileSha1"] == (rec["hashes"] or {}).get("sha1", "")
        if rec["outcome"] == "duplicate":
            assert rec["container_path"] in row["Reason"]


def test_show_export_writes_the_same_files(collected, tmp_path):
    _, out, _, members = collected
    dest = tmp_path / "export"
    result = CliRunner().invoke(app, ["show", str(out), "--export", str(dest)])
    assert result.exit_code == 0, result.output
    for name, data in members.items():
        ours = (dest / name).read_bytes()
        if name == "CopyLog.csv":
            # Same rows; CopiedTimestamp is the collection's end, taken from acquisition.json.
            assert [r[1:] for r in csv.reader(io.StringIO(ours.decode()))] == [
                r[1:] for r in csv.reader(io.StringIO(data.decode()))
            ]
        else:
            assert ours == data, name


def test_unzip_lists_windows_names_as_windows_writes_them(collected, tmp_path):
    need_tool("unzip")
    _, out, records, _ = collected
    listing = subprocess.run(
        ["unzip", "-l", str(out)], check=True, capture_output=True, text=True
    ).stdout
    name = "Windows/System32/winevt/Logs/Microsoft-Windows-PowerShell%4Operational.evtx"
    assert f"files/p3/{name}" in listing
    rec = next(r for r in records if r["path"] == name)
    assert rec["container_path"] == f"files/p3/{name}"
    # Info-ZIP writes it under the same name, and its bytes are the manifest's.
    subprocess.run(["unzip", "-q", str(out), f"files/p3/{name}", "-d", str(tmp_path)], check=True)
    data = (tmp_path / "files" / "p3" / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == rec["hashes"]["sha256"]


def test_sparse_member_is_named_and_mapped(collected, tmp_path):
    need_tool("icat")
    image, out, records, _ = collected
    rec = next(r for r in records if r["path"] == "$Extend/$UsnJrnl" and r["stream"] == "$J")
    sparse = rec["sparse"]
    assert rec["container_path"] == "files/p3/$Extend/$UsnJrnl%3A$J.sparse"
    assert sparse["hashes_of"] == "logical file"
    assert sparse["map"] == "files/p3/$Extend/$UsnJrnl%3A$J.sparse.map.json"
    with zipfile.ZipFile(out) as zf:
        member = zf.read(rec["container_path"])
        layout = json.loads(zf.read(sparse["map"]))
    # The member's own hash is member_sha256; the manifest's hashes are TSK's logical file.
    assert hashlib.sha256(member).hexdigest() == sparse["member_sha256"] == layout["member_sha256"]
    assert layout["ranges"] == sparse["ranges"]
    assert layout["logical_size"] == rec["size"]
    logical = subprocess.run(
        ["icat", "-o", str(VOLUME3_SECTOR), str(image), f"{rec['entry']}-128-4"],
        check=True,
        capture_output=True,
    ).stdout
    assert len(logical) == rec["size"]
    assert hashlib.sha256(logical).hexdigest() == rec["hashes"]["sha256"]
    # The map rebuilds the logical file from the member; extract does it too.
    rebuilt = bytearray(layout["logical_size"])
    pos = 0
    for offset, length in layout["ranges"]:
        rebuilt[offset : offset + length] = member[pos : pos + length]
        pos += length
    assert bytes(rebuilt) == logical
    dest = tmp_path / "x"
    result = CliRunner().invoke(app, ["extract", str(out), str(dest)])
    assert result.exit_code == 0, result.output
    restored = next(p for p in dest.rglob("*") if p.name.endswith("$J"))
    assert hashlib.sha256(restored.read_bytes()).hexdigest() == rec["hashes"]["sha256"]


def test_show_says_the_seal_in_words(collected):
    _, out, _, _ = collected
    with zipfile.ZipFile(out) as zf:
        others = len(zf.namelist()) - 1
        created = json.loads(zf.read("SEAL.json"))["created"]
    result = CliRunner().invoke(app, ["show", str(out)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("seal:"))
    assert f"SEAL.json written {created}" in line
    assert f"listing {others} member(s), exactly the other members" in line


def test_extract_path_is_case_insensitive_on_ntfs(collected, tmp_path):
    _, out, records, _ = collected
    result = CliRunner().invoke(
        app, ["extract", str(out), str(tmp_path / "x"), "--path", "windows/system32/config/sam"]
    )
    assert result.exit_code == 0, result.output
    files = [p for p in (tmp_path / "x").rglob("*") if p.is_file()]
    rec = next(r for r in records if r["path"] == "Windows/System32/config/SAM")
    assert [p.name for p in files] == ["SAM"]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == rec["hashes"]["sha256"]


def test_extract_into_non_empty_dest_says_so_once(collected, tmp_path):
    _, out, _, _ = collected
    dest = tmp_path / "x"
    dest.mkdir()
    (dest / "already").write_text("here")
    result = CliRunner().invoke(app, ["extract", str(out), str(dest), "--path", "*/SAM"])
    assert result.exit_code != 0
    assert result.output.count("not empty") == 1
    assert sorted(p.name for p in dest.iterdir()) == ["already"]
    result = CliRunner().invoke(app, ["extract", str(out), str(dest), "--path", "*/SAM", "--force"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["extract", str(out), str(dest), "--path", "*/SAM", "--force"])
    assert result.exit_code == 0, result.output  # replaced, not refused per file
    assert "refused" not in result.output

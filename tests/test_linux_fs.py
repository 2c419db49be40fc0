"""XFS (pyfsxfs) and ext4 (The Sleuth Kit) on the Linux fixtures, and the Linux/macOS rules.

Oracles: the builder's truth (``fixtures/build_linux_fs.py``: names, sizes, SHA-256 of
contents and xattr values, the four times it wrote to the nanosecond), ``xfs_db -r``
directory listings for XFS inode numbers, ``debugfs`` for ext4 inode numbers (also
recorded by the builder), ``fsapfsinfo -H`` for the APFS reference image's paths.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import need_tool
from tests.oracles import ENV

EVERYTHING = (
    "name: everything\ntitle: All files and streams\ndescription: test\nversion: 1\n"
    "author: test\ntargets:\n  - name: all\n    paths: ['**', '**:*']\n"
)


def _xfs_db_inodes(image: Path) -> dict[str, int]:
    """path -> inode number, walking xfs_db's own directory listings."""
    tool = need_tool("xfs_db")
    out: dict[str, int] = {}
    todo = [""]
    while todo:
        rel = todo.pop()
        text = subprocess.run(
            [tool, "-r", "-c", f"path /{rel}", "-c", "ls", str(image)],
            check=True, capture_output=True, text=True, env=ENV,
        ).stdout
        for line in text.splitlines():
            m = re.match(r"^\s*\d+\s+(\d+)\s+(\w+)\s+0x[0-9a-f]+\s+\d+\s+(.+?) \(good\)$", line)
            if not m or m.group(3) in (".", ".."):
                continue
            sub = f"{rel}/{m.group(3)}" if rel else m.group(3)
            out[sub] = int(m.group(1))
            if m.group(2) == "directory":
                todo.append(sub)
    return out


def _ls(image: Path) -> dict[str, dict]:
    result = CliRunner().invoke(app, ["ls", str(image), "-r", "--json"])
    assert result.exit_code == 0, result.output
    return {e["path"]: e for e in map(json.loads, result.stdout.splitlines())}


def _collect(image: Path, tmp: Path, *rule: str) -> list[dict]:
    out = tmp / f"{image.stem}.zip"
    result = CliRunner().invoke(app, ["collect", str(image), "-o", str(out), "--quiet", *rule])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
        for item in items:
            if item.get("container_path"):
                item["_sha256"] = hashlib.sha256(zf.read(item["container_path"])).hexdigest()
    return items


def _check_entries(
    entries: dict[str, dict], rows: dict[str, dict], streams: bool, mode_mask: int = 0o177777
) -> None:
    for path, entry in entries.items():
        row = rows[path]
        assert entry["timestamps"]["times"] == row["times"], path
        assert entry["mode"] == row["mode"] & mode_mask, path
        assert (entry["uid"], entry["gid"]) == (row["uid"], row["gid"]), path
        assert entry["entry"] == row["inode"], path
        assert entry.get("link_target", "") == row.get("link_target", ""), path
        if row["type"] == "file":
            assert entry["size"] == row["size"], path
        if streams:
            assert {s["name"] for s in entry["streams"]} == set(row.get("xattrs", {})), path


@pytest.fixture(scope="module")
def xfs(unpacked, truth) -> tuple[Path, dict[str, dict]]:
    rows = {r["path"]: r for r in truth("xfs")["entries"]}
    return unpacked("xfs.raw"), rows


def test_xfs_info(xfs, truth):
    image, _ = xfs
    result = CliRunner().invoke(app, ["info", str(image), "--json"])
    assert result.exit_code == 0, result.output
    (vol,) = json.loads(result.stdout)["volumes"]
    fs = vol["filesystem"]
    assert (fs["type"], fs["backend"]) == ("xfs", "pyfsxfs")
    assert fs["label"] == truth("xfs")["volume"]["label"]
    assert fs["serial"] == truth("xfs")["volume"]["uuid"]


def test_xfs_ls_equals_xfs_db_and_builder(xfs):
    image, rows = xfs
    entries = _ls(image)
    inodes = _xfs_db_inodes(image)
    assert set(entries) == set(inodes) == {p for p in rows if p}
    for path, entry in entries.items():
        assert entry["entry"] == inodes[path], path
    _check_entries(entries, rows, streams=True)


def test_xfs_collect_equals_builder(xfs, tmp_path):
    image, rows = xfs
    rule = tmp_path / "everything.yaml"
    rule.write_text(EVERYTHING)
    items = _collect(image, tmp_path, "--rule", str(rule))
    files = {i["path"]: i for i in items if not i["stream"]}
    assert set(files) == {p for p, r in rows.items() if r["type"] in ("file", "symlink")}
    for path, item in files.items():
        assert item["outcome"] in ("collected", "duplicate"), item
        assert item["timestamps"]["times"] == rows[path]["times"], path
        if rows[path]["type"] == "file":
            assert item["hashes"]["sha256"] == rows[path]["sha256"], path
        else:  # a symlink's data is its target
            assert item["_sha256"] == hashlib.sha256(rows[path]["link_target"].encode()).hexdigest()
    streams = {(i["path"], i["stream"]): i for i in items if i["stream"]}
    expected = {(p, n): h for p, r in rows.items() for n, h in r.get("xattrs", {}).items()}
    assert {k: v["hashes"]["sha256"] for k, v in streams.items()} == expected


@pytest.fixture(scope="module")
def ext4(unpacked, truth) -> tuple[Path, dict[str, dict]]:
    rows = {r["path"]: r for r in truth("ext4-linux")["entries"]}
    return unpacked("ext4-linux.raw"), rows


def test_ext4_times_to_the_nanosecond_with_crtime(ext4):
    """The Sleuth Kit reads ext4's nanoseconds and crtime exactly (the builder's values,
    written with debugfs), hard links share an inode; it does not list extended
    attributes (pyfsext does, but only the first time an inode is read: see README)."""
    image, rows = ext4
    entries = _ls(image)
    entries.pop("lost+found")
    assert set(entries) == {p for p in rows if p}
    # TSK's mode holds the permission bits only (no file-type bits).
    _check_entries(entries, rows, streams=False, mode_mask=0o7777)
    link, twin = rows["home/alice/Documents/big-hardlink.bin"], rows["home/alice/Documents/big.bin"]
    assert entries[link["path"]]["entry"] == entries[twin["path"]]["entry"] == twin["inode"]
    assert entries["home/alice/Documents/big.bin"]["streams"] == []


def _expected_linux_artifacts(rows: dict[str, dict]) -> set[str]:
    wanted = re.compile(
        r"^(var/log/.+|etc/(passwd|shadow|crontab)|etc/ssh/(sshd_config|ssh_host_.+)"
        r"|etc/systemd/system/.+|(root|home/alice)/\.(bash|zsh)_history"
        r"|home/alice/\.local/share/fish/fish_history"
        r"|home/alice/\.ssh/(authorized_keys|known_hosts|id_ed25519(\.pub)?))$"
    )
    return {p for p, r in rows.items() if r["type"] == "file" and wanted.match(p)}


@pytest.mark.parametrize("name", ["xfs", "ext4-linux"])
def test_triage_collects_linux_artifacts(name, unpacked, truth, tmp_path):
    rows = {r["path"]: r for r in truth(name)["entries"]}
    items = _collect(unpacked(f"{name}.raw"), tmp_path)
    collected = {i["path"]: i for i in items if not i["stream"]}
    assert set(collected) == _expected_linux_artifacts(rows)
    for path, item in collected.items():
        assert item["hashes"]["sha256"] == rows[path]["sha256"], path
    journal = collected["var/log/journal/4b1d8f0e2c3a4d5e9f60718293a4b5c6/system.journal"]
    assert "linux-logs" in journal["rules"]


def test_triage_collects_fseventsd_on_apfs(shared, tmp_path):
    image = shared("apfs/apfs.raw")
    text = subprocess.run(
        [need_tool("fsapfsinfo"), "-H", str(image)], check=True, capture_output=True,
        text=True, env=ENV,
    ).stdout
    expected = {
        line.split("}/", 1)[1] for line in text.splitlines() if "}/.fseventsd/" in line
    }
    assert len(expected) == 3
    items = _collect(image, tmp_path)
    assert {i["path"] for i in items if not i["stream"]} == expected
    assert all(i["rules"] == ["macos-fseventsd"] for i in items)


def test_damaged_xfs_superblock_is_one_line(xfs, tmp_path):
    image, _ = xfs
    data = bytearray(image.read_bytes())
    data[56:64] = (999_999).to_bytes(8, "big")  # sb_rootino: no such inode
    bad = tmp_path / "bad.raw"
    bad.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["ls", str(bad)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len([x for x in result.output.splitlines() if x.strip()]) == 1, result.output


def test_truncated_xfs_is_one_line(xfs, tmp_path):
    image, _ = xfs
    bad = tmp_path / "truncated.raw"
    bad.write_bytes(image.read_bytes()[: 1 << 20])
    result = CliRunner().invoke(app, ["collect", str(bad), "-o", str(tmp_path / "t.zip"), "--quiet"])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output


def _iso_ns(text: str) -> int:
    import datetime as dt

    base, frac = text.rstrip("Z").split(".")
    when = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0"))


def test_extract_restores_xfs_content_and_mtime(xfs, tmp_path):
    """``extract`` reads the manifest's ``timestamps.times.modified`` (non-NTFS times)."""
    image, rows = xfs
    rule = tmp_path / "everything.yaml"
    rule.write_text(EVERYTHING)
    _collect(image, tmp_path, "--rule", str(rule))
    dest = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(tmp_path / f"{image.stem}.zip"), str(dest)])
    assert result.exit_code == 0, result.output
    (volume_dir,) = [p for p in dest.iterdir() if p.is_dir()]
    checked = 0
    for path, row in rows.items():
        if row["type"] != "file":
            continue
        out = volume_dir / path
        assert hashlib.sha256(out.read_bytes()).hexdigest() == row["sha256"], path
        assert out.stat().st_mtime_ns == _iso_ns(row["times"]["modified"]), path
        checked += 1
    assert checked == sum(1 for r in rows.values() if r["type"] == "file")


@pytest.mark.parametrize("meta", ["crc=0", "bigtime=1"], ids=["v4", "v5-bigtime"])
def test_xfs_other_formats_against_xfs_db(meta, tmp_path):
    """A v4 file system (no crtime) and a v5 one with big timestamps (the mkfs default),
    built here from a protofile: times equal what xfs_db prints for each inode."""
    import datetime as dt

    mkfs = need_tool("mkfs.xfs")
    data = {"a.txt": b"alpha\n", "b.bin": bytes(range(256)) * 300}
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    proto = tmp_path / "proto"
    proto.write_text(
        "x\n0 0\nd--755 0 0\n"
        + "".join(f"{n} ---644 0 0 {tmp_path / n}\n" for n in data)
        + "d1 d--700 0 0\n$\n$\n"
    )
    image = tmp_path / "x.raw"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    env = {**ENV, "TEST_DIR": "/tmp", "TEST_DEV": "/dev/null", "QA_CHECK_FS": "1"}
    subprocess.run([mkfs, "-q", "-m", meta, "-p", str(proto), str(image)],
                   check=True, capture_output=True, env=env)
    entries = _ls(image)
    inodes = _xfs_db_inodes(image)
    assert set(entries) == set(inodes) == {"a.txt", "b.bin", "d1"}
    fields = {"modified": "core.mtime", "changed": "core.ctime", "accessed": "core.atime"}
    if meta != "crc=0":
        fields["created"] = "v3.crtime"
    for path, entry in entries.items():
        assert entry["entry"] == inodes[path]
        names = " ".join(f"{f}.sec {f}.nsec" for f in fields.values())
        text = subprocess.run(
            [need_tool("xfs_db"), "-r", "-c", f"inode {inodes[path]}", "-c", f"print {names}",
             str(image)], check=True, capture_output=True, text=True, env=ENV,
        ).stdout
        printed = dict(re.findall(r"^(\S+) = (.*)$", text, re.M))
        for key, field in fields.items():
            when = dt.datetime.strptime(printed[f"{field}.sec"], "%a %b %d %H:%M:%S %Y")
            ns = int(when.replace(tzinfo=dt.UTC).timestamp()) * 10**9 + int(printed[f"{field}.nsec"])
            assert _iso_ns(entry["timestamps"]["times"][key]) == ns, (path, key)
        if meta == "crc=0":
            assert entry["timestamps"]["times"]["created"] is None
    rule = tmp_path / "everything.yaml"
    rule.write_text(EVERYTHING)
    items = _collect(image, tmp_path, "--rule", str(rule))
    got = {i["path"]: i["hashes"]["sha256"] for i in items if not i["stream"]}
    assert got == {n: hashlib.sha256(c).hexdigest() for n, c in data.items()}


def test_triage_collects_macos_artifacts(unpacked, truth, tmp_path):
    """The macOS rules' globs on a macOS directory layout (ext4: nothing here writes APFS):
    exactly the files the builder marked, each equal to its SHA-256."""
    rows = {r["path"]: r for r in truth("ext4-macos-layout")["entries"]}
    items = _collect(unpacked("ext4-macos-layout.raw"), tmp_path)
    collected = {i["path"]: i for i in items if not i["stream"]}
    assert set(collected) == {p for p, r in rows.items() if r["macos_rules"]}
    for path, item in collected.items():
        assert item["hashes"]["sha256"] == rows[path]["sha256"], path
        assert all(rule.startswith("macos-") for rule in item["rules"]), (path, item["rules"])
    assert collected["Users/bob/Library/LaunchAgents/com.evil.persist.plist"]["rules"] == [
        "macos-launch-items"
    ]

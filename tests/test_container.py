"""Tests of the ZIP writer, the seal and the reader (verify, extract, summary)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from selective_imager.collect.hashing import ALGORITHMS, MultiHasher
from selective_imager.container.names import encode_member_path
from selective_imager.container.reader import extract, open_container, summary, verify
from selective_imager.container.seal import (
    ACQUISITION_NAME,
    MANIFEST_NAME,
    SEAL_NAME,
    Sealer,
    parse_seal,
    write_seal,
)
from selective_imager.container.zipwriter import DEFLATED, STORED, ZipWriter
from selective_imager.errors import ContainerError

MTIME = 1_446_546_093  # 2015-11-03T10:21:33Z


def hashes_of(data: bytes) -> dict[str, str]:
    return {alg: hashlib.new(alg, data).hexdigest() for alg in ALGORITHMS}


def build_container(path: Path, *, force_zip64: bool = False, small_files: int = 300) -> dict:
    """A container like the collector writes; returns the logical content per item."""
    rng = __import__("random").Random(7)
    files: dict[tuple[str, str, str], bytes] = {
        ("p1", "Windows/System32/config/SYSTEM", ""): rng.randbytes(700_000),
        ("p1", "zeros.bin", ""): bytes(3 << 20),
        ("p1", "text/log.txt", ""): b"".join(b"event %d ok\n" % i for i in range(40_000)),
        ("p1", "CON", ""): b"device name",
        ("p1", "we:ird<>|?*/na.me. ", ""): b"odd",
        ("p1", "$Extend/$UsnJrnl", "$J"): b"usn" * 1000,
        ("p2/bitlocker", "Users/Ünï/日本.txt", ""): "ünïcødé".encode() * 50,
        ("p1", "empty", ""): b"",
    }
    for i in range(small_files):
        files[("p1", f"many/f{i:04d}.dat", "")] = rng.randbytes(rng.randrange(0, 300))
    # Sparse: 1 MiB logical file with two data runs.
    sparse_runs = [(4096, b"A" * 5000), (600_000, rng.randbytes(70_000))]
    sparse_logical = bytearray(1 << 20)
    for off, chunk in sparse_runs:
        sparse_logical[off : off + len(chunk)] = chunk
    manifest: list[dict] = []
    logical: dict[str, bytes] = {}
    with ZipWriter(path, force_zip64=force_zip64) as zw:
        for (vol, p, stream), data in files.items():
            name = encode_member_path(vol, p, stream)
            with zw.begin(name, mtime=MTIME) as member:
                for pos in range(0, len(data), 256 << 10):
                    member.write(data[pos : pos + (256 << 10)])
            manifest.append(
                {
                    "path": p,
                    "stream": stream,
                    "volume": vol,
                    "container_path": name,
                    "size": len(data),
                    "allocated_size": len(data),
                    "hashes": hashes_of(data),
                    "rules": ["test"],
                    "outcome": "collected",
                    "error": None,
                    "timestamps": {"si": {"modified": "2015-11-03T10:21:33.1234567Z"}},
                }
            )
            logical[f"{vol}/{p}" + (f":{stream}" if stream else "")] = data
        sparse_name = encode_member_path("p1", "sparse.vhd")
        with zw.begin(sparse_name, mtime=MTIME) as member:
            for _, chunk in sparse_runs:
                member.write(chunk)
        manifest.append(
            {
                "path": "sparse.vhd",
                "stream": "",
                "volume": "p1",
                "container_path": sparse_name,
                "size": len(sparse_logical),
                "hashes": hashes_of(bytes(sparse_logical)),
                "outcome": "collected",
                "sparse": {
                    "logical_size": len(sparse_logical),
                    "ranges": [[off, len(chunk)] for off, chunk in sparse_runs],
                },
            }
        )
        logical["p1/sparse.vhd"] = bytes(sparse_logical)
        # A duplicate: streamed, recognised as a copy, rolled back, pointed at the first.
        dup_data = files[("p1", "Windows/System32/config/SYSTEM", "")]
        member = zw.begin(encode_member_path("p1", "copy/SYSTEM"), mtime=MTIME)
        member.write(dup_data)
        member.discard()
        manifest.append(
            {
                "path": "copy/SYSTEM",
                "stream": "",
                "volume": "p1",
                "container_path": encode_member_path("p1", "Windows/System32/config/SYSTEM"),
                "size": len(dup_data),
                "hashes": hashes_of(dup_data),
                "outcome": "duplicate",
            }
        )
        logical["p1/copy/SYSTEM"] = dup_data
        manifest.append(
            {"path": "locked.dat", "volume": "p1", "outcome": "failed", "error": "read error"}
        )
        zw.add_bytes(
            MANIFEST_NAME,
            b"".join(json.dumps(m, ensure_ascii=False).encode() + b"\n" for m in manifest),
            mtime=MTIME,
        )
        zw.add_bytes(
            ACQUISITION_NAME,
            json.dumps({"tool": "selective-imager test", "source": {"path": "disk.raw"}}).encode(),
        )
        zw.add_bytes("log.jsonl", b'{"msg": "done"}\n')
        zw.add_bytes("rules/test.yaml", b"name: test\n")
        write_seal(zw, tool="selective-imager test")
    return logical


@pytest.fixture(scope="module")
def container(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    path = tmp_path_factory.mktemp("box") / "evidence.zip"
    logical = build_container(path)
    return path, logical


def copy_of(path: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.zip"
    shutil.copyfile(path, dst)
    return dst


def data_offset(path: Path, name: str) -> tuple[int, zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def rewrite_without(src: Path, dst: Path, drop: str) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != drop:
                zout.writestr(info, zin.read(info.filename))


# -- the writer ----------------------------------------------------------------------------


def test_python_zipfile_reads_everything(container):
    path, _ = container
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[-1] == SEAL_NAME
        assert len(names) == len(set(names))
        assert zf.read("files/p1/%43ON") == b"device name"
        assert zf.read("files/p1/$Extend/$UsnJrnl%3A$J") == b"usn" * 1000
        methods = {i.filename: i.compress_type for i in zf.infolist()}
        info = zf.getinfo("files/p1/Windows/System32/config/SYSTEM")
        assert info.date_time == (2015, 11, 3, 10, 21, 32)  # DOS: 2-second steps
    # Random data is stored, compressible data deflated (the trial rule).
    assert methods["files/p1/Windows/System32/config/SYSTEM"] == STORED
    assert methods["files/p1/zeros.bin"] == DEFLATED
    assert methods["files/p1/text/log.txt"] == DEFLATED
    assert "files/p1/copy/SYSTEM" not in methods


def test_unzip_test_passes(container):
    unzip = shutil.which("unzip")
    if unzip is None:
        pytest.skip("Info-ZIP unzip not installed (apt-get install unzip)")
    path, _ = container
    result = subprocess.run([unzip, "-tq", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    zipinfo = subprocess.run([unzip, "-Zv", str(path)], capture_output=True, text=True)
    # Local and central headers agree: zipinfo sees no gaps between members.
    assert "preceding this file" not in zipinfo.stdout


def test_7zip_test_passes(container):
    seven = shutil.which("7zz") or shutil.which("7z")
    if seven is None:
        pytest.skip("7-Zip not installed (apt-get install 7zip)")
    path, _ = container
    result = subprocess.run([seven, "t", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Everything is Ok" in result.stdout


def test_forced_zip64_and_many_members(tmp_path):
    path = tmp_path / "z64.zip"
    with ZipWriter(path, force_zip64=True, fsync=False) as zw:
        for i in range(66_000):
            zw.add_bytes(f"m/{i}", b"%d" % i, compress=False, mtime=MTIME)
        zw.add_bytes("big", bytes(2 << 20), mtime=MTIME)
    raw = path.read_bytes()
    assert struct.pack("<I", 0x06064B50) in raw[-200:]  # ZIP64 end record
    with zipfile.ZipFile(path) as zf:
        assert len(zf.infolist()) == 66_001
        assert zf.read("m/65999") == b"65999"
        assert zf.testzip() is None
    unzip = shutil.which("unzip")
    if unzip:
        result = subprocess.run([unzip, "-tq", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-500:]
    seven = shutil.which("7zz") or shutil.which("7z")
    if seven:
        result = subprocess.run([seven, "t", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-500:]


def test_discard_leaves_no_trace(tmp_path):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    with ZipWriter(a) as zw:
        zw.add_bytes("one", b"1" * 1000, mtime=MTIME)
        m = zw.begin("two", compress=True, mtime=MTIME)
        m.write(os.urandom(3 << 20))
        m.discard()
        with pytest.raises(ContainerError):
            m.write(b"x")
        zw.add_bytes("three", b"3" * 1000, mtime=MTIME)
    with ZipWriter(b) as zw:
        zw.add_bytes("one", b"1" * 1000, mtime=MTIME)
        zw.add_bytes("three", b"3" * 1000, mtime=MTIME)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("compress", [True, False, None])
def test_output_hash_follows_the_writer(tmp_path, compress):
    """The SHA-256 computed while writing equals hashlib over the finished file, also
    when members are discarded after more than a hash step was written."""
    path = tmp_path / "h.zip"
    rng = __import__("random").Random(3)
    with ZipWriter(path, hash_output=True, fsync=False) as zw:
        for i in range(40):
            zw.add_bytes(f"small/{i}", rng.randbytes(rng.randrange(0, 50_000)), compress=compress)
        big = zw.begin("big", compress=compress)
        for _ in range(5):
            big.write(rng.randbytes(1 << 20))
        big.close()
        dropped = zw.begin("dropped", compress=compress)
        dropped.write(rng.randbytes(3 << 20))
        dropped.discard()
        zw.add_bytes("after", b"x" * 2_000_000, compress=compress)
    assert zw.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None and "dropped" not in zf.namelist()


def test_writer_refuses_bad_use(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"existing")
    with pytest.raises(ContainerError, match="cannot create"):
        ZipWriter(path)
    with ZipWriter(path, overwrite=True) as zw:
        for bad in ("../evil", "/abs", "a//b", "a/./b", "c:/x", "a\\b", ""):
            with pytest.raises(ContainerError):
                zw.begin(bad)
        zw.add_bytes("ok", b"")
        with pytest.raises(ContainerError, match="duplicate"):
            zw.begin("ok")
        m = zw.begin("open")
        with pytest.raises(ContainerError, match="still open"):
            zw.begin("other")
        m.write(b"data")
        # Closing the writer with a member open discards that member.
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["ok"]


def test_exception_in_member_block_discards(tmp_path):
    path = tmp_path / "x.zip"
    with ZipWriter(path) as zw:
        with pytest.raises(RuntimeError), zw.begin("boom") as m:
            m.write(b"partial")
            raise RuntimeError("read failed")
        zw.add_bytes("after", b"fine")
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["after"]


def test_member_sha256_inline_or_supplied(tmp_path):
    data = os.urandom(2_500_000)
    with ZipWriter(tmp_path / "x.zip", threads=0) as zw:
        inline = zw.add_bytes("a", data)
        hasher = MultiHasher(("sha256",))
        m = zw.begin("b", hash_content=False, compress=True)
        m.write(data)
        hasher.update(data)
        supplied = m.close(sha256=hasher.digests().get("sha256"))
        missing = zw.begin("c", hash_content=False)
        missing_info = missing.close()
        with pytest.raises(ContainerError, match="no SHA-256"):
            write_seal(zw, tool="t")
    expected = hashlib.sha256(data).hexdigest()
    assert inline.sha256 == supplied.sha256 == expected
    assert missing_info.sha256 is None
    assert supplied.method == DEFLATED and supplied.crc32 == inline.crc32


def test_sealer_document():
    sealer = Sealer()
    sealer.add("a", "AB" * 32)
    doc = sealer.document(tool="t", created="2020-01-01T00:00:00Z", extra={"run": 1})
    assert doc["members"] == {"a": "ab" * 32} and doc["run"] == 1
    seal = parse_seal(sealer.to_bytes(tool="t"))
    assert seal.members == {"a": "ab" * 32} and seal.algorithm == "sha256"
    with pytest.raises(ContainerError):
        parse_seal(b"{not json")
    with pytest.raises(ContainerError):
        sealer.add(SEAL_NAME, "00")


# -- verify --------------------------------------------------------------------------------


def test_verify_passes(container):
    path, logical = container
    report = verify(path)
    assert report.intact, report.differences
    assert report.seal_present
    assert report.items_checked == len(logical)
    with open_container(path) as box:
        seal = box.seal()
        assert seal is not None
        assert set(seal.members) == set(box.names) - {SEAL_NAME}


def test_verify_names_a_modified_stored_member(container, tmp_path):
    path = copy_of(container[0], tmp_path)
    name = "files/p1/Windows/System32/config/SYSTEM"
    offset, info = data_offset(path, name)
    assert info.compress_type == STORED
    flip_byte(path, offset + 1234)
    report = verify(path)
    assert not report.intact
    kinds = {(d.member, d.kind) for d in report.differences}
    assert (name, "modified") in kinds
    assert {d.member for d in report.differences} == {name}


def test_verify_names_a_modified_deflated_member(container, tmp_path):
    path = copy_of(container[0], tmp_path)
    name = "files/p1/text/log.txt"
    offset, info = data_offset(path, name)
    assert info.compress_type == DEFLATED
    flip_byte(path, offset + info.compress_size // 2)
    report = verify(path)
    assert not report.intact
    assert any(d.member == name and d.kind == "modified" for d in report.differences)


def test_verify_names_a_removed_member(container, tmp_path):
    path = tmp_path / "removed.zip"
    name = encode_member_path("p1", "we:ird<>|?*/na.me. ")
    rewrite_without(container[0], path, name)
    report = verify(path)
    assert not report.intact
    assert any(d.member == name and d.kind == "missing" for d in report.differences)


def test_verify_unexpected_and_seal_missing(container, tmp_path):
    path = copy_of(container[0], tmp_path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("planted.txt", b"not mine")
    report = verify(path)
    assert [(d.member, d.kind) for d in report.differences] == [("planted.txt", "unexpected")]

    unsealed = tmp_path / "unsealed.zip"
    rewrite_without(container[0], unsealed, SEAL_NAME)
    report = verify(unsealed)
    assert not report.intact
    assert [d.kind for d in report.differences] == ["seal-missing"]
    assert report.items_checked > 0  # the manifest hashes are still checked


def test_verify_manifest_mismatch(tmp_path):
    path = tmp_path / "m.zip"
    with ZipWriter(path) as zw:
        zw.add_bytes("files/p1/a", b"hello")
        item = {
            "path": "a",
            "volume": "p1",
            "container_path": "files/p1/a",
            "outcome": "collected",
            "hashes": {"md5": "0" * 32, "sha256": hashlib.sha256(b"hello").hexdigest()},
        }
        zw.add_bytes(MANIFEST_NAME, json.dumps(item).encode() + b"\nnot json\n")
        write_seal(zw, tool="t")
    report = verify(path)
    found = [(d.kind, d.member, d.expected) for d in report.differences]
    assert ("manifest-mismatch", "files/p1/a", "0" * 32) in found
    assert any(k == "manifest-mismatch" and m == MANIFEST_NAME for k, m, _ in found)
    assert len(found) == 2


def test_verify_rejects_non_zip(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ContainerError):
        verify(bad)


# -- extract -------------------------------------------------------------------------------


def test_extract_restores_everything(container, tmp_path):
    path, logical = container
    dest = tmp_path / "out"
    report = extract(path, dest)
    assert report.ok, (report.refused, report.failed)
    assert report.files == len(logical)
    written = dict(report.written)
    for label, data in logical.items():
        target = Path(written[label])
        assert dest.resolve() in target.parents
        got = hashlib.sha256(target.read_bytes()).hexdigest()
        assert got == hashlib.sha256(data).hexdigest(), label
        # From the manifest's $SI time when it has one, else the member's time.
        with_times = label not in ("p1/sparse.vhd", "p1/copy/SYSTEM")
        expected_ns = 1_446_546_093_123_456_700 if with_times else MTIME * 10**9
        assert target.stat().st_mtime_ns == expected_ns
    assert (dest / "p1" / "Windows/System32/config/SYSTEM").is_file()
    assert (dest / "p1" / "$Extend" / "$UsnJrnl:$J").is_file()
    assert (dest / "p1" / "CON").is_file()  # fine on POSIX
    assert (dest / "p2%2Fbitlocker" / "Users" / "Ünï" / "日本.txt").is_file()
    assert (dest / "p1" / "we:ird<>|?*" / "na.me. ").is_file()
    sparse = dest / "p1" / "sparse.vhd"
    assert sparse.stat().st_size == 1 << 20
    assert sparse.stat().st_blocks * 512 < (1 << 20)  # holes, not written zeros
    # A second extraction into the now non-empty dest is refused once, before writing;
    # with overwrite (--force) the files are replaced.
    with pytest.raises(ContainerError, match="not empty"):
        extract(path, dest, pattern="*SYSTEM")
    again = extract(path, dest, pattern="*SYSTEM", overwrite=True)
    assert again.files == 2 and not again.refused


def test_extract_pattern(container, tmp_path):
    path, _ = container
    report = extract(path, tmp_path / "out", pattern="many/f00*")
    assert report.ok
    assert report.files == 100
    report = extract(path, tmp_path / "out2", pattern="p1/$Extend/*:$J")
    assert [label for label, _ in report.written] == ["p1/$Extend/$UsnJrnl:$J"]


def test_extract_refuses_escapes(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("files/p1/x", b"payload")
        items = [
            {"path": "../../escaped", "volume": "p1", "container_path": "files/p1/x"},
            {"path": "a/../../../escaped2", "volume": "p1", "container_path": "files/p1/x"},
            {"path": "ok", "volume": "..", "container_path": "files/p1/x"},
            {"path": "/etc/abs", "volume": "p1", "container_path": "files/p1/x"},
            {"path": "via/link/f", "volume": "p1", "container_path": "files/p1/x"},
        ]
        zf.writestr(
            MANIFEST_NAME,
            "\n".join(json.dumps({**i, "outcome": "collected"}) for i in items),
        )
    dest = tmp_path / "dest"
    (dest / "p1" / "via").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "p1" / "via" / "link").symlink_to(outside)
    # dest is prepared (not empty): overwrite, which still never follows a symlink.
    report = extract(evil, dest, overwrite=True)
    assert not list(outside.iterdir())
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "escaped2").exists()
    written = [Path(p) for _, p in report.written]
    for p in written:
        assert dest.resolve() in p.parents
    # '..' segments are written in their encoded form inside dest, or refused.
    assert (dest / "p1" / "%2E%2E" / "%2E%2E" / "escaped").is_file()
    assert (dest / "%2E%2E" / "ok").is_file()
    assert (dest / "p1" / "%" / "etc" / "abs").is_file()
    assert [label for label, _ in report.refused] == ["p1/via/link/f"]

    # Without a manifest: member names are decoded, and raw '..' names refused.
    raw = tmp_path / "raw.zip"
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("files/p1/../../escaped3", b"x")
        zf.writestr("files/p1/%2E%2E/inside", b"y")
    report = extract(raw, tmp_path / "dest2")
    assert not (tmp_path / "escaped3").exists()
    assert [name for name, _ in report.refused] == ["files/p1/../../escaped3"]
    assert (tmp_path / "dest2" / "p1" / "%2E%2E" / "inside").read_bytes() == b"y"


# -- summary -------------------------------------------------------------------------------


def test_summary(container):
    path, logical = container
    info = summary(path)
    assert info["outcomes"] == {"collected": len(logical) - 1, "duplicate": 1, "failed": 1}
    assert info["seal"]["present"] and info["seal"]["covers_all"]
    assert info["acquisition"]["tool"] == "selective-imager test"
    assert info["manifest_errors"] == 0


def test_duplicate_uses_the_layout_of_the_member_it_points_at(tmp_path):
    # The stored copy is a plain file; the duplicate's own file was sparse. Both have
    # the same logical content, so the duplicate is decoded with the owner's layout.
    logical = bytes(10_000) + b"data" * 1000 + bytes(20_000)
    path = tmp_path / "d.zip"
    with ZipWriter(path) as zw:
        zw.add_bytes("files/p1/plain", logical)
        items = [
            {"path": "plain", "volume": "p1", "container_path": "files/p1/plain"},
            {
                "path": "sparse-copy",
                "volume": "p1",
                "container_path": "files/p1/plain",
                "outcome": "duplicate",
                "sparse": {"logical_size": len(logical), "ranges": [[10_000, 4000]]},
            },
        ]
        lines = [
            json.dumps({"outcome": "collected", **i, "hashes": hashes_of(logical)}) for i in items
        ]
        zw.add_bytes(MANIFEST_NAME, "\n".join(lines).encode())
        write_seal(zw, tool="t")
    report = verify(path)
    assert report.intact, report.differences
    assert report.items_checked == 2
    out = extract(path, tmp_path / "out")
    assert out.ok
    assert (tmp_path / "out" / "p1" / "sparse-copy").read_bytes() == logical

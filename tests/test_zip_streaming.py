"""The ZIP writer's streaming mode: strictly sequential output with data descriptors.

Oracles: Info-ZIP ``unzip -t`` and ``zipinfo -v``, Python's zipfile (its central
directory reading is independent of the local-header scan of ``recover``), the ``age``
CLI, hashlib over the bytes the sink received.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from selective_imager.container.recover import scan_local_headers
from selective_imager.container.zipwriter import ZipWriter
from tests.conftest import need_tool


class FileSink:
    """A StreamSink over a local file that refuses any seek: append and truncate only."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "xb")
        self.where = str(path)
        self.writes = 0
        self._pos = 0
        self._sha = hashlib.sha256()
        self._mark = (0, self._sha.copy())
        self._digest: str | None = None

    @property
    def sha256(self) -> str | None:
        return self._digest

    @property
    def kept(self) -> int:
        return self._pos

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        assert self.fh.tell() == self._pos  # never anywhere but the end
        self.fh.write(view)
        self._sha.update(view)
        self._pos += view.nbytes
        self.writes += 1
        return view.nbytes

    def mark(self) -> None:
        self._mark = (self._pos, self._sha.copy())

    def can_truncate(self, size: int) -> bool:
        return size == self._mark[0]

    def truncate(self, size: int) -> int:
        self.fh.truncate(size)
        self.fh.seek(size)
        self._pos = size
        self._sha = self._mark[1].copy()
        return size

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
        self._digest = self._sha.hexdigest()

    def abort(self) -> None:
        self.fh.close()


def _members(writer: ZipWriter, rng: random.Random) -> dict[str, bytes]:
    content = {
        "text.txt": b"".join(b"row %d\n" % i for i in range(200_000)),  # deflated
        "random.bin": rng.randbytes(3 << 20),  # stored (the trial saves nothing)
        "empty": b"",
        "tiny-stored": b"abc",
    }
    for name, data in content.items():
        member = writer.begin(name, compress=False if name == "tiny-stored" else None, mtime=1_700_000_000)
        for i in range(0, len(data), 1 << 20):
            member.write(data[i : i + (1 << 20)])
        member.close()
    dropped = writer.begin("dropped.bin")
    dropped.write(rng.randbytes(700_000))
    dropped.discard()
    content["after.txt"] = b"written after a dropped member\n" * 100
    writer.add_bytes("after.txt", content["after.txt"])
    return content


def test_streamed_zip_is_read_by_every_reader(tmp_path):
    path = tmp_path / "s.zip"
    sink = FileSink(path)
    writer = ZipWriter(path, sink=sink, threads=2)
    content = _members(writer, random.Random(1))
    writer.close()
    assert writer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert subprocess.run([need_tool("unzip"), "-tq", str(path)], capture_output=True).returncode == 0
    info = subprocess.run([need_tool("zipinfo"), "-v", str(path)], capture_output=True, text=True).stdout
    assert info.count("extended local header:                          yes") == len(content)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert {i.filename: zf.read(i) for i in zf.infolist()} == content
        assert all(i.flag_bits & 0x08 for i in zf.infolist())
        central = {i.filename: (i.header_offset, i.CRC, i.compress_size, i.file_size) for i in zf.infolist()}
    # recover's walk of the local headers (no central directory used) finds the same.
    cut = tmp_path / "killed.zip"
    first_cd = path.read_bytes().find(b"PK\x01\x02")
    cut.write_bytes(path.read_bytes()[:first_cd])
    scan = scan_local_headers(cut)
    assert scan.reason == "end of file"
    assert {m.name: (m.offset, m.crc32, m.compressed_size, m.size) for m in scan.members} == central


def test_a_torn_streamed_member_is_where_the_scan_stops(tmp_path):
    path = tmp_path / "s.zip"
    writer = ZipWriter(path, sink=FileSink(path), threads=0)
    _members(writer, random.Random(2))
    writer.close()
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        text = zf.getinfo("text.txt")
        random_bin = zf.getinfo("random.bin")
    # Cut inside the deflated member's descriptor, then inside the stored member's data.
    for end, kept in ((random_bin.header_offset - 5, 0), (random_bin.header_offset + 1000, 1)):
        torn = tmp_path / f"torn{end}.zip"
        torn.write_bytes(data[:end])
        scan = scan_local_headers(torn)
        assert [m.name for m in scan.members] == ["text.txt"][:kept]
        assert "torn" in scan.reason
    assert text.header_offset == 0


def test_streamed_age_container_decrypts_with_the_age_cli(tmp_path):
    if shutil.which("age-keygen") is None:
        pytest.skip("age not installed")
    from selective_imager.container.age import parse_recipient

    made = subprocess.run(["age-keygen", "-o", str(tmp_path / "key")], capture_output=True, text=True, check=True)
    recipient = parse_recipient(made.stderr.strip().split()[-1])
    path = tmp_path / "s.zip.age"
    sink = FileSink(path)
    writer = ZipWriter(path, sink=sink, encrypt_to=[recipient], threads=2)
    content = _members(writer, random.Random(3))
    writer.close()
    assert writer.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    plain = tmp_path / "plain.zip"
    plain.write_bytes(
        subprocess.run(["age", "-d", "-i", str(tmp_path / "key"), str(path)], capture_output=True, check=True).stdout
    )
    assert subprocess.run([need_tool("unzip"), "-tq", str(plain)], capture_output=True).returncode == 0
    with zipfile.ZipFile(plain) as zf:
        # The dropped member's chunks were encrypted already: its bytes stay, unlisted.
        assert {i.filename: zf.read(i) for i in zf.infolist()} == content
    assert plain.stat().st_size > len(content["random.bin"]) + 700_000

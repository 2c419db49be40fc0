"""Tests of selective_imager.collect.hashing: MultiHasher and the full-source hash."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from selective_imager.collect.hashing import (
    ALGORITHMS,
    MultiHasher,
    hash_source,
    parse_algorithms,
)
from selective_imager.streams import ByteStream, FileStream, RangeStream


class MemStream(ByteStream):
    """In-memory stream; reads touching a bad sector raise OSError."""

    def __init__(self, data: bytes, bad_sectors=(), sector=512, flaky_once=False) -> None:
        super().__init__(len(data))
        self.data = data
        self.bad = set(bad_sectors)
        self.sector = sector
        self.flaky_once = flaky_once
        self.failed: set[tuple[int, int]] = set()
        self.reads = 0

    def _read_at(self, offset: int, size: int) -> bytes:
        self.reads += 1
        if self.flaky_once and (offset, size) not in self.failed:
            self.failed.add((offset, size))
            raise OSError(5, "transient")
        first = offset // self.sector
        last = (offset + size - 1) // self.sector
        if any(s in self.bad for s in range(first, last + 1)):
            raise OSError(5, "Input/output error")
        return self.data[offset : offset + size]


class ShortStream(MemStream):
    """Claims more bytes than it can deliver (a truncated device)."""

    def __init__(self, data: bytes, claimed: int) -> None:
        super().__init__(data)
        self._size = claimed


def _ref(data: bytes) -> dict[str, str]:
    return {alg: hashlib.new(alg, data).hexdigest() for alg in ALGORITHMS}


def test_parse_algorithms():
    assert parse_algorithms("md5,sha256") == ("md5", "sha256")
    assert parse_algorithms(" SHA256 , md5, md5") == ("md5", "sha256")
    assert parse_algorithms("none") == ()
    assert parse_algorithms("") == ()
    with pytest.raises(ValueError, match="blake2b"):
        parse_algorithms("md5,blake2b")
    with pytest.raises(ValueError):
        parse_algorithms("none,md5")


@pytest.mark.parametrize("size", [0, 1, 1000, (1 << 20) + 17, 3 << 20])
def test_multihasher_matches_hashlib(size):
    data = os.urandom(size)
    hasher = MultiHasher(ALGORITHMS)
    hasher.update(data[: size // 3])
    hasher.update(memoryview(data)[size // 3 :])
    assert hasher.bytes_hashed == size
    assert hasher.digests().as_dict() == _ref(data)


def test_multihasher_zeros_and_subset():
    hasher = MultiHasher(("sha1",))
    hasher.update(b"abc")
    hasher.update_zeros(5 << 20)
    hasher.update(b"xyz")
    expected = hashlib.sha1(b"abc" + bytes(5 << 20) + b"xyz").hexdigest()
    assert hasher.digests().as_dict() == {"sha1": expected}
    assert MultiHasher(()).digests().values == ()
    with pytest.raises(ValueError):
        MultiHasher(("md5", "crc"))


def test_multihasher_bytearray_reuse():
    # update() returns only when every algorithm is done: reusing the buffer is safe.
    buf = bytearray(2 << 20)
    hasher = MultiHasher(ALGORITHMS)
    ref = {alg: hashlib.new(alg) for alg in ALGORITHMS}
    for i in range(4):
        buf[:] = bytes([i]) * len(buf)
        hasher.update(buf)
        for h in ref.values():
            h.update(bytes(buf))
    assert hasher.digests().as_dict() == {a: h.hexdigest() for a, h in ref.items()}


def test_hash_source_file_and_pieces(tmp_path):
    data = os.urandom(5 << 20) + bytes(3 << 20) + os.urandom(12345)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    seen: list[int] = []
    with FileStream(str(path), len(data)) as stream:
        result = hash_source(
            stream, ALGORITHMS, piece_size=3 << 20, chunk_size=1 << 20, progress=seen.append
        )
    assert result.complete
    assert result.digests is not None
    assert result.digests.as_dict() == _ref(data)
    assert result.bytes_hashed == result.size == len(data)
    assert result.unreadable == ()
    piece = 3 << 20
    assert [p.index for p in result.pieces] == [0, 1, 2]
    for p in result.pieces:
        assert p.offset == p.index * piece
        assert p.length == min(piece, len(data) - p.offset)
        assert p.sha256 == hashlib.sha256(data[p.offset : p.offset + p.length]).hexdigest()
    assert seen and seen[-1] == len(data)
    assert seen == sorted(seen)


def test_hash_source_range_stream_uses_parent_offset(tmp_path):
    data = os.urandom(3 << 20)
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    with FileStream(str(path), len(data)) as parent:
        window = RangeStream(parent, 4096, 2 << 20)
        result = hash_source(window, ("sha256",), piece_size=0, chunk_size=512 << 10)
    assert result.digests is not None
    assert result.digests.get("sha256") == hashlib.sha256(data[4096 : 4096 + (2 << 20)]).hexdigest()
    assert result.pieces == ()


def test_hash_source_bad_sectors_are_bisected():
    data = bytearray(os.urandom(3 << 20))
    bad = {100, 101, 102, 2000, 4095, 4096, 6143}
    stream = MemStream(bytes(data), bad_sectors=bad)
    result = hash_source(stream, ("md5", "sha256"), chunk_size=1 << 20, piece_size=1 << 20)
    expected = bytearray(data)
    for s in bad:
        expected[s * 512 : (s + 1) * 512] = bytes(512)
    assert result.complete
    assert result.digests is not None
    assert result.digests.get("md5") == hashlib.md5(expected).hexdigest()
    assert result.unreadable == (
        (100 * 512, 3 * 512),
        (2000 * 512, 512),
        (4095 * 512, 2 * 512),
        (6143 * 512, 512),
    )
    assert result.pieces[1].sha256 == hashlib.sha256(expected[1 << 20 : 2 << 20]).hexdigest()


def test_hash_source_retries_once():
    data = os.urandom(1 << 20)
    stream = MemStream(data, flaky_once=True)
    result = hash_source(stream, ("sha1",), chunk_size=256 << 10)
    assert result.unreadable == ()
    assert result.digests is not None
    assert result.digests.get("sha1") == hashlib.sha1(data).hexdigest()


def test_hash_source_short_media_is_zero_filled():
    data = os.urandom(100_000)
    stream = ShortStream(data, 200_000)
    result = hash_source(stream, ("sha256",), chunk_size=64 << 10)
    assert result.complete
    assert result.digests is not None
    assert result.digests.get("sha256") == hashlib.sha256(data + bytes(100_000)).hexdigest()
    assert result.unreadable == ((100_000, 100_000),)


def test_hash_source_cancel_event():
    data = os.urandom(8 << 20)
    cancel = threading.Event()

    def progress(done: int) -> None:
        if done >= (1 << 20):
            cancel.set()

    result = hash_source(
        MemStream(data), ALGORITHMS, chunk_size=256 << 10, progress=progress, cancel=cancel
    )
    assert not result.complete
    assert result.digests is None
    assert 0 < result.bytes_hashed < len(data)
    assert result.bytes_hashed % (256 << 10) == 0


def test_hash_source_keyboard_interrupt():
    data = os.urandom(8 << 20)

    raised = []

    def progress(done: int) -> None:
        if done >= (2 << 20) and not raised:
            raised.append(done)
            raise KeyboardInterrupt

    result = hash_source(MemStream(data), ("md5",), chunk_size=512 << 10, progress=progress)
    assert not result.complete
    assert result.digests is None
    assert result.bytes_hashed >= 2 << 20
    # Worker threads are gone: nothing keeps running after an interrupt.
    assert not [t for t in threading.enumerate() if t.name.startswith("hash-source")]


def test_hash_source_pieces_only_and_empty():
    data = os.urandom(300_000)
    result = hash_source(MemStream(data), (), piece_size=100_352, chunk_size=65536)
    assert result.digests is not None and result.digests.values == ()
    assert len(result.pieces) == 3
    assert result.pieces[2].length == 300_000 - 2 * 100_352
    empty = hash_source(MemStream(b""), ALGORITHMS)
    assert empty.complete
    assert empty.digests is not None
    assert empty.digests.get("md5") == hashlib.md5(b"").hexdigest()
    assert empty.pieces == ()


def test_hash_source_sinks_see_every_byte_in_order(tmp_path):
    """A sink (an image writer, a chain-file hasher) gets the same pass, in order."""
    from tests.oracles import file_digest

    path = tmp_path / "disk.raw"
    path.write_bytes(os.urandom(5 * 1024 * 1024 + 512))
    seen: list[int] = []
    copy = hashlib.sha256()

    def sink(offset: int, data: memoryview) -> None:
        assert offset == (seen[-1] if seen else 0)
        copy.update(data)
        seen.append(offset + len(data))

    result = hash_source(
        FileStream(str(path), path.stat().st_size), ["md5"], chunk_size=1 << 20, sinks=[sink]
    )
    assert seen[-1] == path.stat().st_size
    assert copy.hexdigest() == file_digest(path, "sha256sum")
    assert result.digests.get("md5") == file_digest(path, "md5sum")


def test_hash_source_sink_error_is_raised(tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(3 << 20))

    def sink(offset: int, data: memoryview) -> None:
        if offset:
            raise OSError("output full")

    with pytest.raises(OSError, match="output full"):
        hash_source(FileStream(str(path), 3 << 20), ["md5"], chunk_size=1 << 20, sinks=[sink])

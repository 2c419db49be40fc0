"""An EWF-E01 writer in the EnCase 6 layout, compressing chunks in parallel with zlib-ng.

References:
    - libyal libewf, "Expert Witness Compression Format (EWF)": the file header, section
      descriptor, header2/header, volume/data, sectors, table/table2 (EnCase 6: offsets
      relative to a base offset, 31-bit, bit 31 = compressed), error2, digest, hash,
      next/done sections; a chunk is stored compressed only when that is smaller than
      the data, otherwise as the data and its Adler-32.

The layout is the one ``ewfacquire -f encase6`` writes: the first segment holds
header2 twice, header and volume; every later segment starts with a data section (a
copy of the volume section); chunks go in groups of sectors + table + table2; a
segment ends with next, the last one with (error2,) digest, hash and done.

The writer is independent of sources: feed it the media in order with :meth:`write`
(the disk hash's pass does, as one of its lanes), then :meth:`finish` with the hashes
and the unreadable ranges. Each chunk is compressed on its own, on a pool of threads
(zlib-ng releases the GIL); chunks that are one repeated byte pattern (all zeros, a
wiped disk's fill) are compressed once per pattern and cost almost nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zlib_ng import zlib_ng

from selective_imager.errors import ContainerError
from selective_imager.sources import ewf_format as fmt

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

COMPRESSION_LEVELS = ("none", "empty-block", "fast", "best")
# zlib levels and the volume section's compression level byte for each.
_ZLIB_LEVEL = {"none": 0, "empty-block": 0, "fast": 1, "best": 9}
_VOLUME_LEVEL = {"none": 0, "empty-block": 0, "fast": 1, "best": 2}
_HEADER_LEVEL = {"none": "n", "empty-block": "n", "fast": "f", "best": "b"}
# EnCase readers before 6 take at most 16375 entries per table.
_TABLE_MAX = 16375
# Table offsets are 31-bit: a group's chunk data stays below 2 GiB.
_GROUP_BYTES_MAX = (1 << 31) - (64 << 20)
# Room kept at the end of a segment for the closing sections (data, error2 with a few
# hundred entries, digest, hash, done).
_END_RESERVE = 64 << 10
# Periods tried for a "single pattern" chunk (bytes): zeros, 0xFF, "PTRN"-style fills.
_PATTERN_PERIODS = (1, 2, 4, 8, 16)
# In-flight write batches (each a few MiB being compressed).
_IN_FLIGHT = 4
# Buffered segment output: writev once this much (or this many pieces) is pending.
_FLUSH_BYTES = 8 << 20
_FLUSH_PIECES = 512


@dataclass(frozen=True, slots=True)
class EwfHeader:
    """The case data stored in the header2 and header sections.

    Attributes:
        case_number: ``c``.
        evidence_number: ``n``.
        description: ``a``.
        examiner: ``e``.
        notes: ``t`` (tabs and newlines become spaces: the format has no escapes).
        acquired: acquisition date and time (``m``; ``u`` gets the same).
        os_version: acquiring platform (``ov``).
        tool_version: acquiring software version (``av``).
        model: media model (``md``).
        serial: media serial number (``sn``).
    """

    case_number: str = ""
    evidence_number: str = ""
    description: str = ""
    examiner: str = ""
    notes: str = ""
    acquired: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    os_version: str = ""
    tool_version: str = ""
    model: str = ""
    serial: str = ""


@dataclass(frozen=True, slots=True)
class EwfWriterOptions:
    """How the image is laid out.

    Attributes:
        segment_size: largest segment file, bytes.
        compression: one of :data:`COMPRESSION_LEVELS`.
        sectors_per_chunk: chunk size in sectors (64 = 32 KiB of 512-byte sectors).
        workers: compressing threads (default: one per CPU).
    """

    segment_size: int = 2 << 30
    compression: str = "fast"
    sectors_per_chunk: int = 64
    workers: int | None = None


@dataclass(frozen=True, slots=True)
class WrittenImage:
    """What :meth:`EwfWriter.finish` wrote.

    Attributes:
        segments: the segment files in order.
        bytes_written: total size of the segment files.
        chunks: chunks written.
        compressed_chunks: chunks stored compressed.
        pattern_chunks: chunks that were one repeated pattern.
    """

    segments: tuple[str, ...]
    bytes_written: int
    chunks: int
    compressed_chunks: int
    pattern_chunks: int


def segment_name(first: Path, number: int) -> Path:
    """The name of segment ``number`` (1-based) of the set whose first is ``first``.

    ``.E01`` to ``.E99``, then ``.EAA`` to ``.EZZ``, ``.FAA``... (the case of the
    first segment's extension is kept).
    """
    if number < 100:
        ext = f"E{number:02d}"
    else:
        n = number - 100
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        head = ord("E") + n // (26 * 26)
        if head > ord("Z"):
            raise ContainerError(f"{first}: more segments than EWF names can hold")
        ext = chr(head) + letters[(n // 26) % 26] + letters[n % 26]
    if first.suffix[1:2].islower():
        ext = ext.lower()
    return first.with_suffix("." + ext)


class _Segment:
    """One open segment file and its current chunk group."""

    def __init__(self, path: Path, number: int) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except FileExistsError as exc:
            raise ContainerError(f"{path}: exists: refusing to overwrite") from exc
        except OSError as exc:
            raise ContainerError(f"{path}: cannot create: {exc.strerror or exc}") from exc
        self.pos = 0
        self.group_start = -1  # offset of the open group's sectors descriptor
        self.entries: list[int] = []
        self._buffer: list[bytes | memoryview] = []
        self._buffered = 0
        self.write(fmt.FILE_HEADER.pack(fmt.EVF_SIGNATURE, 1, number, 0))

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (kept by reference until the next flush: do not reuse it)."""
        self._buffer.append(data)
        self._buffered += len(data)
        self.pos += len(data)
        if self._buffered >= _FLUSH_BYTES or len(self._buffer) >= _FLUSH_PIECES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered pieces: one writev per few MiB, not one write per chunk."""
        pieces, self._buffer, self._buffered = self._buffer, [], 0
        views = [memoryview(p) for p in pieces]
        try:
            while views:
                done = os.writev(self.fd, views)
                while views and done >= len(views[0]):
                    done -= len(views[0])
                    views.pop(0)
                if views and done:
                    views[0] = views[0][done:]
        except OSError as exc:
            raise ContainerError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc

    def pwrite(self, data: bytes, offset: int) -> None:
        """Overwrite already written bytes (a sectors descriptor)."""
        self.flush()
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise ContainerError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc

    def section(self, kind: str, data: bytes) -> None:
        """A whole section: descriptor and data."""
        size = fmt.DESCRIPTOR_SIZE + len(data)
        self.write(fmt.pack_descriptor(kind, self.pos + size, size) + data)

    def last_section(self, kind: str) -> None:
        """next or done: size 0, pointing at itself (as EnCase writes them)."""
        self.write(fmt.pack_descriptor(kind, self.pos, 0))

    def close(self) -> None:
        try:
            self.flush()
            os.fsync(self.fd)
        except OSError as exc:
            raise ContainerError(f"{self.path}: cannot flush: {exc.strerror or exc}") from exc
        finally:
            os.close(self.fd)


class EwfWriter:
    """Write media fed in order into an E01 segment set.

    Args:
        first: path of the first segment (``disk.E01``); later ones are named after it.
        media_size: bytes of media that will be fed.
        bytes_per_sector: the source's sector size.
        header: the case data.
        options: the layout.

    Raises:
        ContainerError: a segment exists or cannot be written.
    """

    def __init__(
        self,
        first: Path,
        media_size: int,
        bytes_per_sector: int,
        header: EwfHeader,
        options: EwfWriterOptions | None = None,
    ) -> None:
        self.options = options or EwfWriterOptions()
        if self.options.compression not in COMPRESSION_LEVELS:
            raise ValueError(f"unknown compression {self.options.compression!r}")
        if media_size <= 0 or media_size % bytes_per_sector:
            raise ValueError("the media size must be a positive multiple of the sector size")
        self.first = first
        self.media_size = media_size
        self.sector = bytes_per_sector
        self.chunk_size = self.options.sectors_per_chunk * bytes_per_sector
        self.header = header
        self.level = _ZLIB_LEVEL[self.options.compression]
        chunks = -(-media_size // self.chunk_size)
        self.volume = fmt.Volume(
            media_type=1,
            chunk_count=chunks,
            sectors_per_chunk=self.options.sectors_per_chunk,
            bytes_per_sector=bytes_per_sector,
            sector_count=media_size // bytes_per_sector,
            media_flags=0x03,  # an image file of a physical device
            compression_level=_VOLUME_LEVEL[self.options.compression],
            error_granularity=self.options.sectors_per_chunk,
            set_identifier=uuid.uuid4().bytes,
            smart=False,
        )
        self._pool = ThreadPoolExecutor(
            self.options.workers or os.cpu_count() or 2, thread_name_prefix="ewf-deflate"
        )
        self._pending: deque[Future[list[tuple[bytes, bool, bool]]]] = deque()
        self._patterns: dict[bytes, bytes] = {}
        self._carry = b""
        self._fed = 0
        self.segments: list[_Segment] = []
        self.chunks = 0
        self.compressed = 0
        self.pattern_chunks = 0
        self._open_segment()

    # feeding -----------------------------------------------------------------
    def write(self, offset: int, data: memoryview | bytes) -> None:
        """Feed the media bytes at ``offset`` (strictly in order; ``data`` may be reused)."""
        if offset != self._fed:
            raise ValueError(f"out of order: {offset}, expected {self._fed}")
        self._fed += len(data)
        buf = self._carry + bytes(data) if self._carry else bytes(data)
        whole = len(buf) // self.chunk_size * self.chunk_size
        if self._fed == self.media_size:
            whole = len(buf)  # the last chunk may be short
        self._carry = buf[whole:]
        if whole:
            self._submit(buf, whole)
        while len(self._pending) > _IN_FLIGHT:
            self._store(self._pending.popleft().result())

    def _submit(self, buf: bytes, length: int) -> None:
        workers = self._pool._max_workers
        per = max(1, -(-length // self.chunk_size) // workers) * self.chunk_size
        for start in range(0, length, per):
            self._pending.append(
                self._pool.submit(self._compress_range, buf, start, min(start + per, length))
            )

    def _compress_range(self, buf: bytes, start: int, stop: int) -> list[tuple[bytes, bool, bool]]:
        # bytes slices, not memoryviews: comparing two equal memoryviews goes item by item
        # (~190 us for 32 KiB of zeros against ~5 us for bytes).
        cs = self.chunk_size
        return [self._compress(buf[a : min(a + cs, stop)]) for a in range(start, stop, cs)]

    def _compress(self, chunk: bytes) -> tuple[bytes, bool, bool]:
        """(stored bytes, compressed, was a pattern) of one chunk."""
        period = _pattern_period(chunk) if self.options.compression != "none" else 0
        if period:
            key = bytes(chunk[:period]) + len(chunk).to_bytes(4, "little")
            packed = self._patterns.get(key)
            if packed is None:
                packed = zlib_ng.compress(chunk, 9)
                self._patterns[key] = packed
            if len(packed) < len(chunk):
                return packed, True, True
        if self.level:
            packed = zlib_ng.compress(chunk, self.level)
            if len(packed) < len(chunk):
                return packed, True, False
        stored = chunk + struct.pack("<I", fmt.adler32(chunk))
        return stored, False, False

    # laying out --------------------------------------------------------------
    def _open_segment(self) -> None:
        seg = _Segment(segment_name(self.first, len(self.segments) + 1), len(self.segments) + 1)
        self.segments.append(seg)
        if len(self.segments) == 1:
            header2 = zlib_ng.compress(_header2_text(self.header).encode("utf-16"), 9)
            seg.section("header2", header2)
            seg.section("header2", header2)
            seg.section(
                "header",
                zlib_ng.compress(
                    _header_text(self.header, self.options.compression).encode("ascii", "replace"),
                    9,
                ),
            )
            seg.section("volume", fmt.pack_volume(self.volume))
        else:
            seg.section("data", fmt.pack_volume(self.volume))

    def _store(self, results: Sequence[tuple[bytes, bool, bool]]) -> None:
        for stored, compressed, pattern in results:
            self._store_chunk(stored, compressed)
            self.chunks += 1
            self.compressed += compressed
            self.pattern_chunks += pattern

    def _store_chunk(self, stored: bytes, compressed: bool) -> None:
        seg = self.segments[-1]
        if seg.group_start >= 0:
            group_bytes = seg.pos + len(stored) - seg.group_start
            tables = 2 * (fmt.DESCRIPTOR_SIZE + 28 + 4 * (len(seg.entries) + 1))
            too_big = seg.pos + len(stored) + tables + _END_RESERVE > self.options.segment_size
            if too_big and seg.entries:
                self._close_group(seg)
                seg.last_section("next")
                seg.close()
                self._open_segment()
                seg = self.segments[-1]
            elif len(seg.entries) >= _TABLE_MAX or group_bytes > _GROUP_BYTES_MAX:
                self._close_group(seg)
        if seg.group_start < 0:
            seg.group_start = seg.pos
            seg.write(bytes(fmt.DESCRIPTOR_SIZE))  # the sectors descriptor, filled in later
        relative = seg.pos - seg.group_start
        seg.entries.append(relative | (fmt.COMPRESSED_BIT if compressed else 0))
        seg.write(stored)

    def _close_group(self, seg: _Segment) -> None:
        size = seg.pos - seg.group_start
        descriptor = fmt.pack_descriptor("sectors", seg.pos, size)
        seg.pwrite(descriptor, seg.group_start)
        entries = struct.pack(f"<{len(seg.entries)}I", *seg.entries)
        head = fmt.TABLE_HEADER.pack(len(seg.entries), 0, seg.group_start, 0, 0)[:20]
        table = head + struct.pack("<I", fmt.adler32(head)) + entries
        table += struct.pack("<I", fmt.adler32(entries))
        seg.section("table", table)
        seg.section("table2", table)
        seg.group_start = -1
        seg.entries = []

    # finishing ---------------------------------------------------------------
    def finish(
        self,
        md5: str,
        sha1: str,
        unreadable: Sequence[tuple[int, int]] = (),
    ) -> WrittenImage:
        """Write the last chunks and the closing sections; close every segment.

        Args:
            md5: hex MD5 of the media (stored in the hash and digest sections).
            sha1: hex SHA-1 of the media, or "" (digest section).
            unreadable: ``(offset, length)`` byte ranges that were zero-filled
                (the error2 section, in sectors).

        Raises:
            ContainerError: the media fed is short, or a segment cannot be written.
        """
        try:
            if self._fed != self.media_size:
                raise ContainerError(
                    f"{self.first}: {self._fed} of {self.media_size} bytes were imaged"
                )
            while self._pending:
                self._store(self._pending.popleft().result())
            seg = self.segments[-1]
            if seg.group_start >= 0:
                self._close_group(seg)
            if len(self.segments) == 1:
                seg.section("data", fmt.pack_volume(self.volume))
            errors = _sector_ranges(unreadable, self.sector)
            if errors:
                seg.section("error2", _error2(errors))
            digest = bytes.fromhex(md5) + (bytes.fromhex(sha1) if sha1 else bytes(20)) + bytes(40)
            seg.section("digest", digest + struct.pack("<I", fmt.adler32(digest)))
            hashed = bytes.fromhex(md5) + bytes(16)
            seg.section("hash", hashed + struct.pack("<I", fmt.adler32(hashed)))
            seg.last_section("done")
            total = sum(s.pos for s in self.segments)
            seg.close()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return WrittenImage(
            segments=tuple(str(s.path) for s in self.segments),
            bytes_written=total,
            chunks=self.chunks,
            compressed_chunks=self.compressed,
            pattern_chunks=self.pattern_chunks,
        )

    def abort(self) -> None:
        """Stop and close the segments (they stay, incomplete: no done section)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        for seg in self.segments:
            try:
                seg.flush()  # what was imaged stays on disk
            except ContainerError:
                pass  # the segment cannot be written: it ends where the last write did
            try:
                os.close(seg.fd)
            except OSError:
                continue


def _pattern_period(chunk: bytes) -> int:
    """The smallest period in :data:`_PATTERN_PERIODS` the chunk repeats, or 0."""
    n = len(chunk)
    for period in _PATTERN_PERIODS:
        if n <= period or n % period:
            continue
        # A 64-byte probe first: most chunks fail it and cost no full comparison.
        if chunk[period : period + 64] == chunk[: min(64, n - period)] and (
            chunk == chunk[:period] * (n // period)
        ):
            return period
    return 0


def _sector_ranges(ranges: Sequence[tuple[int, int]], sector: int) -> list[tuple[int, int]]:
    """Byte ranges as (first sector, sector count), widened to whole sectors."""
    out: list[tuple[int, int]] = []
    for offset, length in ranges:
        first = offset // sector
        last = -(-(offset + length) // sector)
        out.append((first, last - first))
    return out


def _error2(errors: list[tuple[int, int]]) -> bytes:
    head = struct.pack("<I", len(errors)) + bytes(512)
    head += struct.pack("<I", fmt.adler32(head))
    entries = b"".join(struct.pack("<II", first, count) for first, count in errors)
    return head + entries + struct.pack("<I", fmt.adler32(entries))


def _clean(value: str) -> str:
    """A header value: tabs and line ends would break the tab/line structure."""
    return " ".join(value.replace("\t", " ").splitlines()).strip()


def _header2_text(h: EwfHeader) -> str:
    """The EnCase 6 header2 text (main, srce and sub categories)."""
    stamp = str(int(h.acquired.timestamp()))
    values = [h.description, h.case_number, h.evidence_number, h.examiner, h.notes, h.model,
              h.serial, h.tool_version, h.os_version]  # fmt: skip
    main = "\t".join([*(_clean(v) for v in values), stamp, stamp, "0", ""])
    return (
        "3\nmain\na\tc\tn\te\tt\tmd\tsn\tav\tov\tm\tu\tp\tdc\n"
        f"{main}\n\n"
        "srce\n0\t1\np\tn\tid\tev\ttb\tlo\tpo\tah\tgu\taq\n0\t0\n\t\t\t\t\t-1\t-1\t\t\t\n\n"
        "sub\n0\t1\np\tn\tid\tnu\tco\tgu\n0\t0\n\t\t\t\t1\t\n\n"
    )


def _header_text(h: EwfHeader, compression: str) -> str:
    """The EnCase 4-7 header text (CRLF lines; dates as "Y M D h m s", UTC here)."""
    when = h.acquired.astimezone(dt.UTC)
    stamp = f"{when.year} {when.month} {when.day} {when.hour} {when.minute} {when.second}"
    values = [h.case_number, h.evidence_number, h.description, h.examiner, h.notes,
              h.tool_version, h.os_version]  # fmt: skip
    main = "\t".join([*(_clean(v) for v in values), stamp, stamp, "0", _HEADER_LEVEL[compression]])
    return f"1\r\nmain\r\nc\tn\ta\te\tt\tav\tov\tm\tu\tp\tr\r\n{main}\r\n\r\n"

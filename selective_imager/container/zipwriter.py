"""A minimal streaming ZIP64 writer that can roll back the member being written.

Python's :mod:`zipfile` cannot take back a member once written, and ``ZipFile.write``
copies in 8 KiB pieces. This writer streams each member straight to the output file:

* Every local header carries a ZIP64 extra field (sizes in it, ``0xFFFFFFFF`` in the
  32-bit fields) because a member's size is unknown when it starts. When the member
  is closed the writer seeks back and rewrites the header (method, CRC-32, sizes) in
  place: no data descriptors, so every reader sees the right values in both headers.
  The central directory likewise always puts the sizes in a ZIP64 extra, adds the
  local-header offset to it when that passes 4 GiB (or always, with
  ``force_zip64``), and ZIP64 end records follow when there are more than 65,535
  members or the directory starts past 4 GiB (or always, with ``force_zip64``).
* :meth:`MemberWriter.discard` truncates the output file back to the member's local
  header, as if it had never been written (deduplication after streaming).
* Deflate runs pigz-style: the input is cut into blocks (1 MiB) that worker threads
  compress independently (zlib releases the GIL), each primed with the previous 32 KiB
  as dictionary and ended with a sync flush, so the concatenation is one valid deflate
  stream. The caller computes CRC-32 (and SHA-256 for the seal) meanwhile.
* ``compress=None`` decides per member: the first 256 KiB (or the whole member when
  smaller) are compressed at the configured level as a trial; the member is stored
  when that saves less than 8 % (already-compressed or encrypted data), deflated
  otherwise. The trial output is reused as the first block, so the trial costs nothing
  for members that end up deflated.
* Names are UTF-8 (flag bit 11); times are a DOS date/time (UTC, clamped to
  1980-2107) plus the extended-timestamp extra (0x5455) holding the exact Unix mtime
  when it fits in 32 bits. Members are marked as Unix regular files, mode 0644.

Memory stays flat: at most a few blocks per worker are in flight, and the list of
central-directory records is the only per-member state.

**Streaming mode** (a ``sink`` given, see :class:`StreamSink`): the output is written
strictly in order, never seeking back, so that it can go over a network while it is
written. Each member then has general-purpose bit 3 set: its local header carries the
method but zero CRC-32, ``0xFFFFFFFF`` in the 32-bit size fields and zero sizes in its
ZIP64 extra (the header is written when the method is decided, before the first data
byte), and a ZIP64 data descriptor (signature, CRC-32, 8-byte compressed and
uncompressed sizes) follows its data; the central directory has the true values, as
always. A discarded member is cut off only when the sink can still truncate back to its
header (:meth:`StreamSink.can_truncate`); otherwise (an age stream whose chunks past it
are encrypted) its bytes stay, unreferenced by the central directory.

With ``hash_output=True`` a thread follows the writer and computes the SHA-256 of the
whole file: it reads back (from the page cache) only bytes before the open member's
local header, which the writer never touches again, so the hash is ready when
:meth:`ZipWriter.close` returns instead of costing a second pass afterwards.

References:
    PKWARE APPNOTE.TXT 6.3.x (sections 4.3.7 local header, 4.3.9 data descriptor,
    4.4.4 general-purpose bit 3, 4.3.12 central directory, 4.3.14-4.3.16 ZIP64 end
    records, 4.5.3 ZIP64 extra); Info-ZIP extra field list
    (0x5455 extended timestamp).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import struct
import threading
import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from selective_imager.container.age import AgeWriter
from selective_imager.errors import ContainerError

_deflate: Any
try:
    # zlib-ng deflates about twice as fast as zlib at level 1, in the same format.
    from zlib_ng import zlib_ng as _deflate
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency
    _deflate = zlib


if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from selective_imager.container.age import Recipient

STORED = 0
DEFLATED = 8

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_EOCD64_SIG = 0x06064B50
_LOCATOR64_SIG = 0x07064B50
_FLAG_UTF8 = 0x0800
_FLAG_DESCRIPTOR = 0x0008
_DESCRIPTOR_SIG = 0x08074B50
_VERSION_ZIP64 = 45
_MADE_BY = (3 << 8) | _VERSION_ZIP64  # Unix, spec 4.5
_EXTERNAL_ATTR = (0o100644 << 16) & 0xFFFFFFFF
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
_WINDOW = 32 * 1024
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, empty fixed-Huffman deflate block
# The follower hasher is woken (and the file flushed) after at least this much output.
_HASH_STEP = 1 << 20

_LOCAL_FMT = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_FMT = struct.Struct("<IHHHHHHIIIHHHHHII")
_DESCRIPTOR_FMT = struct.Struct("<IIQQ")  # signature, CRC-32, compressed, uncompressed


class StreamSink(Protocol):
    """Where a streaming :class:`ZipWriter` (or an age stream under it) sends its bytes.

    Bytes only ever go at the end. :meth:`mark` is called at the start of every member;
    :meth:`truncate` is only ever asked for the last marked offset.
    """

    @property
    def sha256(self) -> str | None:
        """SHA-256 of everything written (and not cut off), after :meth:`close`."""

    @property
    def where(self) -> str:
        """What the output is called in messages (a path, a URL)."""

    @property
    def kept(self) -> int:
        """How many bytes from the start are known to be at the destination."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; raise :class:`ContainerError` (or OSError) when it cannot."""

    def mark(self) -> None:
        """The current end is a place :meth:`truncate` may later be asked to cut back to."""

    def can_truncate(self, size: int) -> bool:
        """Whether the output can still be cut back to ``size``."""

    def truncate(self, size: int) -> int:
        """Cut the output back to ``size`` (a marked offset)."""

    def flush(self) -> None:
        """Hand buffered bytes on (no durability promised)."""

    def close(self) -> None:
        """Finish: every byte at its destination, or :class:`ContainerError`."""

    def abort(self) -> None:
        """Stop after a failure, leaving the destination as it stands."""


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as written.

    Attributes:
        name: member name.
        offset: offset of its local header in the ZIP file.
        size: uncompressed size.
        compressed_size: size of the stored data.
        crc32: CRC-32 of the uncompressed data.
        method: 0 stored, 8 deflated.
        mtime: modification time (Unix seconds) recorded for it.
        sha256: SHA-256 hex of the uncompressed data (computed inline or supplied by
            the caller), None when neither happened.
        descriptor: written in streaming mode: a data descriptor follows its data and
            its local header has no CRC-32 or sizes (general-purpose bit 3).
    """

    name: str
    offset: int
    size: int
    compressed_size: int
    crc32: int
    method: int
    mtime: int
    sha256: str | None
    descriptor: bool = False


def _dos_datetime(mtime: int) -> tuple[int, int]:
    tm = time.gmtime(mtime) if mtime >= 0 else time.gmtime(0)
    year = tm.tm_year
    if year < 1980:
        return 0, (1 << 5) | 1  # 1980-01-01 00:00:00
    if year > 2107:
        return (23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31
    dos_time = (tm.tm_hour << 11) | (tm.tm_min << 5) | (min(tm.tm_sec, 59) // 2)
    dos_date = ((year - 1980) << 9) | (tm.tm_mon << 5) | tm.tm_mday
    return dos_time, dos_date


def _timestamp_extra(mtime: int) -> bytes:
    if -(1 << 31) <= mtime < (1 << 31):
        return struct.pack("<HHBi", 0x5455, 5, 1, mtime)
    return b""


def check_member_name(name: str) -> bytes:
    """The UTF-8 form of a safe member name.

    Raises:
        ContainerError: the name could escape an extraction directory or break
            readers (absolute, ``.``/``..``/empty segments, backslash, NUL, drive).
    """
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise ContainerError(f"unsafe member name {name!r}")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts) or (
        len(parts[0]) == 2 and parts[0][1] == ":"
    ):
        raise ContainerError(f"unsafe member name {name!r}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ContainerError(f"member name {name!r} is not valid Unicode") from exc
    if len(raw) > _MAX16:
        raise ContainerError(f"member name too long ({len(raw)} bytes)")
    return raw


def _deflate_block(data: bytes, zdict: bytes, level: int, final: bool) -> bytes:
    if zdict:
        comp = _deflate.compressobj(level, zlib.DEFLATED, -15, zdict=zdict)
    else:
        comp = _deflate.compressobj(level, zlib.DEFLATED, -15)
    out = comp.compress(data)
    return bytes(out + comp.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))


class MemberWriter:
    """Streams one member; obtain it from :meth:`ZipWriter.begin`.

    Call :meth:`write` any number of times, then exactly one of :meth:`close` or
    :meth:`discard`. Usable as a context manager: an exception inside the block
    discards the member.
    """

    def __init__(
        self,
        owner: ZipWriter,
        name: str,
        raw_name: bytes,
        offset: int,
        *,
        compress: bool | None,
        mtime: int,
        hash_content: bool,
    ) -> None:
        self._owner = owner
        self.name = name
        self._raw_name = raw_name
        self.offset = offset
        self._mtime = mtime
        self._compress = compress
        self._method: int | None = None
        if compress is True:
            self._method = DEFLATED
        elif compress is False:
            self._method = STORED
        self._crc = 0
        self._sha = hashlib.sha256() if hash_content else None
        self._size = 0
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._zdict = b""
        self._inflight: deque[Future[bytes] | bytes] = deque()
        self._finished = False
        self._extra = struct.pack("<HHQQ", 1, 16, 0, 0) + _timestamp_extra(mtime)
        self._streaming = owner._sink is not None
        # Streaming: the header is written once the method is known, before any data.
        self._header_pending = self._streaming
        self._data_start = offset
        if not self._streaming:
            owner._hold_header(offset, _LOCAL_FMT.size + len(raw_name) + len(self._extra))
            self._write_local_header(STORED, 0, 0, 0)
            self._data_start = owner._tell()

    # -- public ------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Uncompressed bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data to the member (the caller may reuse its buffer afterwards)."""
        self._check_open()
        view = memoryview(data).cast("B")
        if not view.nbytes:
            return
        self._crc = _deflate.crc32(view, self._crc)
        if self._sha is not None:
            self._sha.update(view)
        self._size += view.nbytes
        if self._method == STORED:
            self._put(view)
            return
        self._pending.append(bytes(view))
        self._pending_len += view.nbytes
        if self._method is None:
            if self._pending_len >= self._owner.trial_size:
                self._decide()
            return
        if self._pending_len >= self._owner.block_size:
            self._submit_block(final=False)

    def close(self, *, sha256: str | None = None) -> MemberInfo:
        """Finish the member and return its record.

        Args:
            sha256: the SHA-256 hex of the content when the caller computed it (with
                ``hash_content=False``); ignored when the writer hashed inline.
        """
        self._check_open()
        try:
            if self._method is None:
                self._decide()
            if self._method == DEFLATED:
                if self._pending_len:
                    self._submit_block(final=True)
                else:
                    self._inflight.append(_FINAL_EMPTY_BLOCK)
                self._drain(0)
            method = self._method if self._method is not None else STORED
            if self._header_pending:
                self._emit_streaming_header(method)
            end = self._owner._tell()
            compressed = end - self._data_start
            if self._streaming:
                self._owner._write(
                    _DESCRIPTOR_FMT.pack(_DESCRIPTOR_SIG, self._crc, compressed, self._size)
                )
            else:
                self._write_local_header(method, self._crc, self._size, compressed)
        except BaseException:
            self.discard()
            raise
        self._finished = True
        digest = self._sha.hexdigest() if self._sha is not None else sha256
        info = MemberInfo(
            name=self.name,
            offset=self.offset,
            size=self._size,
            compressed_size=compressed,
            crc32=self._crc,
            method=method,
            mtime=self._mtime,
            sha256=digest,
            descriptor=self._streaming,
        )
        self._owner._member_closed(self, info)
        return info

    def discard(self) -> None:
        """Roll back: the ZIP file is truncated to this member's local header."""
        if self._finished:
            return
        self._finished = True
        for item in self._inflight:
            if isinstance(item, Future):
                # Wait rather than cancel: a running block cannot be cancelled anyway.
                item.exception()
        self._inflight.clear()
        self._pending.clear()
        self._owner._member_discarded(self)

    def __enter__(self) -> MemberWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.discard()
        elif not self._finished:
            self.close()

    # -- internals ---------------------------------------------------------------
    def _check_open(self) -> None:
        if self._finished:
            raise ContainerError(f"member {self.name!r} is already closed")

    def _put(self, data: bytes | memoryview) -> None:
        """Member data to the output (in streaming mode, after the header)."""
        if self._header_pending:
            self._emit_streaming_header(self._method if self._method is not None else STORED)
        self._owner._write(data)

    def _emit_streaming_header(self, method: int) -> None:
        dos_time, dos_date = _dos_datetime(self._mtime)
        header = _LOCAL_FMT.pack(
            _LOCAL_SIG,
            _VERSION_ZIP64,
            _FLAG_UTF8 | _FLAG_DESCRIPTOR,
            method,
            dos_time,
            dos_date,
            0,
            _MAX32,
            _MAX32,
            len(self._raw_name),
            len(self._extra),
        )
        self._owner._write(header + self._raw_name + self._extra)
        self._header_pending = False
        self._data_start = self._owner._tell()

    def _write_local_header(self, method: int, crc: int, size: int, compressed: int) -> None:
        dos_time, dos_date = _dos_datetime(self._mtime)
        extra = struct.pack("<HHQQ", 1, 16, size, compressed) + self._extra[20:]
        header = _LOCAL_FMT.pack(
            _LOCAL_SIG,
            _VERSION_ZIP64,
            _FLAG_UTF8,
            method,
            dos_time,
            dos_date,
            crc,
            _MAX32,
            _MAX32,
            len(self._raw_name),
            len(extra),
        )
        self._owner._write_at(self.offset, header + self._raw_name + extra)

    def _decide(self) -> None:
        """Choose stored or deflated (``compress=None``) from the buffered trial data."""
        trial = b"".join(self._pending)
        self._pending, self._pending_len = [], 0
        packed = _deflate_block(trial, b"", self._owner.level, final=False) if trial else b""
        if trial and len(packed) <= len(trial) * (1.0 - self._owner.min_saving):
            self._method = DEFLATED
            # The trial output is the member's first block: no work is wasted.
            self._inflight.append(packed)
            self._zdict = trial[-_WINDOW:]
            self._drain(self._owner.max_inflight)
        else:
            self._method = STORED
            self._put(trial)

    def _submit_block(self, *, final: bool) -> None:
        block = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_len = [], 0
        zdict = self._zdict
        self._zdict = block[-_WINDOW:]
        executor = self._owner._executor_for(len(block))
        level = self._owner.level
        if executor is None:
            self._inflight.append(_deflate_block(block, zdict, level, final))
        else:
            self._inflight.append(executor.submit(_deflate_block, block, zdict, level, final))
        self._drain(self._owner.max_inflight)

    def _drain(self, keep: int) -> None:
        while len(self._inflight) > keep:
            item = self._inflight.popleft()
            self._put(item.result() if isinstance(item, Future) else item)


class _OutputHasher:
    """SHA-256 of a file being written, by a thread reading behind the writer.

    The writer calls :meth:`advance` with an offset below which the file is final (and
    flushed); :meth:`finish` waits for the rest. Reads use their own descriptor, so the
    writer's buffered file object is never shared between threads.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._sha = hashlib.sha256()
        self._done = 0
        self._limit = 0
        self._final = False
        self._error: OSError | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="zip-sha256", daemon=True)
        self._thread.start()

    def advance(self, limit: int) -> None:
        with self._cond:
            if limit > self._limit:
                self._limit = limit
                self._cond.notify()

    def finish(self, size: int) -> str | None:
        """The digest of the first ``size`` bytes; None if reading back failed."""
        with self._cond:
            self._limit = max(self._limit, size)
            self._final = True
            self._cond.notify()
        self._thread.join()
        os.close(self._fd)
        if self._error is not None or self._done != size:
            return None
        return self._sha.hexdigest()

    def _run(self) -> None:
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while True:
            with self._cond:
                while self._done >= self._limit and not self._final:
                    self._cond.wait()
                limit = self._limit
                if self._done >= limit:
                    return
            try:
                while self._done < limit:
                    n = os.preadv(self._fd, [view[: min(len(buf), limit - self._done)]], self._done)
                    if n <= 0:
                        raise OSError(f"short read at {self._done}")
                    self._sha.update(view[:n])
                    self._done += n
            except OSError as exc:
                self._error = exc
                return


class ZipWriter:
    """Writes a ZIP64 file sequentially, one member at a time.

    Args:
        path: output file; created exclusively unless ``overwrite``.
        overwrite: replace an existing file.
        level: zlib level for deflated members (1 is ~115 MB/s per core here).
        threads: compression threads (default: CPU count; 0 compresses inline).
        force_zip64: write ZIP64 central-directory fields and end records always.
        fsync: flush the file to stable storage in :meth:`close`.
        block_size: deflate block handed to one thread.
        trial_size: bytes compressed to decide stored/deflated when ``compress=None``.
        min_saving: the fraction the trial must save for the member to be deflated.
        hash_output: compute the SHA-256 of the finished file while writing it
            (:attr:`sha256` after :meth:`close`; not with ``encrypt_to``).
        encrypt_to: age recipients: the file is written age-encrypted
            (:class:`~selective_imager.container.age.AgeWriter`); the open member's
            local header stays in memory until it is patched, and a member discarded
            after its data reached the file stays as unreferenced bytes (its header
            zeroed) because encrypted chunks are never rewritten.
        append_at: continue an existing file instead of creating one: it is cut at
            this offset (the end of the last member to keep, see ``existing``) and
            written on from there; the bytes before it are never touched.
        existing: the members already in the file before ``append_at`` (they go
            into the central directory and the seal as if written by this writer).
        sink: streaming mode: every byte goes in order to this sink (which owns any
            local file: ``path`` then only names the output in messages), members get
            data descriptors, and :attr:`sha256` is the sink's. With ``encrypt_to`` the
            age stream is written through the sink. Not with ``append_at``.

    Raises:
        ContainerError: the file exists (without ``overwrite``) or cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        level: int = 1,
        threads: int | None = None,
        force_zip64: bool = False,
        fsync: bool = True,
        block_size: int = 1 << 20,
        trial_size: int = 256 << 10,
        min_saving: float = 0.08,
        hash_output: bool = False,
        encrypt_to: Sequence[Recipient] | None = None,
        append_at: int | None = None,
        existing: tuple[MemberInfo, ...] = (),
        sink: StreamSink | None = None,
    ) -> None:
        self.path = os.fspath(path) if sink is None else sink.where
        self._age: AgeWriter | None = None
        self._sink = sink
        self._ends: list[int] = []  # streaming: where each closed member ends
        if sink is not None and append_at is not None:
            raise ContainerError("a streamed container cannot be resumed")
        if encrypt_to:
            self._age = AgeWriter(self.path, list(encrypt_to), overwrite=overwrite, sink=sink)
            self._file: Any = self._age
        elif sink is not None:
            self._file = sink
        try:
            if self._age is not None or sink is not None:
                if append_at is not None:
                    raise ContainerError("an age-encrypted container cannot be resumed")
            elif append_at is None:
                # Closed in close(); the writer outlives any with-block here.
                self._file = open(  # noqa: SIM115
                    self.path, "wb" if overwrite else "xb", buffering=1 << 20
                )
            else:
                self._file = open(self.path, "r+b", buffering=1 << 20)  # noqa: SIM115
                self._file.truncate(append_at)
                self._file.seek(append_at)
        except OSError as exc:
            raise ContainerError(f"cannot create {self.path}: {exc.strerror or exc}") from exc
        self.level = level
        self.force_zip64 = force_zip64
        self.fsync = fsync
        self.block_size = block_size
        self.trial_size = trial_size
        self.min_saving = min_saving
        self._threads = (os.cpu_count() or 1) if threads is None else threads
        self.max_inflight = max(1, self._threads) + 1
        self._executor: ThreadPoolExecutor | None = None
        self._members: list[MemberInfo] = list(existing)
        self._names: set[str] = {info.name for info in existing}
        self._current: MemberWriter | None = None
        self._pos = append_at or 0
        self._closed = False
        self.sha256: str | None = None
        self._committed = self._pos  # end of the last closed member
        self._hasher_mark = 0
        self._hasher: _OutputHasher | None = None
        if hash_output and hasattr(os, "preadv") and self._age is None and sink is None:
            self._hasher = _OutputHasher(self.path)
            self._hasher.advance(self._pos)

    # -- public ------------------------------------------------------------------
    @property
    def members(self) -> tuple[MemberInfo, ...]:
        """Every member closed so far, in file order."""
        return tuple(self._members)

    @property
    def kept_members(self) -> int:
        """Closed members whose bytes are all at the destination (streaming: as far as
        the sink knows; else every closed member)."""
        if self._sink is None:
            return len(self._members)
        kept = self._sink.kept
        if self._age is not None:
            kept = self._age.plaintext_within(kept)
        return bisect.bisect_right(self._ends, kept)

    @property
    def bytes_written(self) -> int:
        """Current size of the output (without the central directory)."""
        return self._pos

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def begin(
        self,
        name: str,
        *,
        compress: bool | None = None,
        mtime: int | float | None = None,
        hash_content: bool = True,
    ) -> MemberWriter:
        """Start a member.

        Args:
            name: member name (``/``-separated, relative, no ``.``/``..`` segments).
            compress: True deflate, False store, None decide by trial.
            mtime: modification time in Unix seconds (default: now).
            hash_content: compute the SHA-256 of the content inline (for the seal).
                Pass False when the caller already hashes the same bytes and hands the
                digest to :meth:`MemberWriter.close`.

        Raises:
            ContainerError: a member is still open, the name is unsafe or already
                used, or the writer is closed.
        """
        if self._closed:
            raise ContainerError("the ZIP writer is closed")
        if self._current is not None:
            raise ContainerError(f"member {self._current.name!r} is still open")
        raw = check_member_name(name)
        if name in self._names:
            raise ContainerError(f"duplicate member name {name!r}")
        when = int(time.time() if mtime is None else mtime)
        self._member_started()
        self._current = MemberWriter(
            self,
            name,
            raw,
            self._pos,
            compress=compress,
            mtime=when,
            hash_content=hash_content,
        )
        return self._current

    def add_bytes(
        self,
        name: str,
        data: bytes | bytearray | memoryview,
        *,
        compress: bool | None = None,
        mtime: int | float | None = None,
    ) -> MemberInfo:
        """Write a whole member from memory."""
        member = self.begin(name, compress=compress, mtime=mtime)
        try:
            member.write(data)
        except BaseException:
            member.discard()
            raise
        return member.close()

    def close(self) -> None:
        """Write the central directory and close the file (idempotent).

        A member still open is discarded first.
        """
        if self._closed:
            return
        error: ContainerError | None = None
        try:
            if self._current is not None:
                self._current.discard()
            self._write_central_directory()
            self._file.flush()
            if self._sink is not None:
                self._file.close()  # the sink makes it durable where it keeps a file
            elif self.fsync:
                os.fsync(self._file.fileno())
        except ContainerError as exc:
            error = exc
        except OSError as exc:
            error = ContainerError(f"cannot finish {self.path}: {exc.strerror or exc}")
        finally:
            self._closed = True
            if error is None:
                if self._sink is None:
                    self._file.close()
                else:
                    self.sha256 = self._sink.sha256
            else:
                self._salvage()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            if self._hasher is not None:
                self.sha256 = self._hasher.finish(self._pos)
        if error is not None:
            raise error

    def __enter__(self) -> ZipWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _salvage(self) -> None:
        """After a write error (a full disk): keep every closed member readable.

        The file is cut back to the end of the last closed member (dropping the member
        or metadata that failed, and any buffered bytes the error left behind) and a
        central directory for the closed members is written there. If even that does
        not fit, the file ends after the last member: its local headers are complete,
        so ``zip -FF`` rebuilds the directory.

        A streamed output cannot be cut back: the sink is stopped as it stands (its
        error says what the destination holds).
        """
        if self._sink is not None:
            with contextlib.suppress(OSError, ContainerError):
                self._file.abort()
            return
        if self._age is not None:
            # Encrypted chunks cannot be cut back: finish the stream as it stands (the
            # local headers of closed members are complete, for zip -FF).
            with contextlib.suppress(OSError, ContainerError):
                self._age.release()
                self._age.close()
            return
        fd = os.dup(self._file.fileno())
        try:
            # Closing flushes the buffer, which may fail again; the file is closed anyway
            # and the bytes that could not be written lie past the cut below.
            with contextlib.suppress(OSError):
                self._file.close()
            end = self._committed
            os.ftruncate(fd, end)
            self._pos = end
            directory = self._central_directory(end)
            try:
                written = os.pwrite(fd, directory, end)
                if written == len(directory):
                    self._pos = end + written
                    os.fsync(fd)
                else:
                    os.ftruncate(fd, end)
            except OSError:
                os.ftruncate(fd, end)
        except OSError:
            # Not even the cut worked; the journals beside the output keep the record.
            self._pos = os.fstat(fd).st_size
        finally:
            os.close(fd)

    # -- used by MemberWriter ------------------------------------------------------
    def _tell(self) -> int:
        return self._pos

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise ContainerError(f"cannot write {self.path}: {exc}") from exc
        self._pos += len(data) if isinstance(data, bytes) else data.nbytes

    def _write_at(self, offset: int, data: bytes) -> None:
        try:
            if offset == self._pos:
                self._file.write(data)
                self._pos += len(data)
                return
            self._file.seek(offset)
            self._file.write(data)
            self._file.seek(self._pos)
        except OSError as exc:
            raise ContainerError(f"cannot write {self.path}: {exc}") from exc

    def _executor_for(self, size: int) -> ThreadPoolExecutor | None:
        if self._threads <= 0 or size < (64 << 10):
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="deflate")
        return self._executor

    def _member_closed(self, member: MemberWriter, info: MemberInfo) -> None:
        # Flushed so that a later write error can cut the file back to here (_salvage)
        # without losing this member, and so the follower hasher can read it.
        try:
            self._file.flush()
        except OSError as exc:
            raise ContainerError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        if self._age is not None:
            self._age.release()
        self._members.append(info)
        self._names.add(info.name)
        self._current = None
        self._committed = self._pos
        if self._sink is not None:
            self._ends.append(self._pos)
        if self._hasher is not None and self._pos - self._hasher_mark >= _HASH_STEP:
            self._hasher_mark = self._pos
            self._hasher.advance(self._pos)

    def _hold_header(self, offset: int, length: int) -> None:
        if self._age is not None:
            self._age.hold(offset, offset + length)

    def _member_started(self) -> None:
        if self._sink is not None and self._age is None:
            self._sink.mark()

    def _member_discarded(self, member: MemberWriter) -> None:
        if self._sink is not None:
            self._current = None
            if self._pos == member.offset:
                return  # nothing of it was written
            if self._file.can_truncate(member.offset):
                self._file.truncate(member.offset)
                self._pos = member.offset
            # else: past encrypted chunks the bytes stay, unreferenced and unreachable.
            return
        if self._age is not None and not self._age.can_truncate(member.offset):
            # Past encrypted chunks: the bytes stay, unreferenced, with no header.
            try:
                self._age.seek(member.offset)
                self._age.write(bytes(member._data_start - member.offset))
                self._age.seek(self._pos)
                self._age.release()
            finally:
                self._current = None
            return
        try:
            self._file.seek(member.offset)
            self._file.truncate()
        except OSError as exc:
            raise ContainerError(f"cannot roll back {member.name!r}: {exc}") from exc
        finally:
            self._current = None
        self._pos = member.offset
        if self._age is not None:
            self._age.release()

    # -- central directory -----------------------------------------------------------
    def _write_central_directory(self) -> None:
        self._write(self._central_directory(self._pos))

    def _central_directory(self, start: int) -> bytes:
        """The central directory and end records for a directory written at ``start``."""
        out = bytearray()
        for info in self._members:
            out += self._central_record(info)
        cd_size = len(out)
        count = len(self._members)
        zip64 = self.force_zip64 or count > _MAX16 or start >= _MAX32 or cd_size >= _MAX32
        if zip64:
            eocd64_offset = start + len(out)
            out += struct.pack(
                "<IQHHIIQQQQ",
                _EOCD64_SIG,
                44,
                _MADE_BY,
                _VERSION_ZIP64,
                0,
                0,
                count,
                count,
                cd_size,
                start,
            )
            out += struct.pack("<IIQI", _LOCATOR64_SIG, 0, eocd64_offset, 1)
        out += struct.pack(
            "<IHHHHIIH",
            _EOCD_SIG,
            0,
            0,
            min(count, _MAX16),
            min(count, _MAX16),
            _MAX32 if zip64 and cd_size >= _MAX32 else min(cd_size, _MAX32),
            _MAX32 if zip64 else start,
            0,
        )
        return bytes(out)

    def _central_record(self, info: MemberInfo) -> bytes:
        # Sizes always go in a ZIP64 extra, as in the local header: both headers then
        # have the same extra length, which keeps zipinfo-style checkers quiet.
        fields = [info.size, info.compressed_size]
        offset32 = info.offset
        if self.force_zip64 or info.offset >= _MAX32:
            fields.append(info.offset)
            offset32 = _MAX32
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields)
        extra += _timestamp_extra(info.mtime)
        raw_name = info.name.encode("utf-8")
        dos_time, dos_date = _dos_datetime(info.mtime)
        header = _CENTRAL_FMT.pack(
            _CENTRAL_SIG,
            _MADE_BY,
            _VERSION_ZIP64,
            _FLAG_UTF8 | (_FLAG_DESCRIPTOR if info.descriptor else 0),
            info.method,
            dos_time,
            dos_date,
            info.crc32,
            _MAX32,
            _MAX32,
            len(raw_name),
            len(extra),
            0,
            0,
            0,
            _EXTERNAL_ATTR,
            offset32,
        )
        return header + raw_name + extra


__all__ = [
    "DEFLATED",
    "STORED",
    "MemberInfo",
    "MemberWriter",
    "StreamSink",
    "ZipWriter",
    "check_member_name",
]

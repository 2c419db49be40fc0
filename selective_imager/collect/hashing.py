"""Hashing: per-file multi-algorithm hashers and the full-source hash.

Two entry points:

* :class:`MultiHasher` hashes one byte sequence (a collected file) with several
  algorithms at once. Large chunks are spread over two cores: hashlib releases the GIL
  for big buffers, so MD5 (the slowest, ~740 MB/s per core here) runs in a worker
  thread while the caller does SHA-1 and SHA-256.
* :func:`hash_source` hashes a whole source (disk image or device) sequentially: the
  caller's thread reads ahead into a pool of reusable buffers, worker threads run one
  "lane" per hash (each whole-source algorithm plus a SHA-256 per piece). A lane
  takes chunks strictly in order but any idle worker may run any lane, so the work
  balances itself across the cores. Unreadable chunks are retried once and then
  bisected down to sector granularity; only the sectors that still fail are hashed as
  zeros and reported.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.models import Digests
from selective_imager.streams import FileStream, RangeStream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from selective_imager.streams import ByteStream

ALGORITHMS: tuple[str, ...] = ("md5", "sha1", "sha256")

# Chunks at least this big are worth handing to a second core (thread hand-off costs
# tens of microseconds; MD5 of 1 MiB takes ~1.4 ms).
PARALLEL_THRESHOLD = 1 << 18

# Relative CPU cost per byte (seconds per GB measured here) used to balance algorithms
# between the caller and a worker thread.
_COST = {"md5": 1.35, "sha1": 0.55, "sha256": 0.57}

_ZEROS = bytes(1 << 20)

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _shared_pool() -> ThreadPoolExecutor:
    # One small process-wide pool: MultiHasher objects are created per collected file,
    # and starting a thread per file would cost more than it saves.
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, min(4, (os.cpu_count() or 2) - 1))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash")
        return _pool


def parse_algorithms(text: str) -> tuple[str, ...]:
    """Parse a comma-separated algorithm list such as ``"md5,sha256"``.

    Args:
        text: names separated by commas; ``"none"`` (or an empty string) selects no
            algorithm. Case and surrounding spaces are ignored, duplicates dropped.

    Returns:
        The algorithms in the canonical order of :data:`ALGORITHMS`.

    Raises:
        ValueError: an unknown name, or ``none`` combined with other names.
    """
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names or names == ["none"]:
        return ()
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown:
        raise ValueError(
            f"unknown hash algorithm(s) {', '.join(unknown)}; choose from "
            f"{', '.join(ALGORITHMS)} or none"
        )
    return tuple(alg for alg in ALGORITHMS if alg in names)


def _check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    algs = tuple(algorithms)
    for alg in algs:
        if alg not in ALGORITHMS:
            raise ValueError(f"unknown hash algorithm {alg!r}")
    if len(set(algs)) != len(algs):
        raise ValueError("duplicate hash algorithm")
    return algs


class MultiHasher:
    """Hash one byte sequence with several algorithms in one pass.

    Not thread-safe: one producer feeds it. ``update`` returns only after every
    algorithm has consumed the data, so the caller may reuse its buffer right away.

    Args:
        algorithms: names from :data:`ALGORITHMS` (may be empty).
        executor: pool for the second core; defaults to a small shared pool.
    """

    def __init__(
        self, algorithms: Iterable[str], *, executor: ThreadPoolExecutor | None = None
    ) -> None:
        self.algorithms = _check_algorithms(algorithms)
        self._hashers = {alg: hashlib.new(alg) for alg in self.algorithms}
        self._executor = executor
        self.bytes_hashed = 0
        # Split into the most expensive algorithm (for the worker) and the rest (for
        # the caller); with md5+sha1+sha256 this is md5 | sha1+sha256, near balanced.
        ordered = sorted(self.algorithms, key=lambda alg: -_COST.get(alg, 1.0))
        self._remote = [self._hashers[alg] for alg in ordered[:1]]
        self._local = [self._hashers[alg] for alg in ordered[1:]]

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes."""
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if size == 0:
            return
        self.bytes_hashed += size
        if not self._hashers:
            return
        if size < PARALLEL_THRESHOLD or not self._local:
            for hasher in self._hashers.values():
                hasher.update(data)
            return
        executor = self._executor or _shared_pool()
        remote = self._remote
        future = executor.submit(_update_all, remote, data)
        try:
            for hasher in self._local:
                hasher.update(data)
        finally:
            # Always wait, also on error: the worker still reads the caller's buffer.
            future.result()

    def update_zeros(self, count: int) -> None:
        """Feed ``count`` zero bytes (a sparse run) without allocating them at once."""
        if count < 0:
            raise ValueError("negative count")
        while count > 0:
            step = min(count, len(_ZEROS))
            self.update(memoryview(_ZEROS)[:step])
            count -= step

    def hexdigests(self) -> dict[str, str]:
        """``{algorithm: hex digest}`` of everything fed so far."""
        return {alg: hasher.hexdigest() for alg, hasher in self._hashers.items()}

    def digests(self) -> Digests:
        """The digests of everything fed so far (the hasher stays usable)."""
        return Digests(tuple(self.hexdigests().items()))


def _update_all(hashers: list[hashlib._Hash], data: bytes | bytearray | memoryview) -> None:
    for hasher in hashers:
        hasher.update(data)


@dataclass(frozen=True, slots=True)
class PieceHash:
    """SHA-256 of one piece ``[offset, offset + length)`` of a source."""

    index: int
    offset: int
    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class DiskHashResult:
    """Outcome of :func:`hash_source`.

    Attributes:
        algorithms: the whole-source algorithms.
        digests: whole-source digests, None when the run did not complete.
        pieces: SHA-256 of every piece that was hashed completely, in order.
        bytes_hashed: bytes hashed by every algorithm (a prefix of the source).
        size: the source size.
        complete: False when cancelled or interrupted.
        unreadable: merged ``(offset, length)`` ranges that could not be read and were
            hashed as zeros.
        seconds: wall time.
    """

    algorithms: tuple[str, ...]
    digests: Digests | None
    pieces: tuple[PieceHash, ...]
    bytes_hashed: int
    size: int
    complete: bool
    unreadable: tuple[tuple[int, int], ...]
    seconds: float


@dataclass(slots=True)
class _Chunk:
    seq: int
    offset: int
    length: int
    piece: int
    buffer: Any
    pending: int


class _Lane:
    """One hash consuming chunks strictly in order."""

    def __init__(self, update: Callable[[_Chunk], None]) -> None:
        self.update = update
        self.next_seq = 0
        self.busy = False


class _PieceLane:
    """SHA-256 per piece; chunks never straddle a piece boundary."""

    def __init__(self, piece_size: int) -> None:
        self.piece_size = piece_size
        self.current = -1
        self.hasher = hashlib.sha256()
        self.length = 0
        self.done: list[PieceHash] = []

    def update(self, chunk: _Chunk) -> None:
        if chunk.piece != self.current:
            self.finish()
            self.current = chunk.piece
        self.hasher.update(memoryview(chunk.buffer)[: chunk.length])
        self.length += chunk.length

    def finish(self) -> None:
        if self.current >= 0:
            self.done.append(
                PieceHash(
                    self.current,
                    self.current * self.piece_size,
                    self.length,
                    self.hasher.hexdigest(),
                )
            )
        self.current = -1
        self.hasher = hashlib.sha256()
        self.length = 0


_DIRECT_ALIGN = 4096


class _Reader:
    """Reads chunks of a source into reusable buffers.

    For plain files and devices it reads with ``preadv`` straight into the buffer, and
    with ``O_DIRECT`` where the platform allows: a cold sequential read then costs
    no page-cache CPU (which competes with hashing on a small machine) and leaves a
    live system's cache alone. Unaligned pieces (the tail) use the normal descriptor.
    """

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.fd: int | None = None
        self.base = 0
        self.direct_fd: int | None = None
        inner: ByteStream = stream
        base = 0
        while isinstance(inner, RangeStream):
            base += inner.offset
            inner = inner.parent
        if isinstance(inner, FileStream) and inner.alignment == 1 and hasattr(os, "preadv"):
            self.fd, self.base = inner.fileno(), base
            flag = getattr(os, "O_DIRECT", 0)
            if flag and base % _DIRECT_ALIGN == 0:
                try:
                    self.direct_fd = os.open(inner.path, os.O_RDONLY | flag)
                except OSError:
                    self.direct_fd = None

    def close(self) -> None:
        if self.direct_fd is not None:
            os.close(self.direct_fd)
            self.direct_fd = None

    def read_into(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` at ``offset``; returns the byte count read."""
        if self.fd is None:
            data = self.stream.read_at(offset, len(view))
            view[: len(data)] = data
            return len(data)
        pos = self.base + offset
        done = 0
        if (
            self.direct_fd is not None
            and pos % _DIRECT_ALIGN == 0
            and len(view) >= _DIRECT_ALIGN
            and _aligned(view)
        ):
            whole = len(view) // _DIRECT_ALIGN * _DIRECT_ALIGN
            try:
                while done < whole:
                    got = os.preadv(self.direct_fd, [view[done:whole]], pos + done)
                    if got <= 0:
                        break
                    done += got
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The file system refuses O_DIRECT: use the page cache from now on.
                self.close()
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], pos + done)
            if got <= 0:
                break
            done += got
        return done


def _aligned(view: memoryview) -> bool:
    import ctypes

    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return address % _DIRECT_ALIGN == 0


def _read_robust(
    stream: _Reader,
    offset: int,
    view: memoryview,
    sector: int,
    bad: list[tuple[int, int]],
    *,
    attempts: int,
) -> None:
    """Fill ``view``; unreadable sectors become zeros and are appended to ``bad``."""
    length = len(view)
    for _ in range(attempts):
        try:
            got = stream.read_into(offset, view)
        except OSError:
            continue
        if got < length:
            # A short read inside the known size: the media ended early.
            view[got:] = bytes(length - got)
            bad.append((offset + got, length - got))
        return
    if length <= sector:
        view[:] = bytes(length)
        bad.append((offset, length))
        return
    # Split on a sector boundary so the good half is read in full.
    half = max(sector, (length // 2) // sector * sector)
    _read_robust(stream, offset, view[:half], sector, bad, attempts=1)
    _read_robust(stream, offset + half, view[half:], sector, bad, attempts=1)


def _merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, length in sorted(ranges):
        if merged and start <= merged[-1][0] + merged[-1][1]:
            prev_start, prev_len = merged[-1]
            merged[-1] = (prev_start, max(prev_len, start + length - prev_start))
        else:
            merged.append((start, length))
    return tuple(merged)


def hash_source(
    stream: ByteStream,
    algorithms: Iterable[str],
    *,
    piece_size: int = 0,
    chunk_size: int = 4 << 20,
    sector_size: int = 512,
    progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    buffers: int = 6,
) -> DiskHashResult:
    """Hash a whole source with several algorithms plus a SHA-256 per piece.

    The calling thread reads; ``workers`` threads hash. Setting ``cancel`` or a
    KeyboardInterrupt in the caller stops the run cleanly: the result then has
    ``complete=False``, ``digests=None`` and says how far it got.

    Args:
        stream: the source.
        algorithms: whole-source algorithms (names from :data:`ALGORITHMS`).
        piece_size: piece length for the per-piece SHA-256 (0 disables pieces).
        chunk_size: read size; rounded to a multiple of ``sector_size``.
        sector_size: granularity down to which unreadable chunks are bisected.
        progress: called in the caller's thread with the total bytes hashed so far.
        cancel: set it (from any thread) to stop.
        workers: hashing threads (default: CPU count, at most one per lane).
        buffers: reusable read buffers (memory use is ``buffers * chunk_size``).

    Returns:
        The digests, piece hashes and unreadable ranges.
    """
    algs = _check_algorithms(algorithms)
    if sector_size <= 0 or chunk_size <= 0 or piece_size < 0:
        raise ValueError("sizes must be positive")
    chunk_size = max(sector_size, chunk_size // sector_size * sector_size)
    started = time.perf_counter()
    size = stream.size

    hashers = {alg: hashlib.new(alg) for alg in algs}
    lanes: list[_Lane] = []
    for hasher in hashers.values():
        lanes.append(_Lane(_make_update(hasher)))
    piece_lane = _PieceLane(piece_size) if piece_size else None
    if piece_lane is not None:
        lanes.append(_Lane(piece_lane.update))

    cond = threading.Condition()
    chunks: dict[int, _Chunk] = {}
    # Page-aligned buffers (anonymous maps) so O_DIRECT can read into them.
    free: list[Any] = [mmap.mmap(-1, chunk_size) for _ in range(max(2, buffers))]
    reader = _Reader(stream)
    state = {"stop": False, "eof": False, "total": 0}
    errors: list[BaseException] = []

    def pick() -> tuple[_Lane, _Chunk] | None:
        best: _Lane | None = None
        for lane in lanes:
            ready = not lane.busy and lane.next_seq in chunks
            if ready and (best is None or lane.next_seq < best.next_seq):
                best = lane
        if best is None:
            return None
        return best, chunks[best.next_seq]

    def work() -> None:
        while True:
            with cond:
                while True:
                    if state["stop"]:
                        return
                    job = pick()
                    if job is not None:
                        break
                    if state["eof"] and all(lane.next_seq >= state["total"] for lane in lanes):
                        return
                    cond.wait()
                lane, chunk = job
                lane.busy = True
            try:
                lane.update(chunk)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                with cond:
                    errors.append(exc)
                    state["stop"] = True
                    cond.notify_all()
                return
            with cond:
                lane.busy = False
                lane.next_seq += 1
                chunk.pending -= 1
                if chunk.pending == 0:
                    del chunks[chunk.seq]
                    free.append(chunk.buffer)
                cond.notify_all()

    n_workers = workers or (os.cpu_count() or 2)
    n_workers = max(1, min(n_workers, len(lanes)))
    threads = [
        threading.Thread(target=work, name=f"hash-source-{i}", daemon=True)
        for i in range(n_workers)
    ]
    bad: list[tuple[int, int]] = []
    # (end offset) of every chunk, to translate "lanes done up to seq" into bytes.
    ends: list[int] = []
    interrupted = False

    def hashed_bytes() -> int:
        if not lanes:
            return ends[-1] if ends else 0
        done = min(lane.next_seq for lane in lanes)
        return ends[done - 1] if done else 0

    for thread in threads:
        thread.start()
    try:
        offset = 0
        seq = 0
        last_report = -1
        while offset < size:
            if cancel is not None and cancel.is_set():
                interrupted = True
                break
            with cond:
                while not free and not state["stop"]:
                    if cancel is not None and cancel.is_set():
                        break
                    cond.wait(0.25)
                if state["stop"]:
                    break  # a worker failed; its error is raised below
                if not free:
                    interrupted = True
                    break
                buffer = free.pop()
                hashed = hashed_bytes()
            if progress is not None and hashed != last_report:
                progress(hashed)
                last_report = hashed
            length = min(chunk_size, size - offset)
            piece = offset // piece_size if piece_size else 0
            if piece_size:
                length = min(length, (piece + 1) * piece_size - offset)
            _read_robust(reader, offset, memoryview(buffer)[:length], sector_size, bad, attempts=2)
            if not lanes:
                free.append(buffer)
            with cond:
                chunks[seq] = _Chunk(seq, offset, length, piece, buffer, len(lanes))
                ends.append(offset + length)
                seq += 1
                state["total"] = seq
                if not lanes:
                    del chunks[seq - 1]
                cond.notify_all()
            offset += length
        with cond:
            state["eof"] = True
            if interrupted:
                state["stop"] = True
            cond.notify_all()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.25)
    except KeyboardInterrupt:
        interrupted = True
        with cond:
            state["stop"] = True
            cond.notify_all()
        for thread in threads:
            thread.join()
    except BaseException:
        reader.close()
        raise
    reader.close()
    if errors:
        raise errors[0]

    with cond:
        bytes_hashed = hashed_bytes()
    complete = not interrupted and bytes_hashed == size
    pieces: tuple[PieceHash, ...] = ()
    if piece_lane is not None:
        if complete or (piece_lane.current >= 0 and piece_lane.length == piece_size):
            piece_lane.finish()
        pieces = tuple(piece_lane.done)
    if progress is not None:
        progress(bytes_hashed)
    digests = Digests(tuple((a, h.hexdigest()) for a, h in hashers.items())) if complete else None
    return DiskHashResult(
        algorithms=algs,
        digests=digests,
        pieces=pieces,
        bytes_hashed=bytes_hashed,
        size=size,
        complete=complete,
        unreadable=_merge_ranges([r for r in bad if r[0] < bytes_hashed or complete]),
        seconds=time.perf_counter() - started,
    )


def _make_update(hasher: hashlib._Hash) -> Callable[[_Chunk], None]:
    def update(chunk: _Chunk) -> None:
        hasher.update(memoryview(chunk.buffer)[: chunk.length])

    return update


__all__ = [
    "ALGORITHMS",
    "DiskHashResult",
    "MultiHasher",
    "PieceHash",
    "hash_source",
    "parse_algorithms",
]

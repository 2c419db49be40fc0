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

from selective_imager.errors import SelectiveImagerError
from selective_imager.models import Digests
from selective_imager.streams import FileStream, RangeStream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

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
            return self.stream.read_into_at(offset, view)
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
        except (OSError, SelectiveImagerError):
            continue  # SelectiveImagerError: e.g. a read abandoned after its timeout
        if got >= length:
            return
        if got == 0:
            break  # nothing came: split below (or, one sector, it is unreadable)
        # A short read inside the known size: what came is kept and the rest is read
        # again on its own, so one bad sector costs only itself.
        kept = got // sector * sector
        if kept == 0:  # the first sector came short: keep its bytes, zero the rest
            kept = min(sector, length)
            view[got:kept] = bytes(kept - got)
            bad.append((offset + got, kept - got))
        if kept < length:
            _read_robust(stream, offset + kept, view[kept:], sector, bad, attempts=1)
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
    sinks: Sequence[Callable[[int, memoryview], None]] = (),
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
        sinks: more consumers of the same pass (an image writer, the hashes of the
            files of a virtual-disk chain): each is called with ``(offset, data)`` for
            every chunk, strictly in order, in a worker thread; ``data`` is valid only
            during the call. An exception in a sink ends the run and is re-raised.

    Returns:
        The digests, piece hashes and unreadable ranges.
    """
    run = HashRun(
        stream,
        algorithms,
        piece_size=piece_size,
        chunk_size=chunk_size,
        sector_size=sector_size,
        workers=workers,
        buffers=buffers,
        sinks=sinks,
    )
    return run.run(progress=progress, cancel=cancel)


class HashRun:
    """One pass over a source feeding several in-order lanes on worker threads.

    The steps: :meth:`run` starts the workers, :meth:`_read_all` fills buffers in the
    caller's thread and queues them as chunks, the workers (:meth:`_work`) give each
    chunk to every lane in order, and :meth:`_result` builds the outcome. A buffer goes
    back to the free list once every lane has consumed its chunk.
    """

    def __init__(
        self,
        stream: ByteStream,
        algorithms: Iterable[str],
        *,
        piece_size: int = 0,
        chunk_size: int = 4 << 20,
        sector_size: int = 512,
        workers: int | None = None,
        buffers: int = 6,
        sinks: Sequence[Callable[[int, memoryview], None]] = (),
    ) -> None:
        self.algorithms = _check_algorithms(algorithms)
        if sector_size <= 0 or chunk_size <= 0 or piece_size < 0:
            raise ValueError("sizes must be positive")
        self.stream = stream
        self.size = stream.size
        self.sector_size = sector_size
        self.piece_size = piece_size
        self.chunk_size = max(sector_size, chunk_size // sector_size * sector_size)
        self.hashers = {alg: hashlib.new(alg) for alg in self.algorithms}
        self.lanes = [_Lane(_make_update(h)) for h in self.hashers.values()]
        self.piece_lane = _PieceLane(piece_size) if piece_size else None
        if self.piece_lane is not None:
            self.lanes.append(_Lane(self.piece_lane.update))
        self.lanes.extend(_Lane(_sink_update(sink)) for sink in sinks)
        self.cond = threading.Condition()
        self.chunks: dict[int, _Chunk] = {}
        # Page-aligned buffers (anonymous maps) so O_DIRECT can read into them.
        self.free: list[Any] = [mmap.mmap(-1, self.chunk_size) for _ in range(max(2, buffers))]
        self.stop = False
        self.eof = False
        self.total = 0
        self.errors: list[BaseException] = []
        self.bad: list[tuple[int, int]] = []
        # End offset of every chunk, to turn "lanes done up to seq" into bytes.
        self.ends: list[int] = []
        self.interrupted = False
        count = workers or (os.cpu_count() or 2)
        self.n_workers = max(1, min(count, len(self.lanes)))

    def run(
        self,
        progress: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> DiskHashResult:
        """Read the whole source once; returns what was hashed."""
        started = time.perf_counter()
        threads = [
            threading.Thread(target=self._work, name=f"hash-source-{i}", daemon=True)
            for i in range(self.n_workers)
        ]
        reader = _Reader(self.stream)
        for thread in threads:
            thread.start()
        try:
            self._read_all(reader, progress, cancel)
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.25)
        except KeyboardInterrupt:
            self.interrupted = True
            self._halt()
            for thread in threads:
                thread.join()
        finally:
            reader.close()
        if self.errors:
            raise self.errors[0]
        return self._result(progress, time.perf_counter() - started)

    # -- the reading thread ------------------------------------------------------
    def _read_all(
        self,
        reader: _Reader,
        progress: Callable[[int], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        offset = 0
        seq = 0
        last_report = -1
        while offset < self.size:
            if cancel is not None and cancel.is_set():
                self.interrupted = True
                break
            buffer = self._take_buffer(cancel)
            if buffer is None:
                break
            with self.cond:
                hashed = self._hashed_bytes()
            if progress is not None and hashed != last_report:
                progress(hashed)
                last_report = hashed
            length = self._chunk_length(offset)
            view = memoryview(buffer)[:length]
            _read_robust(reader, offset, view, self.sector_size, self.bad, attempts=2)
            self._queue(_Chunk(seq, offset, length, self._piece_of(offset), buffer, 0))
            seq += 1
            offset += length
        with self.cond:
            self.eof = True
            if self.interrupted:
                self.stop = True
            self.cond.notify_all()

    def _take_buffer(self, cancel: threading.Event | None) -> Any:
        """A free buffer, or None when the run must stop (a worker failed, cancelled)."""
        with self.cond:
            while not self.free and not self.stop:
                if cancel is not None and cancel.is_set():
                    break
                self.cond.wait(0.25)
            if self.stop:
                return None  # a worker failed; its error is raised by run()
            if not self.free:
                self.interrupted = True
                return None
            return self.free.pop()

    def _chunk_length(self, offset: int) -> int:
        length = min(self.chunk_size, self.size - offset)
        if self.piece_size:
            # Chunks never straddle a piece boundary.
            piece_end = (offset // self.piece_size + 1) * self.piece_size
            length = min(length, piece_end - offset)
        return length

    def _piece_of(self, offset: int) -> int:
        return offset // self.piece_size if self.piece_size else 0

    def _queue(self, chunk: _Chunk) -> None:
        with self.cond:
            self.ends.append(chunk.offset + chunk.length)
            self.total = chunk.seq + 1
            if self.lanes:
                chunk.pending = len(self.lanes)
                self.chunks[chunk.seq] = chunk
            else:
                self.free.append(chunk.buffer)
            self.cond.notify_all()

    def _halt(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()

    # -- the workers -------------------------------------------------------------
    def _pick(self) -> tuple[_Lane, _Chunk] | None:
        """The idle lane furthest behind whose next chunk is ready."""
        best: _Lane | None = None
        for lane in self.lanes:
            ready = not lane.busy and lane.next_seq in self.chunks
            if ready and (best is None or lane.next_seq < best.next_seq):
                best = lane
        if best is None:
            return None
        return best, self.chunks[best.next_seq]

    def _next_job(self) -> tuple[_Lane, _Chunk] | None:
        """Wait for work; None when the run is over for this worker."""
        with self.cond:
            while True:
                if self.stop:
                    return None
                job = self._pick()
                if job is not None:
                    job[0].busy = True
                    return job
                if self.eof and all(lane.next_seq >= self.total for lane in self.lanes):
                    return None
                self.cond.wait()

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            lane, chunk = job
            try:
                lane.update(chunk)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                with self.cond:
                    self.errors.append(exc)
                    self.stop = True
                    self.cond.notify_all()
                return
            self._release(lane, chunk)

    def _release(self, lane: _Lane, chunk: _Chunk) -> None:
        with self.cond:
            lane.busy = False
            lane.next_seq += 1
            chunk.pending -= 1
            if chunk.pending == 0:
                del self.chunks[chunk.seq]
                self.free.append(chunk.buffer)
            self.cond.notify_all()

    # -- the outcome -------------------------------------------------------------
    def _hashed_bytes(self) -> int:
        if not self.lanes:
            return self.ends[-1] if self.ends else 0
        done = min(lane.next_seq for lane in self.lanes)
        return self.ends[done - 1] if done else 0

    def _result(self, progress: Callable[[int], None] | None, seconds: float) -> DiskHashResult:
        with self.cond:
            bytes_hashed = self._hashed_bytes()
        complete = not self.interrupted and bytes_hashed == self.size
        pieces: tuple[PieceHash, ...] = ()
        lane = self.piece_lane
        if lane is not None:
            if complete or (lane.current >= 0 and lane.length == self.piece_size):
                lane.finish()
            pieces = tuple(lane.done)
        if progress is not None:
            progress(bytes_hashed)
        digests = (
            Digests(tuple((a, h.hexdigest()) for a, h in self.hashers.items()))
            if complete
            else None
        )
        bad = [r for r in self.bad if r[0] < bytes_hashed or complete]
        return DiskHashResult(
            algorithms=self.algorithms,
            digests=digests,
            pieces=pieces,
            bytes_hashed=bytes_hashed,
            size=self.size,
            complete=complete,
            unreadable=_merge_ranges(bad),
            seconds=seconds,
        )


def _sink_update(sink: Callable[[int, memoryview], None]) -> Callable[[_Chunk], None]:
    def update(chunk: _Chunk) -> None:
        sink(chunk.offset, memoryview(chunk.buffer)[: chunk.length])

    return update


def _make_update(hasher: hashlib._Hash) -> Callable[[_Chunk], None]:
    def update(chunk: _Chunk) -> None:
        hasher.update(memoryview(chunk.buffer)[: chunk.length])

    return update


__all__ = [
    "ALGORITHMS",
    "DiskHashResult",
    "HashRun",
    "MultiHasher",
    "PieceHash",
    "hash_source",
    "parse_algorithms",
]

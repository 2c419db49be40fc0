"""Read-only byte streams shared by every layer.

Every layer hands the next a :class:`ByteStream`: a seekable, read-only file-like
object with a known size and a position-independent :meth:`ByteStream.read_at`.
Detectors use ``read_at`` so probing never moves anybody's position (the
dissect ``detect`` idea). The libyal bindings (pyfsntfs, pybde) take any object with
``read/seek/tell/get_size``; pytsk3 takes an ``Img_Info`` subclass (:class:`TskImage`).
"""

from __future__ import annotations

import io
import os
import threading
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from typing_extensions import Buffer


class ByteStream(io.RawIOBase):
    """A read-only, seekable stream of known size.

    Subclasses implement :meth:`_read_at` (and set ``self._size``); reads past the end
    are truncated, never padded.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0
        # Bytes returned by read_at, for "bytes read from the source" figures.
        self.bytes_read = 0

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self._size

    def get_size(self) -> int:
        """Length in bytes (the libyal file-object protocol)."""
        return self._size

    @abstractmethod
    def _read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``; offset and size are in range."""

    def read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` without moving the position."""
        if offset < 0:
            raise ValueError("negative offset")
        if offset >= self._size or size <= 0:
            return b""
        size = min(size, self._size - offset)
        data = self._read_at(offset, size)
        self.bytes_read += len(data)
        return data

    def read_into_at(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset`` without moving the position; returns the count.

        Streams that assemble their data (decompressed chunks) override it to copy each
        piece straight into the caller's buffer.
        """
        data = self.read_at(offset, len(view))
        view[: len(data)] = data
        return len(data)

    # io.RawIOBase protocol -------------------------------------------------
    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable."""
        return True

    def writable(self) -> bool:
        """Never writable: sources are evidence."""
        return False

    def read(self, size: int | None = -1) -> bytes:
        """Read from the current position."""
        if size is None or size < 0:
            size = self._size - self._pos
        data = self.read_at(self._pos, size)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        """Read to the end."""
        return self.read(-1)

    def readinto(self, buffer: Buffer) -> int:
        """Read into a writable buffer."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position; seeking past the end is allowed (reads return b"")."""
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError("seek before start of stream")
        self._pos = pos
        return pos

    def tell(self) -> int:
        """Current position."""
        return self._pos


class RangeStream(ByteStream):
    """A window ``[offset, offset + size)`` of a parent stream (a partition slice)."""

    def __init__(self, parent: ByteStream, offset: int, size: int) -> None:
        if offset < 0 or size < 0:
            raise ValueError("negative range")
        # A slice never reaches past its parent: a partition running off the end of a
        # truncated image is cut to what exists.
        size = max(0, min(size, parent.size - offset))
        super().__init__(size)
        self.parent = parent
        self.offset = offset

    def _read_at(self, offset: int, size: int) -> bytes:
        return self.parent.read_at(self.offset + offset, size)


class OverlayStream(ByteStream):
    """A parent stream with some byte ranges replaced by fixed data.

    Used to present a readable FVE metadata block where a damaged copy sits, without
    writing anything.
    """

    def __init__(
        self, parent: ByteStream, patches: dict[int, bytes], size: int | None = None
    ) -> None:
        super().__init__(parent.size if size is None else size)
        self.parent = parent
        self.patches = sorted(patches.items())

    def _read_at(self, offset: int, size: int) -> bytes:
        data = bytearray(self.parent.read_at(offset, size))
        # The parent may be truncated: past its end only the patches are readable, and
        # the read ends (short) at the first byte neither of them holds.
        valid_end = offset + len(data)
        if len(data) < size:
            data.extend(b"\0" * (size - len(data)))
        end = offset + size
        for start, patch in self.patches:
            p_end = start + len(patch)
            if p_end <= offset or start >= end:
                continue
            lo = max(start, offset)
            hi = min(p_end, end)
            data[lo - offset : hi - offset] = patch[lo - start : hi - start]
            if lo <= valid_end:
                valid_end = max(valid_end, hi)
        return bytes(data[: valid_end - offset])


class LibyalStream(ByteStream):
    """Wraps a libyal object (pybde volume, pyfsntfs data stream, pyewf handle).

    They offer ``read_buffer_at_offset``; a lock keeps concurrent readers of the same
    object from interleaving (pybde must still never be shared between threads: give
    each worker its own chain).
    """

    def __init__(self, obj: Any, size: int) -> None:
        super().__init__(size)
        self._obj = obj
        self._lock = threading.Lock()

    def _read_at(self, offset: int, size: int) -> bytes:
        with self._lock:
            return cast("bytes", self._obj.read_buffer_at_offset(size, offset))


class FileStream(ByteStream):
    """A read-only OS file (image file or device) read with ``os.pread``.

    ``alignment`` > 1 makes every read start and end on a multiple of it, as Windows
    raw devices (``\\\\.\\PhysicalDrive0``) require; the wanted bytes are cut out.
    """

    def __init__(self, path: str, size: int, alignment: int = 1, fd: int | None = None) -> None:
        super().__init__(size)
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
        self._fd = fd if fd is not None else os.open(path, flags)
        self.alignment = max(1, alignment)

    def _read_at(self, offset: int, size: int) -> bytes:
        if self.alignment > 1:
            start = offset - offset % self.alignment
            end = offset + size
            end += (-end) % self.alignment
            data = self._pread(start, end - start)
            return data[offset - start : offset - start + size]
        return self._pread(offset, size)

    def _pread(self, offset: int, size: int) -> bytes:
        chunks: list[bytes] = []
        done = 0
        while done < size:
            chunk = _pread(self._fd, size - done, offset + done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)

    def fileno(self) -> int:
        """The OS file descriptor."""
        return self._fd

    def close(self) -> None:
        """Close the descriptor."""
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    # Windows has no pread; a lock-free seek+read is fine because each FileStream
    # owns its descriptor and callers serialise access to one stream.
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


class TimeoutStream(ByteStream):
    """A stream whose reads are abandoned when they do not finish in ``timeout`` seconds.

    A dying disk can block a read for minutes (or forever) inside the kernel; no
    signal ends it. Each read runs on a worker thread and the caller waits at most
    ``timeout``: a read that does not return is abandoned (its thread stays blocked,
    and a fresh worker takes the next read) and raises :class:`SourceError`, so the
    caller records the range as unreadable and goes on. The hand-off costs ~50 µs a
    read (measured here), which is why it is on for devices by default only.
    """

    def __init__(self, inner: ByteStream, timeout: float) -> None:
        super().__init__(inner.size)
        self.inner = inner
        self.timeout = timeout
        self.abandoned: list[tuple[int, int]] = []  # (offset, size) of abandoned reads
        self._worker: _ReadWorker | None = None

    def _read_at(self, offset: int, size: int) -> bytes:
        from selective_imager.errors import SourceError

        if self._worker is None:
            self._worker = _ReadWorker(self.inner)
        job = self._worker.submit(offset, size)
        if not job.done.wait(self.timeout):
            self._worker = None  # blocked in the read: the next read gets a fresh thread
            self.abandoned.append((offset, size))
            raise SourceError(
                f"read of {size} bytes at offset {offset} did not finish within "
                f"{self.timeout:g} s and was abandoned (a failing disk?)"
            )
        if job.error is not None:
            raise job.error
        return job.data

    def close(self) -> None:
        """Close the inner stream (an abandoned read keeps only its own thread)."""
        self.inner.close()
        super().close()


class _ReadJob:
    __slots__ = ("data", "done", "error", "offset", "size")

    def __init__(self, offset: int, size: int) -> None:
        self.offset = offset
        self.size = size
        self.data = b""
        self.error: BaseException | None = None
        self.done = threading.Event()


class _ReadWorker:
    """One daemon thread reading jobs in order from a queue."""

    def __init__(self, inner: ByteStream) -> None:
        import queue

        self._inner = inner
        self._jobs: queue.SimpleQueue[_ReadJob] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="source-read", daemon=True).start()

    def submit(self, offset: int, size: int) -> _ReadJob:
        job = _ReadJob(offset, size)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.data = self._inner.read_at(job.offset, job.size)
            except Exception as exc:  # noqa: BLE001 - re-raised by the waiting reader
                job.error = exc
            finally:
                job.done.set()


class ConcatStream(ByteStream):
    """Several files read as one (split raw images: ``.001 .002`` or ``.aa .ab``)."""

    def __init__(self, parts: list[FileStream]) -> None:
        self.parts = parts
        self._starts: list[int] = []
        total = 0
        for part in parts:
            self._starts.append(total)
            total += part.size
        super().__init__(total)

    def _read_at(self, offset: int, size: int) -> bytes:
        import bisect

        out = bytearray()
        while size > 0:
            i = bisect.bisect_right(self._starts, offset) - 1
            part = self.parts[i]
            local = offset - self._starts[i]
            chunk = part.read_at(local, min(size, part.size - local))
            if not chunk:
                break
            out += chunk
            offset += len(chunk)
            size -= len(chunk)
        return bytes(out)

    def close(self) -> None:
        """Close every part."""
        for part in self.parts:
            part.close()
        super().close()


def make_tsk_image(stream: ByteStream) -> Any:
    """A ``pytsk3.Img_Info`` reading from ``stream`` (the dfvfs adapter idea).

    An exception raised by ``read`` reaches the caller of pytsk3 as a bare
    ``RuntimeError`` holding its repr; the image keeps the original in
    ``read_error`` (see :func:`tsk_failure`) so callers can report the real cause.
    """
    import pytsk3

    class _TskImage(pytsk3.Img_Info):  # type: ignore[misc]
        def __init__(self, inner: ByteStream) -> None:
            self._inner = inner
            self.read_error: BaseException | None = None
            super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

        def read(self, offset: int, size: int) -> bytes:
            try:
                return self._inner.read_at(offset, size)
            except Exception as exc:  # any error: pytsk3 turns it into RuntimeError
                self.read_error = exc
                raise

        def get_size(self) -> int:
            return self._inner.size

        def close(self) -> None:
            # The stream belongs to its opener; TSK must not close it.
            return None

    return _TskImage(stream)


def tsk_failure(image: Any, exc: BaseException) -> str:
    """One line saying why a pytsk3 call on ``image`` failed.

    The error of the last failed read of the underlying stream when there was one
    (a truncated or unreadable source), else pytsk3's own message.
    """
    cause = getattr(image, "read_error", None)
    if cause is not None:
        image.read_error = None
        return f"read error: {cause}"
    return " ".join(str(exc).split()) or type(exc).__name__

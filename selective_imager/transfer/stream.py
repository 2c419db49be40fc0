"""Streaming a container home over SFTP while it is written: bounded memory, resumable.

The ZIP writer's streaming mode hands its bytes over strictly in order (a
:class:`~selective_imager.container.zipwriter.StreamSink`). :class:`StreamingUpload`
appends them to a local copy, unless there is to be none, and a sender thread follows
with pipelined SFTP writes to the remote file; the SHA-256 of the container is computed
here, as the bytes pass.

*Acknowledged* bytes: every ``checkpoint`` bytes (8 MiB), and whenever the writer waits
or the stream ends, the sender closes its remote handle (the server answers the close
after the writes before it) and reads the remote size back; when it equals what was
sent, everything up to there is acknowledged. Without a local copy, the bytes after the
last acknowledgment are kept in memory, in a journal bounded by ``memory`` (32 MiB by
default): when it is full the writer waits, so a slow network holds the collection back
instead of growing the process. With a local copy the sender reads the local file and
never holds the collection back, and a lost upload is finished after the collection
from the local file.

A dropped connection is reopened with the same host-key check and authentication
(:meth:`~selective_imager.transfer.sftp.SftpUploader.connect`), up to ``retries`` times
in a row without progress, backing off. The remote size is read: bytes past the last
acknowledgment are read back and compared with the stream, the upload continues after
those that match and the rest is cut off. A remote file shorter than what it
acknowledged is sent again from the local copy, or, without one, ends the stream (the
bytes are no longer held). Whatever happens, the container is only *delivered* once the
remote file's SHA-256 equals the one computed here (:meth:`StreamingUpload.deliver`).

A member the ZIP writer drops after streaming it (a duplicate) is cut off everywhere:
the local copy is truncated, the remote file gets an SFTP truncate, and the running
SHA-256 goes back to its state at the member's start (:meth:`StreamingUpload.mark`).

Reference: draft-ietf-secsh-filexfer-02 (SFTP v3: WRITE, CLOSE, STAT, SETSTAT size).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import paramiko

from selective_imager.errors import ContainerError, TransferError
from selective_imager.transfer.sftp import _RETRYABLE

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from selective_imager.transfer.sftp import Delivery, SftpUploader

_PIECE = 1 << 20
CHECKPOINT = 8 << 20
MEMORY = 32 << 20
_IDLE = 0.2  # seconds without new bytes before the sender confirms what it sent
_TIMEOUT = 60.0  # seconds an SFTP request may go unanswered


class StreamingUpload:
    """A :class:`~selective_imager.container.zipwriter.StreamSink` that uploads as it goes.

    Args:
        uploader: the SFTP target, known hosts and key (its ``retries`` and
            ``retry_delay`` apply here too).
        local: the local copy, or None for none.
        overwrite: replace an existing local copy.
        fsync: make the local copy durable at :meth:`close`.
        memory: bound of the journal of unacknowledged bytes (no local copy).
        checkpoint: bytes sent between two acknowledgments.
        on_sent: called by the sender thread with the stream offset after each piece
            it sent (for progress, and for tests that cut the connection).
    """

    def __init__(
        self,
        uploader: SftpUploader,
        local: Path | None,
        *,
        overwrite: bool = False,
        fsync: bool = True,
        memory: int = MEMORY,
        checkpoint: int = CHECKPOINT,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        self.uploader = uploader
        self.target = str(uploader.target)
        self.local = local
        self.fsync = fsync
        self.memory = max(memory, 2 * _PIECE)
        self.checkpoint = max(_PIECE, min(checkpoint, self.memory // 2))
        self.on_sent = on_sent
        self._fd = -1
        if local is not None:
            flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
            try:
                self._fd = os.open(local, flags | getattr(os, "O_BINARY", 0), 0o644)
            except OSError as exc:
                raise ContainerError(f"cannot create {local}: {exc.strerror or exc}") from exc
        self._cond = threading.Condition()
        self._pos = 0  # length of the stream
        self._sha = hashlib.sha256()
        self._mark: tuple[int, Any] = (0, self._sha.copy())
        self._journal = _Journal()  # stream[start:_pos] when there is no local copy
        self._sent = 0  # stream[:_sent] handed to the remote file
        self._acked = 0  # stream[:_acked] confirmed on the remote file
        self._sending = 0  # end of the piece being written to the remote file, if any
        self._gen = 0  # bumped when _sent moves back (a cut or a reconnection)
        self._cut: int | None = None  # a remote truncation still to do
        self._created = False
        self._blocked = False
        self._closing = False
        self._aborted = False
        self._done = False
        self._progressed = False
        self._error: str | None = None
        self._digest: str | None = None
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="sftp-stream", daemon=True)
        self._thread.start()

    # -- the StreamSink side (the writer's thread) ------------------------------------
    @property
    def sha256(self) -> str | None:
        """SHA-256 of the stream, after :meth:`close`."""
        return self._digest

    @property
    def where(self) -> str:
        """The local copy, or the remote file when there is none."""
        return str(self.local) if self.local is not None else self.target

    @property
    def kept(self) -> int:
        """All of the stream with a local copy; else the acknowledged bytes."""
        return self._pos if self.local is not None else self._acked

    @property
    def held(self) -> int:
        """Bytes held in memory now (the journal; 0 with a local copy)."""
        return self._journal.size

    @property
    def error(self) -> str | None:
        """Why the upload stopped, or None."""
        return self._error

    @property
    def acknowledged(self) -> int:
        """Bytes the remote file is known to hold."""
        return self._acked

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data`` (waits while the journal is full).

        Raises:
            ContainerError: no local copy and the upload was lost.
            OSError: the local copy cannot be written.
        """
        view = memoryview(data).cast("B")
        size = view.nbytes
        if not size:
            return 0
        if self._fd >= 0:
            _pwrite_all(self._fd, view, self._pos)
        with self._cond:
            if self._fd < 0:
                while self._journal.size and self._journal.size + size > self.memory:
                    if self._error is not None:
                        break
                    self._blocked = True
                    self._cond.notify_all()
                    self._cond.wait()
                self._blocked = False
                if self._error is not None:
                    raise ContainerError(self._lost())
                self._journal.append(bytes(view))
            self._sha.update(view)
            self._pos += size
            self._cond.notify_all()
        return size

    def mark(self) -> None:
        """Remember the hash state here: a member starts."""
        with self._cond:
            self._mark = (self._pos, self._sha.copy())

    def can_truncate(self, size: int) -> bool:
        """Only back to the last mark (the hash state there is known), and not once a
        remote-only upload is lost (what the remote file holds is then left as it is)."""
        lost = self._error is not None and self._fd < 0
        return size == self._mark[0] and size <= self._pos and not (self._aborted or lost)

    def truncate(self, size: int) -> int:
        """Cut the stream back to the last mark, locally and (later) remotely."""
        if not self.can_truncate(size):
            raise ContainerError(f"{self.target}: cannot cut the stream back to {size}")
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                raise ContainerError(f"cannot cut {self.local}: {exc.strerror or exc}") from exc
        with self._cond:
            self._pos = size
            self._sha = self._mark[1].copy()
            if self._fd < 0:
                self._journal.cut(size)
            if size < max(self._sent, self._sending):
                self._sent = min(self._sent, size)
                self._acked = min(self._acked, size)
                self._cut = size if self._cut is None else min(self._cut, size)
                self._gen += 1
            self._cond.notify_all()
        return size

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        """Wait until the remote file holds every byte (or the upload stopped).

        Raises:
            ContainerError: no local copy and the upload was lost (the message says how
                much the remote file holds); or the local copy cannot be made durable.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self._thread.join()
        except KeyboardInterrupt:
            # Ctrl-C while the last bytes go out: stop there (sha256 stays None).
            self.abort()
            self._error = "interrupted before the upload finished"
            raise
        self._digest = self._sha.hexdigest()
        if self._fd >= 0:
            try:
                if self.fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise ContainerError(f"cannot finish {self.local}: {exc.strerror or exc}") from exc
            finally:
                os.close(self._fd)
                self._fd = -1
        if self._error is not None and self.local is None:
            raise ContainerError(self._lost())

    def abort(self) -> None:
        """Stop the sender and close the local copy, leaving both as they stand."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def deliver(self) -> Delivery:
        """After :meth:`close`: check the remote SHA-256 against the streamed one.

        With a local copy, an upload that stopped is finished from it first (the remote
        bytes past the acknowledged ones are sent again).

        Raises:
            TransferError: not delivered (the message says why and what the remote holds).
        """
        assert self._digest is not None, "deliver() before close()"
        if self._error is not None:
            if self.local is None:
                raise TransferError(self._lost())
            done = self.uploader.upload(self.local, self._digest, trusted=self._acked)
            return _replace(done, self.reconnects + done.reconnects, streamed=False)
        done = self.uploader.verify(self._digest, self._pos)
        return _replace(done, self.reconnects + done.reconnects, streamed=True)

    def _lost(self) -> str:
        return (
            f"the upload to {self.target} was lost ({self._error}); no local copy: the "
            f"first {self._acked} byte(s) of the remote file are the container's, confirmed "
            "(any after them were not)"
        )

    # -- the sender thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._cond:
                if not self._done:  # an error nothing above expected: never a silent end
                    self._error = self._error or "the sender thread stopped unexpectedly"
                    self._done = True
                self._cond.notify_all()

    def _loop(self) -> None:
        failures = 0
        delay = self.uploader.retry_delay
        while True:
            client: paramiko.SSHClient | None = None
            try:
                client = self.uploader.connect()
                self._session(client)
                self._finish(None)
                return
            except TransferError as exc:
                self._finish(str(exc))
                return
            except paramiko.SFTPError as exc:
                self._finish(f"SFTP error: {exc}")
                return
            except _RETRYABLE as exc:
                problem = f"{type(exc).__name__}: {exc}"
            finally:
                if client is not None:
                    client.close()
            with self._cond:
                if self._progressed:
                    failures, delay = 0, self.uploader.retry_delay
                self._progressed = False
                failures += 1
                if failures > self.uploader.retries or self._aborted:
                    self._error = f"connection lost, not regained after {failures - 1} attempt(s): {problem}"
                    self._done = True
                    self._cond.notify_all()
                    return
                self.reconnects += 1
                self._cond.wait(delay)
            delay = min(delay * 2, 10.0)

    def _finish(self, error: str | None) -> None:
        with self._cond:
            self._error = error
            self._done = True
            self._cond.notify_all()

    def _session(self, client: paramiko.SSHClient) -> None:
        sftp = client.open_sftp()
        # A server that stops answering without closing the connection is a dropped one.
        sftp.get_channel().settimeout(_TIMEOUT)
        fh: Any = None
        try:
            self._reconcile(sftp)
            while True:
                with self._cond:
                    job = self._next_job()
                if job == "done":
                    if fh is not None:
                        fh.close()
                    return
                if job == "cut":
                    fh = _closed(fh)
                    self._do_cut(sftp)
                elif job == "confirm":
                    fh = _closed(fh)
                    self._confirm(sftp)
                else:
                    fh = self._send_piece(sftp, fh)
        finally:
            with contextlib.suppress(*_RETRYABLE):
                _closed(fh)
            sftp.close()

    def _next_job(self) -> str:
        """What the sender does next (called with the lock held; may wait)."""
        while True:
            if self._aborted:
                return "done"
            if self._cut is not None:
                return "cut"
            if self._sent < self._pos:
                if self._sent - self._acked >= self.checkpoint:
                    return "confirm"
                return "piece"
            if self._acked < self._sent:
                if self._closing or self._blocked:
                    return "confirm"
                if not self._cond.wait(_IDLE) and self._sent == self._pos:
                    return "confirm"
                continue
            if self._closing:
                return "done"
            self._cond.wait()

    def _stream_bytes(self, offset: int, size: int) -> bytes:
        """Stream bytes (lock held): from the local copy or the journal."""
        if self._fd >= 0:
            return os.pread(self._fd, size, offset)
        data = self._journal.read(offset, size)
        if data is None:
            raise TransferError(f"{self.target}: stream bytes at {offset} are no longer held")
        return data

    def _send_piece(self, sftp: paramiko.SFTPClient, fh: Any) -> Any:
        with self._cond:
            if self._cut is not None:
                return fh  # cut back since the job was chosen: the cut comes first
            start, gen = self._sent, self._gen
            piece = self._stream_bytes(start, min(_PIECE, self._pos - start))
            self._sending = start + len(piece)
        try:
            if fh is None:
                fh = sftp.open(self.uploader.target.path, "r+b")
                fh.set_pipelined(True)
                fh.seek(start)
            fh.write(piece)
        finally:
            with self._cond:
                self._sending = 0
        with self._cond:
            if gen != self._gen:
                return _closed(fh)  # cut back meanwhile: the handle's position is stale
            self._sent = start + len(piece)
            sent = self._sent
        if self.on_sent is not None:
            self.on_sent(sent)
        return fh

    def _confirm(self, sftp: paramiko.SFTPClient) -> None:
        """The remote size must equal what was sent: then it is acknowledged."""
        with self._cond:
            if self._cut is not None:
                return  # cut back since the job was chosen: the cut comes first
            sent, gen = self._sent, self._gen
        have = sftp.stat(self.uploader.target.path).st_size or 0
        with self._cond:
            if gen != self._gen:
                return
            if have != sent:
                raise TransferError(
                    f"{self.target}: the remote file holds {have} bytes after {sent} were "
                    "sent: writes were lost there (remote disk full?)"
                )
            self._acknowledge(sent)

    def _do_cut(self, sftp: paramiko.SFTPClient) -> None:
        with self._cond:
            size, self._cut = self._cut, None
        assert size is not None
        path = self.uploader.target.path
        sftp.truncate(path, size)
        have = sftp.stat(path).st_size or 0
        if have != size:
            raise TransferError(f"{self.target}: cut back to {size} bytes, it holds {have}")
        with self._cond:
            if self._cut is None:  # else a newer, shorter cut is still to do
                self._sent = size
                self._gen += 1
                self._acknowledge(size)

    def _acknowledge(self, offset: int) -> None:
        """(lock held) ``stream[:offset]`` is on the remote file."""
        self._acked = offset
        if self._fd < 0:
            self._journal.drop_before(offset)
        self._progressed = True
        self._cond.notify_all()

    def _reconcile(self, sftp: paramiko.SFTPClient) -> None:
        """At each connection: where the remote file stands against the stream."""
        path = self.uploader.target.path
        try:
            have: int | None = sftp.stat(path).st_size or 0
        except FileNotFoundError:
            have = None
        if not self._created:
            if have is not None:
                raise TransferError(f"{self.target}: the remote file exists: refusing to overwrite it")
            sftp.open(path, "wb").close()
            self._created = True
            return
        have = have or 0
        with self._cond:
            acked, pos = self._acked, self._pos
        if have < acked and self._fd < 0:
            raise TransferError(
                f"{self.target}: the remote file holds {have} bytes, fewer than the {acked} "
                "it had confirmed, and they are no longer held here"
            )
        start = have if have < acked else acked + self._matching(sftp, acked, min(have, pos))
        with self._cond:
            if self._cut is not None:
                start = min(start, self._cut)
                self._cut = None
            start = min(start, self._pos)
            self._sent = self._acked = start
            self._gen += 1
        if have != start:
            sftp.truncate(path, start)
        with self._cond:
            if self._fd < 0:
                self._acknowledge(start)

    def _matching(self, sftp: paramiko.SFTPClient, start: int, end: int) -> int:
        """How many remote bytes from ``start`` (up to ``end``) equal the stream's."""
        if end <= start:
            return 0
        same = 0
        with sftp.open(self.uploader.target.path, "rb") as fh:
            fh.seek(start)
            while start + same < end:
                remote = fh.read(min(_PIECE, end - start - same))
                if not remote:
                    break
                with self._cond:
                    mine = self._stream_bytes(start + same, len(remote))
                if remote != mine:
                    return same + next(
                        (i for i, (a, b) in enumerate(zip(remote, mine, strict=False)) if a != b),
                        min(len(remote), len(mine)),
                    )
                same += len(remote)
        return same


class _Journal:
    """The stream bytes not yet acknowledged, kept as the pieces written (a deque: no
    reallocation of one big buffer, which would briefly need twice the memory)."""

    def __init__(self) -> None:
        self._pieces: deque[tuple[int, bytes]] = deque()
        self.start = 0  # stream offset of the first byte held
        self.size = 0

    def append(self, data: bytes) -> None:
        self._pieces.append((self.start + self.size, data))
        self.size += len(data)

    def read(self, offset: int, size: int) -> bytes | None:
        """``stream[offset:offset + size]`` (shorter at the end); None if no longer held."""
        if offset < self.start:
            return None
        end = min(offset + size, self.start + self.size)
        out = []
        for at, piece in self._pieces:
            if at >= end:
                break
            if at + len(piece) > offset:
                out.append(piece[max(0, offset - at) : end - at])
        return b"".join(out)

    def drop_before(self, offset: int) -> None:
        """Forget the pieces wholly before ``offset`` (acknowledged)."""
        while self._pieces and self._pieces[0][0] + len(self._pieces[0][1]) <= offset:
            _, piece = self._pieces.popleft()
            self.start += len(piece)
            self.size -= len(piece)

    def cut(self, offset: int) -> None:
        """The stream was truncated at ``offset``."""
        while self._pieces and self._pieces[-1][0] >= offset:
            self.size -= len(self._pieces.pop()[1])
        if self._pieces and self.start + self.size > offset:
            at, piece = self._pieces.pop()
            self._pieces.append((at, piece[: offset - at]))
            self.size = offset - self.start
        if not self._pieces:
            self.start, self.size = offset, 0


class StreamFactory:
    """Makes the :class:`StreamingUpload` of a collection (``CollectOptions.stream``).

    Args:
        uploader: where to.
        local_copy: keep a local copy at the collection's output path.
    """

    def __init__(self, uploader: SftpUploader, *, local_copy: bool) -> None:
        self.uploader = uploader
        self.local_copy = local_copy
        self.sink: StreamingUpload | None = None

    def __call__(self, output: Path, overwrite: bool) -> StreamingUpload:
        """The sink for ``output`` (kept in :attr:`sink`)."""
        self.sink = StreamingUpload(
            self.uploader, output if self.local_copy else None, overwrite=overwrite
        )
        return self.sink


def _closed(fh: Any) -> Any:
    """Close a remote handle if open; None (the handle to keep)."""
    if fh is not None:
        fh.close()
    return None


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _replace(done: Delivery, reconnects: int, *, streamed: bool) -> Delivery:
    from dataclasses import replace

    return replace(done, reconnects=reconnects, streamed=streamed)


__all__ = ["CHECKPOINT", "MEMORY", "StreamFactory", "StreamingUpload"]

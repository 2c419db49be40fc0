"""What every source format shares: the open :class:`Source` and the format interface.

A source format is one module with one :class:`SourceFormat` subclass, listed in
:mod:`selective_imager.sources.registry`. Detection is by content (the first bytes of
the file), never by the file name's extension. Nothing here ever opens a file for
writing.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from selective_imager.errors import SourceError
from selective_imager.streams import FileStream

if TYPE_CHECKING:
    from types import TracebackType

    from selective_imager.models import SourceInfo
    from selective_imager.streams import ByteStream

# Bytes read from the start of a file for detection (a VHD's footer copy and a
# VMDK descriptor fit; formats that need the end of the file read it themselves).
HEAD_SIZE = 4096


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """What the user said about a source beyond its path.

    Attributes:
        parents: parent files of a differencing virtual disk given with ``--parent``
            (looked up by name or identifier before the path the child records).
        read_timeout: seconds after which a read of the source that has not returned
            is abandoned (the range is then unreadable, the run goes on); None for the
            default (:data:`DEVICE_READ_TIMEOUT` on devices, none on image files), 0
            for never.
    """

    parents: tuple[str, ...] = ()
    read_timeout: float | None = None


#: Default read timeout on devices, in seconds: a healthy disk answers in
#: milliseconds, a dying one may block a read for minutes.
DEVICE_READ_TIMEOUT = 30.0


@dataclass(slots=True)
class Source:
    """An open source: its stream and what it is. Close it when done."""

    info: SourceInfo
    stream: ByteStream
    _backend: Any = None
    _extra: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Release the files and handles of the source."""
        self.stream.close()
        for obj in (self._backend, *reversed(self._extra)):
            if obj is not None:
                obj.close()
        self._backend = None
        self._extra = []

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SourceFormat(ABC):
    """One image format: how to recognise it and how to open it.

    ``detect`` gets the path and the first :data:`HEAD_SIZE` bytes of the file and
    must not open anything for writing; ``open_source`` returns the open source or
    raises :class:`~selective_imager.errors.SourceError` with one line saying why.
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """Whether the file at ``path`` (starting with ``head``) is of this format."""

    @classmethod
    @abstractmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open ``path`` read-only.

        Raises:
            SourceError: the file is damaged, incomplete or a needed file is missing.
        """


def read_head(path: str, size: int = HEAD_SIZE) -> bytes:
    """The first ``size`` bytes of ``path`` (fewer for a short file).

    Raises:
        SourceError: the file cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise SourceError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def file_stream(path: str, size: int) -> FileStream:
    """A read-only stream over a regular file.

    Raises:
        SourceError: the file cannot be opened.
    """
    try:
        return FileStream(path, size)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open: {exc.strerror or exc}") from exc


def detect_sector_size(stream: ByteStream) -> int:
    """512, or 4096 when a GPT header sits at 4096 and not at 512 (4Kn disks)."""
    if stream.read_at(512, 8) != b"EFI PART" and stream.read_at(4096, 8) == b"EFI PART":
        return 4096
    return 512

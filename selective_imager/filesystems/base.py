"""The file-system interface every backend implements.

A :class:`Filesystem` is opened on a :class:`~selective_imager.streams.ByteStream`
(a partition slice or a decrypted BitLocker volume) and gives :class:`FileEntry`
records plus streams of file content. Paths are ``/``-separated and relative to the
volume root; case-insensitive lookup where the file system is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from selective_imager.errors import FilesystemError, SelectiveImagerError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from selective_imager.models import Extent, FileEntry, FilesystemInfo
    from selective_imager.streams import ByteStream


@dataclass(frozen=True, slots=True)
class Listing:
    """What could be read of one directory.

    Attributes:
        entries: its entries; those whose own metadata is unreadable carry
            :attr:`FileEntry.damage` and what the directory index says of them.
        problems: what went wrong while listing it, one line each without the
            directory's path (empty when nothing did); the entries are then what
            could still be found (e.g. from the $MFT).
    """

    entries: tuple[FileEntry, ...]
    problems: tuple[str, ...] = ()


class Filesystem(ABC):
    """An open file system.

    Implementations translate backend ``OSError``/``IOError`` into
    :class:`~selective_imager.errors.FilesystemError` with ``from exc``.
    """

    info: FilesystemInfo

    @abstractmethod
    def root(self) -> FileEntry:
        """The root directory."""

    @abstractmethod
    def lookup(self, path: str) -> FileEntry:
        """The entry at ``path`` (``/``-separated, relative to the root).

        Raises:
            PathNotFoundError: no such path.
        """

    @abstractmethod
    def iterdir(self, directory: FileEntry) -> Iterator[FileEntry]:
        """The entries of a directory (without ``.`` and ``..``), in on-disk order."""

    def list_directory(self, directory: FileEntry) -> Listing:
        """The entries of a directory and what went wrong reading them.

        Backends that can go on past a damaged entry override this; the default lists
        with :meth:`iterdir`, which fails as a whole.

        Raises:
            FilesystemError: nothing of the directory could be read.
        """
        return Listing(tuple(self.iterdir(directory)))

    @abstractmethod
    def open_stream(self, entry: FileEntry, stream: str = "") -> ByteStream:
        """A read-only stream of a file's data (``stream`` names an ADS, "" the default)."""

    def extents(self, entry: FileEntry, stream: str = "") -> tuple[Extent, ...]:
        """Where the stream's bytes lie on the volume; empty when unknown or resident."""
        return ()

    def walk(
        self,
        top: FileEntry | None = None,
        on_error: Callable[[FileEntry, SelectiveImagerError], None] | None = None,
    ) -> Iterator[FileEntry]:
        """Every entry below ``top`` (default the root), depth first, parents first.

        A directory that cannot be listed (or only in part: see :meth:`list_directory`)
        raises, or, with ``on_error``, is reported to it (once per problem) and the
        walk goes on with what could be read.
        """
        stack = [top if top is not None else self.root()]
        while stack:
            directory = stack.pop()
            try:
                listing = self.list_directory(directory)
            except SelectiveImagerError as exc:
                if on_error is None:
                    raise
                on_error(directory, exc)
                continue
            for problem in listing.problems:
                if on_error is None:
                    raise FilesystemError(f"{directory.path or '/'}: {problem}")
                on_error(directory, FilesystemError(problem))
            children = listing.entries
            yield from children
            stack.extend(reversed([c for c in children if c.is_directory]))

    def scan(self) -> Iterator[FileEntry]:
        """Every entry of the volume in whatever order is fastest, each with its full path.

        The default walks the tree; NTFS overrides it with a sequential $MFT scan. The
        set of (path, entry number) pairs equals :meth:`walk`'s, but a scanned entry may
        carry only its path, name, type and numbers: pass it to :meth:`complete` before
        using sizes, streams or times.
        """
        return self.walk()

    def complete(self, entry: FileEntry) -> FileEntry:
        """The full entry for one that :meth:`scan` returned (itself by default)."""
        return entry

    def declared_size(self) -> int | None:
        """The volume size the file system itself records (None when not known).

        Larger than the stream it was opened on means the volume was cut short (a
        truncated image): what lies past the end is missing.
        """
        return None

    def close(self) -> None:
        """Release backend objects (the underlying stream stays open)."""
        return None

    def __enter__(self) -> Filesystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FilesystemFormat(ABC):
    """One file-system backend: how to recognise a volume it reads, and how to open it.

    Listed in :mod:`selective_imager.filesystems.registry`; ``detect`` must be
    position-safe (``read_at`` only) and cheap.
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def detect(cls, stream: ByteStream) -> bool:
        """Whether this backend should try ``stream``."""

    @classmethod
    @abstractmethod
    def open_filesystem(cls, stream: ByteStream) -> Filesystem:
        """Open the file system.

        Raises:
            UnsupportedFilesystemError: not a file system this backend reads.
            FilesystemError: recognised but too damaged to open.
        """

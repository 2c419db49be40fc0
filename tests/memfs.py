"""A tiny in-memory Filesystem for matcher unit tests.

Built from a list of file paths (optionally with ``path:stream`` alternate streams and
sizes). Case-insensitive mode folds names with ``str.lower`` on lookup, like NTFS.
Directories listed in ``unreadable`` raise FilesystemError from ``iterdir``/``lookup``
below them, to exercise error reporting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selective_imager.errors import FilesystemError, PathNotFoundError
from selective_imager.filesystems.base import Filesystem
from selective_imager.models import FileEntry, FilesystemInfo, StreamInfo

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


class MemFS(Filesystem):
    """In-memory tree. ``files`` maps a file path to its size (or use ``from_paths``)."""

    def __init__(
        self,
        files: dict[str, int],
        *,
        streams: dict[str, dict[str, int]] | None = None,
        dirs: Iterable[str] = (),
        case_sensitive: bool = False,
        unreadable: Iterable[str] = (),
        with_scan: bool = True,
        deleted: Iterable[str] = (),
    ) -> None:
        self.info = FilesystemInfo(
            type="ext4" if case_sensitive else "ntfs",
            backend="memfs",
            case_sensitive=case_sensitive,
        )
        self.case_sensitive = case_sensitive
        self.unreadable = {self._key(p) for p in unreadable}
        self.with_scan = with_scan
        self.lookups = 0
        self.listings = 0
        streams = streams or {}
        deleted_set = set(deleted)
        self._entries: dict[str, FileEntry] = {}
        self._children: dict[str, list[str]] = {"": []}
        root = FileEntry(path="", name="", is_directory=True, size=0, entry=5)
        self._entries[""] = root
        for directory in dirs:
            self._add_dir(directory)
        for path, size in files.items():
            parent, _, name = path.rpartition("/")
            self._add_dir(parent)
            # Stored spelling of the parent wins, as on a real case-insensitive volume.
            canonical = self._entries[self._key(parent)].child_path(name)
            entry = FileEntry(
                path=canonical,
                name=name,
                is_directory=False,
                size=size,
                entry=len(self._entries) + 100,
                allocated=path not in deleted_set,
                streams=tuple(StreamInfo(n, z) for n, z in streams.get(path, {}).items()),
            )
            self._insert(entry)

    @classmethod
    def from_paths(cls, paths: Iterable[str], **kwargs: object) -> MemFS:
        """Every path a file of size 1; ``a/b:ads`` adds an alternate stream to ``a/b``."""
        files: dict[str, int] = {}
        streams: dict[str, dict[str, int]] = {}
        for path in paths:
            base, sep, stream = path.partition(":")
            files.setdefault(base, 1)
            if sep:
                streams.setdefault(base, {})[stream] = 1
        return cls(files, streams=streams, **kwargs)  # type: ignore[arg-type]

    def _key(self, path: str) -> str:
        return path if self.case_sensitive else path.lower()

    def _insert(self, entry: FileEntry) -> None:
        key = self._key(entry.path)
        if key in self._entries:
            return
        self._entries[key] = entry
        parent = self._key(entry.path.rpartition("/")[0])
        self._children.setdefault(parent, []).append(key)
        if entry.is_directory:
            self._children.setdefault(key, [])

    def _add_dir(self, path: str) -> None:
        if not path or self._key(path) in self._entries:
            return
        parent, _, name = path.rpartition("/")
        self._add_dir(parent)
        canonical = self._entries[self._key(parent)].child_path(name)
        self._insert(
            FileEntry(
                path=canonical, name=name, is_directory=True, size=0, entry=len(self._entries) + 100
            )
        )

    def _check(self, path: str) -> None:
        key = self._key(path)
        for bad in self.unreadable:
            if key == bad or key.startswith(bad + "/"):
                raise FilesystemError(f"cannot read directory {path!r}")

    def root(self) -> FileEntry:
        return self._entries[""]

    def lookup(self, path: str) -> FileEntry:
        self.lookups += 1
        path = path.strip("/")
        parent = path.rpartition("/")[0]
        if parent:
            self._check(parent)
        entry = self._entries.get(self._key(path))
        if entry is None:
            raise PathNotFoundError(path)
        return entry

    def iterdir(self, directory: FileEntry) -> Iterator[FileEntry]:
        self.listings += 1
        self._check(directory.path)
        for key in self._children.get(self._key(directory.path), []):
            yield self._entries[key]

    def open_stream(self, entry: FileEntry, stream: str = ""):  # pragma: no cover - unused
        raise NotImplementedError

    def scan(self) -> Iterator[FileEntry]:
        if not self.with_scan:
            yield from super().scan()
            return
        # Not tree order, like an $MFT scan: sorted by entry number reversed.
        yield from sorted(
            (e for k, e in self._entries.items() if k),
            key=lambda e: -(e.entry or 0),
        )

    def all_files(self) -> list[FileEntry]:
        """Every file (not directory) entry."""
        return [e for e in self._entries.values() if e.path and not e.is_directory]

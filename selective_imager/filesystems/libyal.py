"""The common part of the libyal file-system bindings: pyfsapfs, pyfsxfs, pyfsext, pyfshfs.

The four bindings share one ``file_entry`` interface (names, POSIX mode and owners,
times as nanosecond integers, sub-entries by index or name, extended attributes, extents,
``read_buffer_at_offset``). :class:`LibyalFilesystem` turns it into
:class:`~selective_imager.models.FileEntry` records; each format module says how to open
its volume, how an entry is numbered, which times it has and what its streams are.

Times are read with the ``get_*_time_as_integer`` getters only: the ``datetime`` getters
drop the nanoseconds, and one of them did not return on a pre-1970 XFS time.

References:
    - libyal libfsapfs, libfsxfs, libfsext, libfshfs: the Python bindings' ``file_entry``
      and ``extended_attribute`` objects (pyfs*_file_entry.c).
"""

from __future__ import annotations

import stat
import threading
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from selective_imager.errors import FilesystemError, PathNotFoundError, short_error
from selective_imager.filesystems.base import Filesystem
from selective_imager.models import Extent, FileEntry, StreamInfo, Timestamp, TimestampSet
from selective_imager.streams import ByteStream

if TYPE_CHECKING:
    from collections.abc import Iterator

# LIBFS*_EXTENT_FLAG_IS_SPARSE: the extent has no blocks (reads as zeros).
_EXTENT_SPARSE = 0x01


class LibyalFilesystem(Filesystem):
    """A volume opened by one of the libyal file-system bindings.

    Subclasses set ``self._volume`` and ``self.info`` in ``__init__`` and implement the
    hooks below. Entries are numbered by inode (``FileEntry.entry``), so hard links
    share a number.
    """

    _volume: Any
    # How messages name the format ("APFS", "XFS"...).
    label: ClassVar[str]

    def __init__(self) -> None:
        # One binding object is never used by two threads at once (see NOTES.md on
        # libyal objects shared between threads).
        self._lock = threading.RLock()

    # -- hooks -----------------------------------------------------------------
    @abstractmethod
    def _root_object(self) -> Any:
        """The binding's root directory entry."""

    @abstractmethod
    def _object_by_number(self, number: int) -> Any:
        """The binding's entry with this inode number (None when there is none)."""

    @abstractmethod
    def _number(self, fe: Any) -> int:
        """The entry's inode number."""

    def _parent_number(self, fe: Any) -> int | None:
        """The parent inode number when the format records it in the inode."""
        return None

    def _times(self, fe: Any) -> TimestampSet:
        """Created, modified, inode-changed and accessed times (nanoseconds since 1970)."""
        return TimestampSet(
            created=_ns(fe.get_creation_time_as_integer()),
            modified=_ns(fe.get_modification_time_as_integer()),
            changed=_ns(fe.get_inode_change_time_as_integer()),
            accessed=_ns(fe.get_access_time_as_integer()),
        )

    def _stream_objects(self, fe: Any) -> list[tuple[str, Any]]:
        """Named streams: every extended attribute, by its full name (``user.x``)."""
        out: list[tuple[str, Any]] = []
        for i in range(fe.get_number_of_extended_attributes()):
            attr = fe.get_extended_attribute(i)
            out.append((str(attr.get_name()), attr))
        return out

    # -- entries ---------------------------------------------------------------
    def root(self) -> FileEntry:
        """The root directory."""
        with self._lock:
            try:
                fe = self._root_object()
                return self._entry(fe, "", "", None)
            except OSError as exc:
                raise FilesystemError(
                    f"{self.label}: cannot read the root directory: {short_error(exc)}"
                ) from exc

    def lookup(self, path: str) -> FileEntry:
        """One component at a time; case-folded where the volume is case-insensitive."""
        parts = [p for p in path.split("/") if p]
        entry = self.root()
        for part in parts:
            if not entry.is_directory:
                raise PathNotFoundError(f"{path}: not found")
            entry = self._child(entry, part, path)
        return entry

    def _child(self, directory: FileEntry, name: str, path: str) -> FileEntry:
        with self._lock:
            fe = self._object(directory)
            try:
                sub = fe.get_sub_file_entry_by_name(name)
            except OSError:
                # pyfsxfs 20260901 fails every by-name lookup in some directories that
                # it lists correctly: the listing below decides.
                sub = None
            if sub is not None:
                real = str(sub.get_name())
                return self._entry(sub, directory.child_path(real), real, directory)
        folded = name.casefold()
        found: FileEntry | None = None
        for child in self.iterdir(directory):
            if child.name == name:
                return child
            if not self.info.case_sensitive and found is None and child.name.casefold() == folded:
                found = child
        if found is None:
            raise PathNotFoundError(f"{path}: not found")
        return found

    def iterdir(self, directory: FileEntry) -> Iterator[FileEntry]:
        """The directory's entries in the binding's order."""
        with self._lock:
            fe = self._object(directory)
            where = directory.path or "/"
            try:
                count = fe.get_number_of_sub_file_entries()
            except OSError as exc:
                raise FilesystemError(f"{where}: cannot list: {short_error(exc)}") from exc
            children: list[FileEntry] = []
            for i in range(count):
                try:
                    sub = fe.get_sub_file_entry(i)
                    name = str(sub.get_name())
                    children.append(self._entry(sub, directory.child_path(name), name, directory))
                except OSError as exc:
                    raise FilesystemError(
                        f"{where}: cannot read entry {i}: {short_error(exc)}"
                    ) from exc
        yield from children

    def _object(self, entry: FileEntry) -> Any:
        if entry.entry is None:
            raise FilesystemError(f"{entry.path}: no inode number")
        try:
            fe = self._object_by_number(entry.entry)
        except OSError as exc:
            raise FilesystemError(
                f"{entry.path or '/'}: cannot read inode {entry.entry}: {short_error(exc)}"
            ) from exc
        if fe is None:
            raise PathNotFoundError(f"{entry.path or '/'}: inode {entry.entry} not found")
        return fe

    def _entry(self, fe: Any, path: str, name: str, parent: FileEntry | None) -> FileEntry:
        mode = int(fe.get_file_mode() or 0)
        is_dir = stat.S_ISDIR(mode)
        streams = tuple(StreamInfo(n, int(obj.get_size())) for n, obj in self._stream_objects(fe))
        # Only regular files have data extents (an XFS short symlink lives in its inode).
        extents = _extents(fe) if stat.S_ISREG(mode) else ()
        parent_number = self._parent_number(fe)
        if parent_number is None and parent is not None:
            parent_number = parent.entry
        return FileEntry(
            path=path,
            name=name,
            is_directory=is_dir,
            size=0 if is_dir else int(fe.get_size() or 0),
            allocated_size=sum(e.length for e in extents if not e.sparse),
            entry=self._number(fe),
            parent_entry=parent_number,
            times=self._times(fe),
            streams=streams,
            mode=mode,
            uid=_int_or_none(fe.get_owner_identifier()),
            gid=_int_or_none(fe.get_group_identifier()),
            link_target=str(fe.get_symbolic_link_target() or "") if stat.S_ISLNK(mode) else "",
            links=_int_or_none(fe.get_number_of_links()),
        )

    # -- content ---------------------------------------------------------------
    def open_stream(self, entry: FileEntry, stream: str = "") -> ByteStream:
        """File data, or an extended attribute's value when ``stream`` names one.

        Reads go through the binding, which decompresses (APFS, HFS+) and decrypts
        (APFS) as the format requires.
        """
        label = f"{entry.path}:{stream}" if stream else entry.path
        with self._lock:
            fe = self._object(entry)
            try:
                if not stream:
                    if entry.is_directory:
                        raise PathNotFoundError(f"{label}: a directory has no data")
                    target = entry.link_target.encode("utf-8", "surrogateescape")
                    if entry.link_target and entry.size == len(target):
                        # A symlink whose data is its target (XFS, ext): the binding
                        # reads no data for one stored in the inode, so give the target.
                        return _BytesStream(target)
                    return _LibyalEntryStream(fe, int(fe.get_size() or 0), label, self._lock)
                for name, obj in self._stream_objects(fe):
                    if name == stream:
                        return _LibyalEntryStream(obj, int(obj.get_size()), label, self._lock)
            except OSError as exc:
                raise FilesystemError(f"{label}: cannot open: {short_error(exc)}") from exc
        raise PathNotFoundError(f"{label}: no such stream")

    def extents(self, entry: FileEntry, stream: str = "") -> tuple[Extent, ...]:
        """The default stream's extents as byte ranges of the volume (none for streams)."""
        if stream or entry.mode is None or not stat.S_ISREG(entry.mode):
            return ()
        with self._lock:
            fe = self._object(entry)
            try:
                return _extents(fe)
            except OSError as exc:
                raise FilesystemError(f"{entry.path}: extents: {short_error(exc)}") from exc

    def close(self) -> None:
        """Close the binding's volume."""
        if self._volume is not None:
            self._volume.close()
            self._volume = None



class _LibyalEntryStream(ByteStream):
    """A file entry's data or an extended attribute's value, read through the binding."""

    def __init__(self, obj: Any, size: int, label: str, lock: threading.RLock) -> None:
        super().__init__(size)
        self._obj = obj
        self._lock = lock
        self.label = label

    def _read_at(self, offset: int, size: int) -> bytes:
        with self._lock:
            try:
                data = self._obj.read_buffer_at_offset(size, offset)
            except OSError as exc:
                raise FilesystemError(
                    f"{self.label}: read error at {offset}: {short_error(exc)}"
                ) from exc
        if len(data) < size:
            raise FilesystemError(f"{self.label}: short read at {offset} (volume truncated?)")
        return bytes(data)


class _BytesStream(ByteStream):
    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self._data = data

    def _read_at(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]


def _extents(fe: Any) -> tuple[Extent, ...]:
    out: list[Extent] = []
    logical = 0
    for i in range(fe.get_number_of_extents()):
        offset, length, flags = fe.get_extent(i)
        sparse = bool(flags & _EXTENT_SPARSE)
        out.append(
            Extent(
                logical_offset=logical,
                volume_offset=None if sparse else int(offset),
                length=int(length),
                sparse=sparse,
            )
        )
        logical += int(length)
    return tuple(out)


def _ns(value: int | None) -> Timestamp | None:
    """A binding's nanosecond integer as found (0 is 1970-01-01, not "unset")."""
    if value is None:
        return None
    return Timestamp(int(value), 1)


def _int_or_none(value: int | None) -> int | None:
    return None if value is None else int(value)

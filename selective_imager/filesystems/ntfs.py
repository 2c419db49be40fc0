"""NTFS through pyfsntfs (libfsntfs).

pyfsntfs opens volumes The Sleuth Kit cannot (e.g. 2 MiB clusters) and gives all three
timestamp sets an examiner compares: $STANDARD_INFORMATION, the record's own
$FILE_NAME, and the $FILE_NAME copy in the parent's $I30 index entry.

Notes on the binding: attribute objects are all of one Python class, so attributes are
told apart by ``attribute_type``; paths use backslashes; entries obtained by number have
no name, so names come from directory listings.

References:
    - libyal libfsntfs, "New Technologies File System (NTFS)" format documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selective_imager.errors import FilesystemError, PathNotFoundError, short_error
from selective_imager.filesystems.base import Filesystem, FilesystemFormat
from selective_imager.models import (
    Extent,
    FileEntry,
    FilesystemInfo,
    StreamInfo,
    Timestamp,
    TimestampSet,
    attribute_names,
)
from selective_imager.streams import ByteStream, LibyalStream, RangeStream

if TYPE_CHECKING:
    from collections.abc import Iterator

_ROOT = 5
_ATTR_SI = 0x10
_ATTR_FN = 0x30
_ATTR_DATA = 0x80
_MFT_REF_MASK = 0xFFFFFFFFFFFF
_DIRECTORY_INDEX_FLAG = 0x10000000
# libfsntfs extent flags (LIBFSNTFS_EXTENT_FLAG_*).
_EXTENT_SPARSE = 0x01
_EXTENT_COMPRESSED = 0x02


def is_ntfs(stream: ByteStream) -> bool:
    """NTFS boot sector signature at byte 3 (position-safe)."""
    return stream.read_at(3, 8) == b"NTFS    "


def _ts(value: int | None) -> Timestamp | None:
    return Timestamp.from_filetime(value) if value else None


class NtfsFilesystem(Filesystem):
    """An NTFS volume opened with pyfsntfs."""

    def __init__(self, stream: ByteStream) -> None:
        import pyfsntfs

        self._stream = RangeStream(stream, 0, stream.size)  # own position for libfsntfs
        self._volume = pyfsntfs.volume()
        try:
            self._volume.open_file_object(self._stream)
        except OSError as exc:
            raise FilesystemError(f"cannot open NTFS: {short_error(exc)}") from exc
        serial = int(self._volume.get_serial_number() or 0)
        self.info = FilesystemInfo(
            type="ntfs",
            backend="pyfsntfs",
            label=str(self._volume.get_name() or ""),
            serial=f"{serial:016X}",
            block_size=int(self._volume.get_cluster_block_size()),
            case_sensitive=False,
        )

    # -- entries ---------------------------------------------------------------
    def root(self) -> FileEntry:
        """The root directory (MFT entry 5)."""
        try:
            fe = self._volume.get_root_directory()
        except OSError as exc:
            raise FilesystemError(f"cannot read the root directory: {short_error(exc)}") from exc
        return self._entry(fe, "", "")

    def lookup(self, path: str) -> FileEntry:
        """Case-insensitive lookup; the result carries the on-disk spelling."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self.root()
        names: list[str] = []
        fe: Any = None
        for i in range(len(parts)):
            win = "\\" + "\\".join(parts[: i + 1])
            try:
                fe = self._volume.get_file_entry_by_path(win)
            except OSError as exc:
                raise FilesystemError(f"{path}: cannot read: {short_error(exc)}") from exc
            if fe is None:
                raise PathNotFoundError(f"{path}: not found")
            names.append(str(fe.get_name() or parts[i]))
        return self._entry(fe, "/".join(names), names[-1])

    def iterdir(self, directory: FileEntry) -> Iterator[FileEntry]:
        """Entries of a directory's $I30 index."""
        fe = self._by_number(directory)
        try:
            count = fe.get_number_of_sub_file_entries()
        except OSError as exc:
            raise FilesystemError(
                f"{directory.path or '/'}: cannot list: {short_error(exc)}"
            ) from exc
        for i in range(count):
            try:
                sub = fe.get_sub_file_entry(i)
                name = str(sub.get_name())
                yield self._entry(sub, directory.child_path(name), name)
            except OSError as exc:
                raise FilesystemError(
                    f"{directory.path or '/'}: cannot read entry {i}: {short_error(exc)}"
                ) from exc

    def _by_number(self, entry: FileEntry) -> Any:
        if entry.entry is None:
            raise FilesystemError(f"{entry.path}: no MFT entry number")
        try:
            fe = self._volume.get_file_entry(entry.entry)
        except OSError as exc:
            raise FilesystemError(
                f"{entry.path}: cannot read MFT entry {entry.entry}: {short_error(exc)}"
            ) from exc
        ref = int(fe.get_file_reference())
        if entry.sequence is not None and ref >> 48 != entry.sequence:
            raise FilesystemError(
                f"{entry.path}: MFT entry {entry.entry} was reused (sequence {ref >> 48}, "
                f"expected {entry.sequence})"
            )
        return fe

    def _entry(self, fe: Any, path: str, name: str) -> FileEntry:
        ref = int(fe.get_file_reference())
        si = fn = None
        parent_ref: int | None = None
        names: list[tuple[int, Any]] = []
        for idx in range(fe.get_number_of_attributes()):
            attr = fe.get_attribute(idx)
            kind = attr.get_attribute_type()
            if kind == _ATTR_SI:
                si = _times(attr)
            elif kind == _ATTR_FN:
                names.append((idx, attr))
        chosen = _choose_name(names, fe.get_name_attribute_index() if path else None)
        if chosen is not None:
            fn = _times(chosen)
            parent_ref = int(chosen.get_parent_file_reference())
        i30 = None
        if path and fe.has_i30_entry():
            i30 = TimestampSet(
                created=_ts(fe.get_i30_creation_time_as_integer()),
                modified=_ts(fe.get_i30_modification_time_as_integer()),
                changed=_ts(fe.get_i30_entry_modification_time_as_integer()),
                accessed=_ts(fe.get_i30_access_time_as_integer()),
            )
        flags = int(fe.get_file_attribute_flags() or 0)
        is_dir = bool(fe.has_directory_entries_index()) or bool(flags & _DIRECTORY_INDEX_FLAG)
        size = int(fe.get_size() or 0) if fe.has_default_data_stream() else 0
        extents = _extents(fe) if fe.has_default_data_stream() else ()
        streams = tuple(
            StreamInfo(str(ads.get_name()), int(ads.get_size()))
            for ads in fe.alternate_data_streams
        )
        return FileEntry(
            path=path,
            name=name,
            is_directory=is_dir,
            size=size,
            allocated_size=sum(e.length for e in extents if not e.sparse),
            entry=ref & _MFT_REF_MASK,
            sequence=ref >> 48,
            parent_entry=(parent_ref & _MFT_REF_MASK) if parent_ref is not None else None,
            parent_sequence=(parent_ref >> 48) if parent_ref is not None else None,
            allocated=bool(fe.is_allocated()),
            resident=(not extents) if fe.has_default_data_stream() else None,
            attribute_flags=flags,
            attributes=attribute_names(flags),
            si=si,
            fn=fn,
            i30=i30,
            streams=streams,
            link_target=str(fe.get_symbolic_link_target() or ""),
        )

    # -- scan ------------------------------------------------------------------
    def scan(self) -> Iterator[FileEntry]:
        """Every allocated file and directory from one sequential pass over the $MFT.

        Paths come from each record's $FILE_NAME attributes (one per hard link, DOS
        8.3 names skipped), resolved through parent references whose sequence numbers
        must match, as a directory walk would reach them. Entries are partial (no
        sizes, streams or times): :meth:`complete` fills in a match. Memory stays
        proportional to the number of directories, not files.
        """
        volume = self._volume
        dirs: dict[int, tuple[int, int, str, int]] = {}  # entry -> (parent, parent seq, name, seq)
        resolved: dict[int, str] = {_ROOT: ""}
        pending: list[tuple[int, int, int, int, str, bool]] = []
        try:
            count = int(volume.get_number_of_file_entries())
            root_seq = int(volume.get_file_entry(_ROOT).get_file_reference()) >> 48
        except OSError as exc:
            raise FilesystemError(f"cannot read the $MFT: {short_error(exc)}") from exc

        def dir_path(number: int, seq: int) -> str | None:
            """Path of directory ``number`` if it is known, with that sequence, and reachable."""
            if number == _ROOT:
                return "" if seq == root_seq else None
            chain: list[tuple[int, str]] = []
            current, current_seq = number, seq
            while current not in resolved:
                info = dirs.get(current)
                if info is None or info[3] != current_seq or len(chain) > 4096:
                    return None  # unknown (yet), reused, or a loop
                chain.append((current, info[2]))
                current, current_seq = info[0], info[1]
                if current == _ROOT and current_seq != root_seq:
                    return None
            base = resolved[current]
            for entry_number, name in reversed(chain):
                base = f"{base}/{name}" if base else name
                resolved[entry_number] = base
            return base

        def make(
            number: int, seq: int, parent: int, name: str, is_dir: bool, base: str
        ) -> FileEntry:
            return FileEntry(
                path=f"{base}/{name}" if base else name,
                name=name,
                is_directory=is_dir,
                size=0,
                entry=number,
                sequence=seq,
                parent_entry=parent,
                allocated=True,
            )

        for number in range(count):
            if number == _ROOT:
                continue
            try:
                fe = volume.get_file_entry(number)
                if not fe.is_allocated():
                    continue
                if int(fe.get_base_record_file_reference()) & _MFT_REF_MASK not in (0, number):
                    continue  # an extension record of another entry
                seq = int(fe.get_file_reference()) >> 48
                is_dir = bool(fe.has_directory_entries_index())
                links: list[tuple[int, str]] = []
                for idx in range(fe.get_number_of_attributes()):
                    attr = fe.get_attribute(idx)
                    if attr.get_attribute_type() == _ATTR_FN and attr.get_name_space() != 2:
                        links.append((int(attr.get_parent_file_reference()), str(attr.get_name())))
            except OSError:
                continue  # an unreadable record: a walk cannot reach it either
            for parent_ref, name in links:
                parent, parent_seq = parent_ref & _MFT_REF_MASK, parent_ref >> 48
                if is_dir:
                    dirs[number] = (parent, parent_seq, name, seq)
                base = dir_path(parent, parent_seq)
                if base is None:
                    # Usually the parent comes later in the $MFT; decided at the end.
                    pending.append((number, seq, parent, parent_seq, name, is_dir))
                else:
                    yield make(number, seq, parent, name, is_dir, base)
        for number, seq, parent, parent_seq, name, is_dir in pending:
            base = dir_path(parent, parent_seq)
            if base is not None:
                yield make(number, seq, parent, name, is_dir, base)

    def complete(self, entry: FileEntry) -> FileEntry:
        """The full entry (sizes, streams, all three timestamp sets).

        One lookup of the exact on-disk path the scan built: it also gives the $I30
        copy of the parent's index entry.
        """
        try:
            fe = self._volume.get_file_entry_by_path("\\" + entry.path.replace("/", "\\"))
        except OSError as exc:
            raise FilesystemError(f"{entry.path}: cannot read: {short_error(exc)}") from exc
        if fe is None:
            raise PathNotFoundError(f"{entry.path}: not found")
        return self._entry(fe, entry.path, entry.name)

    # -- content ---------------------------------------------------------------
    def _data_object(self, entry: FileEntry, stream: str) -> tuple[Any, int]:
        fe = self._by_number(entry)
        if not stream:
            if not fe.has_default_data_stream():
                raise PathNotFoundError(f"{entry.path}: has no default data stream")
            return fe, int(fe.get_size())
        try:
            ads = fe.get_alternate_data_stream_by_name(stream)
        except OSError as exc:
            raise FilesystemError(
                f"{entry.path}:{stream}: cannot open: {short_error(exc)}"
            ) from exc
        if ads is None:
            raise PathNotFoundError(f"{entry.path}:{stream}: no such stream")
        return ads, int(ads.get_size())

    def open_stream(self, entry: FileEntry, stream: str = "") -> ByteStream:
        """The default data stream or a named ADS.

        Plain non-resident data is read straight from the volume along its data runs
        (big sequential reads; libfsntfs reads a cluster at a time through Python).
        Resident and compressed data go through libfsntfs, which decodes them.
        """
        obj, size = self._data_object(entry, stream)
        label = f"{entry.path}:{stream}" if stream else entry.path
        extents = _extents(obj)
        if extents and not any(e.compressed for e in extents):
            valid = _valid_data_size(self._by_number(entry), stream)
            if valid is not None:
                return _ExtentStream(self._stream, extents, size, valid, label)
        return _NtfsStream(obj, size, label)

    def extents(self, entry: FileEntry, stream: str = "") -> tuple[Extent, ...]:
        """Cluster runs as byte extents of the volume."""
        obj, _ = self._data_object(entry, stream)
        return _extents(obj)

    def close(self) -> None:
        """Close the pyfsntfs volume."""
        if self._volume is not None:
            self._volume.close()
            self._volume = None


class _NtfsStream(LibyalStream):
    def __init__(self, obj: Any, size: int, label: str) -> None:
        super().__init__(obj, size)
        self.label = label

    def _read_at(self, offset: int, size: int) -> bytes:
        try:
            return super()._read_at(offset, size)
        except OSError as exc:
            raise FilesystemError(
                f"{self.label}: read error at {offset}: {short_error(exc)}"
            ) from exc


class _ExtentStream(ByteStream):
    """A non-resident, uncompressed stream read from the volume along its runs.

    Sparse runs and bytes past the valid data length read as zeros, as NTFS defines.
    """

    def __init__(
        self, volume: ByteStream, extents: tuple[Extent, ...], size: int, valid: int, label: str
    ) -> None:
        super().__init__(size)
        self._volume = volume
        self._extents = extents
        self._valid = min(valid, size)
        self.label = label

    def _read_at(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self._valid)
        for ext in self._extents:
            # The common case: the whole request inside one allocated run, no copies.
            if (
                ext.logical_offset <= offset
                and offset + size <= end <= ext.logical_offset + ext.length
            ):
                if ext.sparse or ext.volume_offset is None:
                    break
                try:
                    data = self._volume.read_at(
                        ext.volume_offset + offset - ext.logical_offset, size
                    )
                except OSError as exc:
                    raise FilesystemError(f"{self.label}: read error at {offset}: {exc}") from exc
                if len(data) < size:
                    raise FilesystemError(
                        f"{self.label}: short read at {offset} (volume truncated?)"
                    )
                return data
        out = bytearray(size)  # zeros: sparse runs, gaps, and past the valid length
        for ext in self._extents:
            lo = max(offset, ext.logical_offset)
            hi = min(end, ext.logical_offset + ext.length)
            if lo >= hi or ext.sparse or ext.volume_offset is None:
                continue
            try:
                data = self._volume.read_at(ext.volume_offset + lo - ext.logical_offset, hi - lo)
            except OSError as exc:
                raise FilesystemError(f"{self.label}: read error at {lo}: {exc}") from exc
            if len(data) < hi - lo:
                raise FilesystemError(f"{self.label}: short read at {lo} (volume truncated?)")
            out[lo - offset : hi - offset] = data
        return bytes(out)


def _valid_data_size(fe: Any, stream: str) -> int | None:
    """Valid data length of the named (or unnamed) non-resident $DATA attribute."""
    for idx in range(fe.get_number_of_attributes()):
        attr = fe.get_attribute(idx)
        if attr.get_attribute_type() != _ATTR_DATA:
            continue
        name = attr.get_attribute_name() or ""
        if name == stream:
            return int(attr.get_valid_data_size())
    return None


def _choose_name(names: list[tuple[int, Any]], wanted: int | None) -> Any:
    """The $FILE_NAME the entry was reached by, else the first non-DOS one."""
    for idx, attr in names:
        if idx == wanted:
            return attr
    for _, attr in names:
        if attr.get_name_space() != 2:  # 2 = DOS 8.3 short name
            return attr
    return names[0][1] if names else None


def _times(attr: Any) -> TimestampSet:
    return TimestampSet(
        created=_ts(attr.get_creation_time_as_integer()),
        modified=_ts(attr.get_modification_time_as_integer()),
        changed=_ts(attr.get_entry_modification_time_as_integer()),
        accessed=_ts(attr.get_access_time_as_integer()),
    )


def _extents(obj: Any) -> tuple[Extent, ...]:
    out: list[Extent] = []
    logical = 0
    for i in range(obj.get_number_of_extents()):
        offset, length, flags = obj.get_extent(i)
        sparse = bool(flags & _EXTENT_SPARSE)
        out.append(
            Extent(
                logical_offset=logical,
                volume_offset=None if sparse else int(offset),
                length=int(length),
                sparse=sparse,
                compressed=bool(flags & _EXTENT_COMPRESSED),
            )
        )
        logical += int(length)
    return tuple(out)


class NtfsFormat(FilesystemFormat):
    """NTFS through pyfsntfs (it opens volumes TSK cannot, e.g. 2 MiB clusters)."""

    name = "ntfs"

    @classmethod
    def detect(cls, stream: ByteStream) -> bool:
        """The ``NTFS    `` OEM id of the boot sector."""
        return is_ntfs(stream)

    @classmethod
    def open_filesystem(cls, stream: ByteStream) -> Filesystem:
        """Open with pyfsntfs."""
        return NtfsFilesystem(stream)

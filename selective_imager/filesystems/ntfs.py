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

from selective_imager.errors import (
    FilesystemError,
    PathNotFoundError,
    SelectiveImagerError,
    short_error,
)
from selective_imager.filesystems.base import Filesystem, FilesystemFormat, Listing
from selective_imager.models import (
    Extent,
    FileEntry,
    FilesystemInfo,
    StreamInfo,
    Timestamp,
    TimestampSet,
    attribute_names,
)
from selective_imager.streams import ByteStream, LibyalStream, RangeStream, make_tsk_image

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from selective_imager.filesystems.ntfs_records import MftRecord

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


def _attribute_problem(raw: bytes) -> str:
    """The first visibly invalid attribute header of a raw MFT record ("" if none).

    Each attribute starts with its type (a multiple of 0x10, at most 0x100, or the end
    marker 0xFFFFFFFF) and its length, which must keep it inside the record.
    """
    raw = _apply_fixups(raw)
    pos = int.from_bytes(raw[0x14:0x16], "little")
    while 0x18 <= pos <= len(raw) - 8:
        kind = int.from_bytes(raw[pos : pos + 4], "little")
        if kind == 0xFFFFFFFF:
            return ""
        length = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if kind % 0x10 or not 0x10 <= kind <= 0x100 or length < 0x18 or pos + length > len(raw):
            return f"invalid attribute at offset {pos} (type 0x{kind:x}, length {length})"
        pos += length
    return f"attribute list runs past the record (offset {pos})"


def _mft_bitmap(record0: bytes, volume: ByteStream, cluster: int) -> bytes | None:
    """The $BITMAP attribute of the $MFT (record 0): one bit per record, 1 = in use."""
    raw = _apply_fixups(record0)
    pos = int.from_bytes(raw[0x14:0x16], "little")
    while 0x18 <= pos <= len(raw) - 0x18:
        kind = int.from_bytes(raw[pos : pos + 4], "little")
        length = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if kind == 0xFFFFFFFF or length < 0x18 or pos + length > len(raw):
            return None
        if kind == 0xB0:
            attr = raw[pos : pos + length]
            if attr[8] == 0:  # resident: the value follows the header
                size = int.from_bytes(attr[0x10:0x14], "little")
                start = int.from_bytes(attr[0x14:0x16], "little")
                return attr[start : start + size]
            size = int.from_bytes(attr[0x30:0x38], "little")
            runs = attr[int.from_bytes(attr[0x20:0x22], "little") :]
            return read_along_runs(volume, cluster, runs, size)
        pos += length
    return None


def read_along_runs(volume: ByteStream, cluster: int, runs: bytes, size: int) -> bytes:
    """The first ``size`` bytes of a non-resident value, read along its mapping pairs."""
    from selective_imager.filesystems.ntfs_records import decode_runs  # numpy: on use

    out = bytearray()
    for lcn, count in decode_runs(runs):
        if len(out) >= size:
            break
        chunk = count * cluster
        out += volume.read_at(lcn * cluster, chunk) if lcn is not None else bytes(chunk)
    return bytes(out[:size])


def _apply_fixups(raw: bytes) -> bytes:
    """The record with each sector's last two bytes restored from the update sequence."""
    usa = int.from_bytes(raw[4:6], "little")
    count = int.from_bytes(raw[6:8], "little")
    out = bytearray(raw)
    for i in range(1, count):
        end = i * 512
        if end > len(out) or usa + 2 * i + 2 > len(out):
            break
        out[end - 2 : end] = raw[usa + 2 * i : usa + 2 * i + 2]
    return bytes(out)


def _unreadable_record(number: int, problem: str) -> FileEntry:
    """A scanned record that cannot be read: only its number is known."""
    return FileEntry(
        path="",
        name="",
        is_directory=False,
        size=0,
        entry=number,
        allocated=True,
        damage=f"MFT record {number} is damaged: {problem}",
    )


def _ts(value: int | None) -> Timestamp | None:
    return Timestamp.from_filetime(value) if value else None


class NtfsFilesystem(Filesystem):
    """An NTFS volume opened with pyfsntfs."""

    def __init__(self, stream: ByteStream) -> None:
        import pyfsntfs

        self._stream = RangeStream(stream, 0, stream.size)  # own position for libfsntfs
        self._tsk: Any = None  # opened only to name index entries libfsntfs cannot
        self._by_parent: dict[int, list[tuple[int, str]]] | None = None
        self._unreadable_records: list[int] = []  # found while building _by_parent
        self._mft_map: tuple[int, tuple[Extent, ...]] | None = None
        self._mft_bitmap: bytes | None = None  # b"" when it cannot be read
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

    def declared_size(self) -> int | None:
        """Total sectors of the boot sector (plus the backup boot sector) in bytes."""
        boot = self._stream.read_at(0, 512)
        if len(boot) < 512:
            return None
        per_sector = int.from_bytes(boot[0x0B:0x0D], "little")
        return (int.from_bytes(boot[0x28:0x30], "little") + 1) * per_sector or None

    # -- entries ---------------------------------------------------------------
    def root(self) -> FileEntry:
        """The root directory (MFT entry 5)."""
        try:
            fe = self._volume.get_root_directory()
            return self._entry(fe, "", "")
        except OSError as exc:
            # Listing it falls back to the $MFT: what lived in the root is still found.
            reason = self._record_problem(_ROOT) or short_error(exc)
            return FileEntry(
                path="", name="", is_directory=True, size=0, entry=_ROOT, damage=reason
            )

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
            try:
                names.append(str(fe.get_name() or parts[i]))
            except OSError:
                names.append(parts[i])
        return self._listed(fe, "/".join(names), names[-1], None)

    def iterdir(self, directory: FileEntry) -> Iterator[FileEntry]:
        """Entries of a directory's $I30 index (see :meth:`list_directory`)."""
        return iter(self.list_directory(directory).entries)

    def list_directory(self, directory: FileEntry) -> Listing:
        """Entries of a directory's $I30 index; one damaged entry loses only itself.

        An entry whose MFT record cannot be read is kept as a damaged entry with what
        the index says of it (name, MFT reference, $I30 times). When libfsntfs cannot
        even name an entry, The Sleuth Kit's reading of the same index names it. A
        directory whose own record or index is unreadable is rebuilt from the $MFT:
        every record whose $FILE_NAME names it as the parent.
        """
        try:
            fe = self._by_number(directory)
            count = int(fe.get_number_of_sub_file_entries())
        except (OSError, FilesystemError) as exc:
            reason = directory.damage or (
                str(exc) if isinstance(exc, FilesystemError) else short_error(exc)
            )
            children = tuple(self._children_from_mft(directory))
            problems = [
                f"cannot list ({reason}); {len(children)} entries found through the $MFT instead"
            ]
            if self._unreadable_records:
                numbers = ", ".join(map(str, self._unreadable_records[:20]))
                more = "…" if len(self._unreadable_records) > 20 else ""
                problems.append(
                    f"{len(self._unreadable_records)} MFT records in use cannot be read, so "
                    f"whether they lived here is unknown: {numbers}{more}"
                )
            return Listing(children, tuple(problems))
        entries: list[FileEntry] = []
        unnamed: list[str] = []
        for i in range(count):
            try:
                sub = fe.get_sub_file_entry(i)
                name = str(sub.get_name())
            except OSError as exc:
                unnamed.append(short_error(exc))
                continue
            entries.append(self._listed(sub, directory.child_path(name), name, directory))
        problems = []
        if unnamed:
            named = self._named_by_index(directory, {e.entry for e in entries}, unnamed)
            entries.extend(named)
            problems.extend(
                f"an index entry unreadable by libfsntfs ({reason})"
                for reason in unnamed[len(named) :]
            )
        return Listing(tuple(entries), tuple(problems))

    def _listed(self, fe: Any, path: str, name: str, parent: FileEntry | None) -> FileEntry:
        """The entry, or a damaged one from its $I30 index entry when its record is bad."""
        try:
            # libfsntfs gives an entry whose record it could not read reference 0 (or,
            # through a path lookup, another record's): the index entry says which it is.
            if not fe.has_i30_entry():
                return self._entry(fe, path, name)
            indexed = int(fe.get_i30_file_reference()) & _MFT_REF_MASK
            ref = int(fe.get_file_reference())
            if ref != 0 and ref & _MFT_REF_MASK == indexed:
                return self._entry(fe, path, name)
            reason = "the MFT record cannot be read"
        except OSError as exc:
            reason = short_error(exc)
        return self._damaged(fe, path, name, parent, reason)

    def _damaged(
        self, fe: Any, path: str, name: str, parent: FileEntry | None, reason: str
    ) -> FileEntry:
        """What the parent's $I30 index entry says of a file whose record is unreadable."""
        ref = flags = None
        i30 = None
        try:
            ref = int(fe.get_i30_file_reference())
            flags = int(fe.get_i30_file_attribute_flags() or 0)
            i30 = TimestampSet(
                created=_ts(fe.get_i30_creation_time_as_integer()),
                modified=_ts(fe.get_i30_modification_time_as_integer()),
                changed=_ts(fe.get_i30_entry_modification_time_as_integer()),
                accessed=_ts(fe.get_i30_access_time_as_integer()),
            )
        except OSError:
            pass  # the index entry itself is damaged too: path and parent stay
        number = ref & _MFT_REF_MASK if ref is not None else None
        problem = self._record_problem(number) if number is not None else ""
        where = f"MFT record {number}" if number is not None else "MFT record"
        return FileEntry(
            path=path,
            name=name,
            is_directory=bool((flags or 0) & _DIRECTORY_INDEX_FLAG),
            size=0,
            entry=number,
            sequence=ref >> 48 if ref is not None else None,
            parent_entry=parent.entry if parent else None,
            parent_sequence=parent.sequence if parent else None,
            attribute_flags=flags or 0,
            attributes=attribute_names(flags or 0),
            i30=i30,
            damage=f"{where} is damaged: {problem or reason}",
        )

    def _named_by_index(
        self, directory: FileEntry, listed: set[int | None], reasons: list[str]
    ) -> list[FileEntry]:
        """Damaged entries for index entries libfsntfs could not open, named by TSK.

        The Sleuth Kit reads the same $I30 index without needing each entry's record,
        so it gives the name and MFT reference of the ones libfsntfs failed on.
        """
        out: list[FileEntry] = []
        for name, ref, is_dir in self._tsk_index(directory):
            number = ref & _MFT_REF_MASK
            if number in listed:
                continue
            problem = self._record_problem(number)
            out.append(
                FileEntry(
                    path=directory.child_path(name),
                    name=name,
                    is_directory=is_dir,
                    size=0,
                    entry=number,
                    sequence=ref >> 48,
                    parent_entry=directory.entry,
                    parent_sequence=directory.sequence,
                    damage=f"MFT record {number} is damaged: {problem or reasons[0]}",
                )
            )
        return out[: len(reasons)] if len(out) > len(reasons) else out

    def _tsk_index(self, directory: FileEntry) -> list[tuple[str, int, bool]]:
        """(name, MFT reference, is a directory) of the allocated names TSK reads."""
        import pytsk3

        if directory.entry is None:
            return []
        try:
            if self._tsk is None:
                self._tsk = pytsk3.FS_Info(make_tsk_image(self._stream))
            listing = self._tsk.open_dir(inode=directory.entry)
            out = []
            for f in listing:
                info = f.info.name
                raw = info.name
                name = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
                if name in (".", "..") or not int(info.flags) & 1:  # TSK_FS_NAME_FLAG_ALLOC
                    continue
                ref = int(info.meta_addr) | int(info.meta_seq) << 48
                out.append((str(name), ref, int(info.type) == 3))  # TSK_FS_NAME_TYPE_DIR
            return out
        except (OSError, RuntimeError):
            return []  # TSK cannot read it either: the entries stay unnamed problems

    def _children_from_mft(self, directory: FileEntry) -> Iterator[FileEntry]:
        """Entries whose $FILE_NAME names ``directory`` as the parent (one $MFT pass)."""
        if self._by_parent is None:
            self._by_parent = self._parent_map()
        for number, name in self._by_parent.get(directory.entry or -1, ()):
            path = directory.child_path(name)
            try:
                fe = self._volume.get_file_entry(number)
                yield self._entry(fe, path, name)
            except OSError as exc:
                yield FileEntry(
                    path=path,
                    name=name,
                    is_directory=False,
                    size=0,
                    entry=number,
                    parent_entry=directory.entry,
                    damage=f"MFT record {number} is damaged: {short_error(exc)}",
                )

    def _parent_map(self) -> dict[int, list[tuple[int, str]]]:
        """Parent entry -> (entry, name) of every allocated record's $FILE_NAMEs."""
        out: dict[int, list[tuple[int, str]]] = {}
        try:
            count = int(self._volume.get_number_of_file_entries())
        except OSError:
            return out
        for number in range(count):
            try:
                fe = self._volume.get_file_entry(number)
                if not fe.is_allocated():
                    if not fe.get_number_of_attributes() and self._in_use_problem(number):
                        self._unreadable_records.append(number)
                    continue
                for idx in range(fe.get_number_of_attributes()):
                    attr = fe.get_attribute(idx)
                    if attr.get_attribute_type() == _ATTR_FN and attr.get_name_space() != 2:
                        parent = int(attr.get_parent_file_reference()) & _MFT_REF_MASK
                        if parent != number:
                            out.setdefault(parent, []).append((number, str(attr.get_name())))
            except OSError:
                # It names no parent: each listing rebuilt from the $MFT says so.
                if self._mft_in_use(number) is not False:
                    self._unreadable_records.append(number)
        return out

    def _record_problem(self, number: int) -> str:
        """What is visibly wrong with MFT record ``number``'s raw bytes ("" if nothing)."""
        raw = self._raw_record(number)
        if raw is None:
            return ""
        if not raw:
            return "it lies past the end of the volume as read"
        if not any(raw):
            return "all zeros"
        if raw[:4] == b"BAAD":
            return "marked BAAD (a torn write)"
        if raw[:4] != b"FILE":
            return f"no FILE signature ({raw[:4]!r})"
        return _attribute_problem(raw)

    def _in_use_problem(self, number: int) -> str:
        """The visible damage of a record that reads as free but the bitmap says is in use."""
        if self._mft_in_use(number) is False:
            return ""
        return self._record_problem(number)

    def _mft_in_use(self, number: int) -> bool | None:
        """Whether the $MFT's $BITMAP marks record ``number`` in use (None: unknown)."""
        if self._mft_bitmap is None:
            raw = self._raw_record(0)
            bitmap = _mft_bitmap(raw, self._stream, self.info.block_size) if raw else None
            self._mft_bitmap = bitmap if bitmap is not None else b""
        if not self._mft_bitmap or number // 8 >= len(self._mft_bitmap):
            return None
        return bool(self._mft_bitmap[number // 8] >> (number % 8) & 1)

    def mft_records(self) -> Iterator[MftRecord]:
        """Every used record of the $MFT, from one sequential read, by the own parser.

        The $MFT's content is read along its data runs (as libfsntfs maps them) in
        4 MiB pieces; see :mod:`selective_imager.filesystems.ntfs_records`.

        Raises:
            FilesystemError: the $MFT's own record or layout cannot be read.
        """
        from selective_imager.filesystems.ntfs_records import iter_records

        size, mft = self._mft_stream()
        yield from iter_records(mft, size, in_use=self._mft_in_use, read_runs=self._read_runs)

    def mft_image(self, limit: int) -> tuple[int, bytes, Callable[[int], bool | None]] | None:
        """(record size, the whole $MFT, the bitmap's in-use answer) when it is at most
        ``limit`` bytes, else None; read in one sequential pass.

        What it returns needs no further reads of the volume, so another thread may
        parse it (:func:`~selective_imager.filesystems.ntfs_records.iter_records`;
        without ``read_runs``, a non-resident attribute list is resolved from the
        extension records' own base references).

        Raises:
            FilesystemError: the $MFT cannot be read.
        """
        size, mft = self._mft_stream()
        length = mft.size
        if length > limit:
            return None
        data = bytearray()
        while len(data) < length:
            chunk = mft.read_at(len(data), min(4 << 20, length - len(data)))
            if not chunk:
                break
            data += chunk
        self._mft_in_use(0)  # loads the bitmap now: later answers read no volume
        return size, bytes(data), self._mft_in_use

    def _mft_stream(self) -> tuple[int, ByteStream]:
        """(record size, the $MFT's content as a stream along its data runs)."""
        layout = self._mft_layout()
        if layout is None:
            raise FilesystemError("cannot read the $MFT: its layout is unknown")
        size, extents = layout
        try:
            fe = self._volume.get_file_entry(0)
            length = int(fe.get_size())
            valid = _valid_data_size(fe, "")
        except OSError as exc:
            raise FilesystemError(f"cannot read the $MFT: {short_error(exc)}") from exc
        if not size or not extents:
            raise FilesystemError("cannot read the $MFT: it has no data runs")
        mft = _ExtentStream(
            self._stream, extents, length, length if valid is None else valid, "$MFT"
        )
        return size, mft

    def _read_runs(self, runs: bytes, size: int) -> bytes:
        """A non-resident value read from the volume along its mapping pairs."""
        return read_along_runs(self._stream, self.info.block_size, runs, size)

    def _mft_layout(self) -> tuple[int, tuple[Extent, ...]] | None:
        """(record size, the $MFT's extents), or None when they cannot be read."""
        if self._mft_map is None:
            try:
                boot = self._stream.read_at(0, 512)
                per_cluster = int(self._volume.get_cluster_block_size())
                value = boot[0x40] if len(boot) == 512 else 0
                size = value * per_cluster if value < 0x80 else 1 << (256 - value)
                self._mft_map = (size, _extents(self._volume.get_file_entry(0)))
            except (OSError, SelectiveImagerError):
                return None
        return self._mft_map

    def _raw_record(self, number: int) -> bytes | None:
        """The raw bytes of MFT record ``number`` (None when the $MFT map is unknown)."""
        layout = self._mft_layout()
        if layout is None:
            return None
        size, extents = layout
        logical = number * size
        for ext in extents:
            if ext.logical_offset <= logical < ext.logical_offset + ext.length:
                if ext.volume_offset is None:
                    return None
                return self._stream.read_at(ext.volume_offset + logical - ext.logical_offset, size)
        return None

    def _by_number(self, entry: FileEntry) -> Any:
        if entry.damage:
            raise FilesystemError(f"{entry.path or '/'}: {entry.damage}")
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

        A damaged record is yielded with :attr:`FileEntry.damage` set and an empty path
        (its names are in the record itself), as is a file whose directory is damaged.
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

        damaged: set[int] = set()
        for number in range(count):
            if number == _ROOT:
                continue
            try:
                fe = volume.get_file_entry(number)
                if not fe.is_allocated():
                    # A record without a FILE signature reads as free: look at its bytes.
                    problem = "" if fe.get_number_of_attributes() else self._in_use_problem(number)
                    if problem:
                        damaged.add(number)
                        yield _unreadable_record(number, problem)
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
            except OSError as exc:
                # Its path is in its own (unreadable) $FILE_NAME: only the number is known.
                # Free records read as zeros on Windows-made volumes: only one the $MFT
                # bitmap marks in use is damaged.
                if self._mft_in_use(number) is not False:
                    damaged.add(number)
                    problem = self._record_problem(number) or short_error(exc)
                    yield _unreadable_record(number, problem)
                continue
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
            elif parent in damaged:
                yield FileEntry(
                    path="",
                    name=name,
                    is_directory=is_dir,
                    size=0,
                    entry=number,
                    sequence=seq,
                    parent_entry=parent,
                    damage=f"its directory, MFT record {parent}, is damaged: its path is unknown",
                )

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

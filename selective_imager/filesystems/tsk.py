"""FAT12/16/32, exFAT, ext2/3/4, HFS+, ISO 9660 (and NTFS as a fallback) via pytsk3.

References:
    - The Sleuth Kit, ``tsk_fs.h`` (TSK_FS_TYPE_*, TSK_FS_META_*, TSK_FS_ATTR_*).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selective_imager.errors import FilesystemError, PathNotFoundError, UnsupportedFilesystemError
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
from selective_imager.streams import ByteStream, make_tsk_image, tsk_failure

if TYPE_CHECKING:
    from collections.abc import Iterator

# TSK_FS_TYPE_ENUM constant names -> our names (values are read from pytsk3).
_FS_TYPE_NAMES = {
    "NTFS": "ntfs",
    "FAT12": "fat12",
    "FAT16": "fat16",
    "FAT32": "fat32",
    "EXFAT": "exfat",
    "FFS1": "ffs1",
    "FFS1B": "ffs1b",
    "FFS2": "ffs2",
    "EXT2": "ext2",
    "EXT3": "ext3",
    "EXT4": "ext4",
    "SWAP": "swap",
    "RAW": "raw",
    "ISO9660": "iso9660",
    "HFS": "hfs+",
    "YAFFS2": "yaffs2",
    "APFS": "apfs",
    "LOGICAL": "logical",
}
_CASE_INSENSITIVE = {"ntfs", "fat12", "fat16", "fat32", "exfat", "iso9660"}
# TSK_FS_META_TYPE_DIR / TSK_FS_NAME_TYPE_DIR
_META_DIR = 2
_META_VIRT = 10
_NAME_DIR = 3
_META_FLAG_ALLOC = 1
_NAME_FLAG_ALLOC = 1
# TSK_FS_ATTR_TYPE_* for data-bearing attributes.
_ATTR_NTFS_DATA = 0x80
_ATTR_HFS_DATA = 0x1100
_ATTR_HFS_RSRC = 0x1101
_ATTR_DEFAULT = 0x01
# TSK_FS_ATTR_RUN_FLAG_SPARSE / FILLER
_RUN_SPARSE = 0x02
_RUN_FILLER = 0x01
# TSK_FS_ATTR_FLAG_NONRES
_ATTR_NONRES = 0x02


def _type_name(ftype: int) -> str:
    import pytsk3

    for const, name in _FS_TYPE_NAMES.items():
        value = getattr(pytsk3, f"TSK_FS_TYPE_{const}", None)
        if value is not None and int(value) == ftype:
            return name
    return f"tsk-0x{ftype:x}"


class TskFilesystem(Filesystem):
    """A file system opened by The Sleuth Kit."""

    def __init__(self, stream: ByteStream) -> None:
        import pytsk3

        self._pytsk3 = pytsk3
        self._img = make_tsk_image(stream)
        try:
            self._fs = pytsk3.FS_Info(self._img)
        except (OSError, RuntimeError) as exc:
            text = str(exc)
            if self._img.read_error is not None:
                # The volume could not be read (truncated or failing source), which is
                # not the same as holding no file system.
                raise FilesystemError(
                    f"cannot open the file system: {tsk_failure(self._img, exc)}"
                ) from exc
            if "Encryption detected" in text:
                raise UnsupportedFilesystemError("encrypted volume (BitLocker)") from exc
            raise UnsupportedFilesystemError("no supported file system recognised") from exc
        info = self._fs.info
        fs_type = _type_name(int(info.ftype))
        self._type = fs_type
        self.info = FilesystemInfo(
            type=fs_type,
            backend="pytsk3",
            label=self._label(),
            serial="",
            block_size=int(info.block_size),
            case_sensitive=fs_type not in _CASE_INSENSITIVE,
        )

    def _label(self) -> str:
        # TSK has no generic label API; FAT keeps it in the root directory as a
        # volume-label entry, which TSK lists as a file named "<label> (Volume Label Entry)".
        try:
            for f in self._fs.open_dir(path="/"):
                name = _decode(f.info.name.name)
                if name.endswith("(Volume Label Entry)"):
                    return name[: -len("(Volume Label Entry)")].strip()
        except (OSError, RuntimeError):
            self._img.read_error = None
            return ""  # no label is shown; listing the root reports the error
        return ""

    # -- entries ---------------------------------------------------------------
    def root(self) -> FileEntry:
        """The root directory."""
        try:
            f = self._fs.open_meta(inode=self._fs.info.root_inum)
        except (OSError, RuntimeError) as exc:
            raise FilesystemError(
                f"cannot open the root directory: {tsk_failure(self._img, exc)}"
            ) from exc
        return self._entry(f, "", "", None)

    def lookup(self, path: str) -> FileEntry:
        """Walk the path one component at a time, case-insensitively where the FS is."""
        parts = [p for p in path.split("/") if p]
        current = self.root()
        for part in parts:
            found = None
            for child in self.iterdir(current):
                if child.name == part or (
                    not self.info.case_sensitive and child.name.casefold() == part.casefold()
                ):
                    found = child
                    if child.name == part:
                        break
            if found is None:
                raise PathNotFoundError(f"{path}: not found")
            current = found
        return current

    def iterdir(self, directory: FileEntry) -> Iterator[FileEntry]:
        """Directory entries as TSK lists them, deleted names included."""
        return iter(self.list_directory(directory).entries)

    def list_directory(self, directory: FileEntry) -> Listing:
        """Directory entries; one whose metadata cannot be read loses only itself.

        Such an entry is kept as a damaged entry with what the directory entry says
        (name, metadata address, type); a listing that breaks off keeps what came
        before and says so.
        """
        where = directory.path or "/"
        if directory.entry is None:
            raise FilesystemError(f"{where}: no metadata address")
        try:
            d = self._fs.open_dir(inode=directory.entry)
        except (OSError, RuntimeError) as exc:
            raise FilesystemError(f"{where}: cannot list: {tsk_failure(self._img, exc)}") from exc
        entries: list[FileEntry] = []
        problems: list[str] = []
        names = iter(d)
        while True:
            try:
                f = next(names)
            except StopIteration:
                break
            except (OSError, RuntimeError) as exc:
                why = tsk_failure(self._img, exc)
                problems.append(f"listing broke off after {len(entries)} entries: {why}")
                break
            try:
                name = _decode(f.info.name.name)
            except (OSError, RuntimeError, AttributeError) as exc:
                problems.append(f"an entry without a readable name: {exc}")
                continue
            # "$OrphanFiles" is a virtual folder TSK builds by scanning every inode: it is
            # not on disk, and listing it costs a full scan.
            if name in (".", "..", "$OrphanFiles") or name.endswith("(Volume Label Entry)"):
                continue
            path = directory.child_path(name)
            try:
                entries.append(self._entry(f, path, name, directory))
            except (OSError, RuntimeError) as exc:
                entries.append(_damaged(f, path, name, directory, tsk_failure(self._img, exc)))
        return Listing(tuple(entries), tuple(problems))

    def _entry(self, f: Any, path: str, name: str, parent: FileEntry | None) -> FileEntry:
        meta = f.info.meta
        name_info = f.info.name
        name_allocated = bool(name_info is None or int(name_info.flags) & _NAME_FLAG_ALLOC)
        if meta is None:
            is_dir = name_info is not None and int(name_info.type) == _NAME_DIR
            return FileEntry(
                path=path,
                name=name,
                is_directory=is_dir,
                size=0,
                entry=int(name_info.meta_addr) if name_info is not None else None,
                parent_entry=parent.entry if parent else None,
                allocated=False,
            )
        is_dir = int(meta.type) == _META_DIR
        times = TimestampSet(
            created=_unix(meta.crtime, getattr(meta, "crtime_nano", 0)),
            modified=_unix(meta.mtime, getattr(meta, "mtime_nano", 0)),
            changed=_unix(meta.ctime, getattr(meta, "ctime_nano", 0)),
            accessed=_unix(meta.atime, getattr(meta, "atime_nano", 0)),
        )
        _default, streams, resident, allocated_size = self._attributes(f, is_dir)
        # TSK does not expose FAT/exFAT attribute bits (hidden, system...), so no flags.
        flags = 0
        virtual = int(meta.type) == _META_VIRT
        meta_allocated = bool(int(meta.flags) & _META_FLAG_ALLOC)
        return FileEntry(
            path=path,
            name=name,
            is_directory=is_dir,
            size=0 if is_dir else int(meta.size),
            allocated_size=allocated_size,
            entry=int(meta.addr),
            sequence=int(meta.seq) if self._type == "ntfs" else None,
            parent_entry=parent.entry if parent else None,
            parent_sequence=parent.sequence if parent else None,
            allocated=name_allocated and meta_allocated,
            resident=resident,
            attribute_flags=flags,
            # TSK's own virtual files ($MBR, $FAT1...) are marked so reports can tell.
            attributes=(*attribute_names(flags), "virtual") if virtual else attribute_names(flags),
            times=times,
            streams=streams,
            mode=int(meta.mode) if self._type.startswith(("ext", "hfs", "ffs")) else None,
            uid=int(meta.uid) if self._type.startswith(("ext", "hfs", "ffs")) else None,
            gid=int(meta.gid) if self._type.startswith(("ext", "hfs", "ffs")) else None,
            link_target=_decode(meta.link) if getattr(meta, "link", None) else "",
        )

    def _attributes(
        self, f: Any, is_dir: bool
    ) -> tuple[Any, tuple[StreamInfo, ...], bool | None, int]:
        """Default data attribute, named streams, residency and allocated bytes."""
        default = None
        streams: list[StreamInfo] = []
        resident: bool | None = None
        allocated = 0
        try:
            attrs = list(f)
        except (OSError, RuntimeError):
            self._img.read_error = None
            return None, (), None, 0  # no attributes: opening its content says why
        for attr in attrs:
            a_type = int(attr.info.type)
            a_name = _decode(attr.info.name) if attr.info.name else ""
            if a_type in (_ATTR_NTFS_DATA, _ATTR_DEFAULT, _ATTR_HFS_DATA) and (
                not a_name or a_name == "$Data" or a_type != _ATTR_NTFS_DATA
            ):
                if default is None:
                    default = attr
                    resident = not bool(int(attr.info.flags) & _ATTR_NONRES)
                    allocated = _allocated(attr, int(self._fs.info.block_size))
            elif a_type == _ATTR_NTFS_DATA and a_name:
                streams.append(StreamInfo(a_name, int(attr.info.size)))
            elif a_type == _ATTR_HFS_RSRC:
                streams.append(StreamInfo("rsrc", int(attr.info.size)))
        return default, tuple(streams), (None if is_dir else resident), allocated

    # -- content ---------------------------------------------------------------
    def _open_file(self, entry: FileEntry) -> Any:
        if entry.damage:
            raise FilesystemError(f"{entry.path}: {entry.damage}")
        if entry.entry is None:
            raise FilesystemError(f"{entry.path}: no metadata address")
        try:
            return self._fs.open_meta(inode=entry.entry)
        except (OSError, RuntimeError) as exc:
            raise FilesystemError(
                f"{entry.path}: cannot open: {tsk_failure(self._img, exc)}"
            ) from exc

    def _find_attr(self, f: Any, entry: FileEntry, stream: str) -> Any:
        try:
            attrs = list(f)
        except (OSError, RuntimeError) as exc:
            raise FilesystemError(
                f"{entry.path}: cannot read its attributes: {tsk_failure(self._img, exc)}"
            ) from exc
        for attr in attrs:
            a_type = int(attr.info.type)
            a_name = _decode(attr.info.name) if attr.info.name else ""
            if (
                not stream
                and a_type in (_ATTR_NTFS_DATA, _ATTR_DEFAULT, _ATTR_HFS_DATA)
                and (a_type != _ATTR_NTFS_DATA or not a_name or a_name == "$Data")
            ):
                return attr
            if stream and a_type == _ATTR_NTFS_DATA and a_name == stream:
                return attr
            if stream == "rsrc" and a_type == _ATTR_HFS_RSRC:
                return attr
        return None

    def open_stream(self, entry: FileEntry, stream: str = "") -> ByteStream:
        """File content through TSK's ``read_random``."""
        f = self._open_file(entry)
        attr = self._find_attr(f, entry, stream)
        label = f"{entry.path}:{stream}" if stream else entry.path
        if attr is None:
            if not stream and not entry.is_directory and entry.size == 0:
                return _EmptyStream()
            if "virtual" in entry.attributes:
                raise PathNotFoundError(f"{label}: a virtual file The Sleuth Kit cannot read")
            raise PathNotFoundError(f"{label}: no such stream")
        return _TskStream(f, attr, label, self._img)

    def extents(self, entry: FileEntry, stream: str = "") -> tuple[Extent, ...]:
        """Runs of the data attribute as byte extents of the volume."""
        f = self._open_file(entry)
        attr = self._find_attr(f, entry, stream)
        if attr is None or not int(attr.info.flags) & _ATTR_NONRES:
            return ()
        block = int(self._fs.info.block_size)
        out: list[Extent] = []
        try:
            runs = list(attr)
        except (OSError, RuntimeError) as exc:
            raise FilesystemError(
                f"{entry.path}: cannot read its runs: {tsk_failure(self._img, exc)}"
            ) from exc
        for run in runs:
            sparse = bool(int(run.flags) & (_RUN_SPARSE | _RUN_FILLER))
            out.append(
                Extent(
                    logical_offset=int(run.offset) * block,
                    volume_offset=None if sparse else int(run.addr) * block,
                    length=int(run.len) * block,
                    sparse=sparse,
                )
            )
        return tuple(out)

    def close(self) -> None:
        """Drop the TSK objects."""
        self._fs = None
        self._img = None


def _damaged(f: Any, path: str, name: str, parent: FileEntry, reason: str) -> FileEntry:
    """What a directory entry says of a file whose metadata cannot be read."""
    info = f.info.name
    return FileEntry(
        path=path,
        name=name,
        is_directory=int(info.type) == _NAME_DIR,
        size=0,
        entry=int(info.meta_addr),
        parent_entry=parent.entry,
        parent_sequence=parent.sequence,
        allocated=bool(int(info.flags) & _NAME_FLAG_ALLOC),
        damage=f"metadata entry {int(info.meta_addr)} cannot be read: {reason}",
    )


def _allocated(attr: Any, block: int) -> int:
    if not int(attr.info.flags) & _ATTR_NONRES:
        return 0
    total = 0
    try:
        for run in attr:
            if not int(run.flags) & (_RUN_SPARSE | _RUN_FILLER):
                total += int(run.len) * block
    except (OSError, RuntimeError):
        return 0  # unknown; the runs are read again (and fail with a reason) for extents
    return total


class _TskStream(ByteStream):
    def __init__(self, f: Any, attr: Any, label: str, image: Any) -> None:
        super().__init__(int(attr.info.size))
        self._image = image
        self._file = f
        self._type = int(attr.info.type)
        self._id = int(attr.info.id)
        self.label = label

    def _read_at(self, offset: int, size: int) -> bytes:
        try:
            data = self._file.read_random(offset, size, self._type, self._id)
        except (OSError, RuntimeError) as exc:
            why = tsk_failure(self._image, exc)
            raise FilesystemError(f"{self.label}: read error at {offset}: {why}") from exc
        return bytes(data)


class _EmptyStream(ByteStream):
    def __init__(self) -> None:
        super().__init__(0)

    def _read_at(self, offset: int, size: int) -> bytes:
        return b""


def _unix(seconds: int | None, nano: int | None) -> Timestamp | None:
    if not seconds and not nano:
        return None
    return Timestamp.from_unix(int(seconds or 0), int(nano or 0))


def _decode(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


class TskFormat(FilesystemFormat):
    """Everything The Sleuth Kit reads (FAT, exFAT, ext2/3/4, HFS+, ISO 9660, UFS, and
    NTFS when pyfsntfs refuses a volume)."""

    name = "tsk"

    @classmethod
    def detect(cls, stream: ByteStream) -> bool:
        """Always tried: TSK itself decides (it is the last backend)."""
        return True

    @classmethod
    def open_filesystem(cls, stream: ByteStream) -> Filesystem:
        """Open with pytsk3."""
        return TskFilesystem(stream)

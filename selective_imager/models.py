"""Frozen dataclasses handed between the layers.

Nothing here holds a secret or a backend object: these records go into reports,
manifests and logs as they are.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from enum import StrEnum

# 100-nanosecond intervals between 1601-01-01 (FILETIME epoch) and 1970-01-01.
_FILETIME_UNIX_DELTA = 116_444_736_000_000_000
_UNIX_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """A point in time exactly as the file system stored it.

    ``ns`` is nanoseconds since 1970-01-01 UTC (negative before), kept as an integer so
    no precision is lost. ``resolution_ns`` is the on-disk resolution (100 for NTFS
    FILETIME, 1 for ext4, 1_000_000_000 for seconds) and decides how many fraction
    digits :meth:`isoformat` prints. ``raw`` is the on-disk integer when there is one
    (the FILETIME on NTFS).
    """

    ns: int
    resolution_ns: int = 1
    raw: int | None = None

    @classmethod
    def from_filetime(cls, filetime: int) -> Timestamp:
        """Build from an NTFS FILETIME (100 ns ticks since 1601-01-01 UTC)."""
        return cls((filetime - _FILETIME_UNIX_DELTA) * 100, 100, filetime)

    @classmethod
    def from_unix(cls, seconds: int, nanoseconds: int = 0, resolution_ns: int = 1) -> Timestamp:
        """Build from Unix seconds plus a nanosecond fraction."""
        return cls(seconds * 1_000_000_000 + nanoseconds, resolution_ns)

    def isoformat(self) -> str:
        """ISO 8601 in UTC with as many fraction digits as the resolution carries.

        FILETIME gives seven digits (``2015-11-03T10:21:33.1234567Z``).
        """
        seconds, frac = divmod(self.ns, 1_000_000_000)
        try:
            when = _UNIX_EPOCH + _dt.timedelta(seconds=seconds)
        except OverflowError:
            return f"out-of-range:{self.raw if self.raw is not None else self.ns}"
        base = when.strftime("%Y-%m-%dT%H:%M:%S")
        digits = 0
        res = self.resolution_ns
        while res < 1_000_000_000 and digits < 9:
            res *= 10
            digits += 1
        if digits:
            text = f"{frac:09d}"[:digits]
            return f"{base}.{text}Z"
        return f"{base}Z"


@dataclass(frozen=True, slots=True)
class TimestampSet:
    """The four MACB times of one record.

    ``changed`` is the MFT-entry-modified time on NTFS and the inode change time
    (ctime) on Unix file systems.
    """

    created: Timestamp | None = None
    modified: Timestamp | None = None
    changed: Timestamp | None = None
    accessed: Timestamp | None = None

    def as_dict(self, changed_key: str = "mft_modified") -> dict[str, str | None]:
        """ISO strings keyed ``created/modified/<changed_key>/accessed``."""
        return {
            "created": self.created.isoformat() if self.created else None,
            "modified": self.modified.isoformat() if self.modified else None,
            changed_key: self.changed.isoformat() if self.changed else None,
            "accessed": self.accessed.isoformat() if self.accessed else None,
        }


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One step of the way from the source to a file system.

    ``kind`` is one of ``partition``, ``bitlocker``, ``volume`` (a source without a
    partition table), ``filesystem``, or a later layer's (``vss``, ``luks``, ``apfs``).
    Kinds in :data:`NAMING_KINDS` name a volume of their own (``p3/vss2``); the others
    (an encryption layer, the file system) are steps within one volume.
    """

    kind: str
    index: int
    offset: int
    identifier: str = ""

    def label(self) -> str:
        """Short label used in locators: ``p2``, ``bitlocker``, ``v0``."""
        if self.kind == "partition":
            return f"p{self.index}"
        if self.kind == "volume":
            return f"v{self.index}"
        if self.kind in NAMING_KINDS:
            return f"{self.kind}{self.index}"
        return self.kind


Locator = tuple[LayerRef, ...]
# Layer kinds that yield volumes of their own: a shadow-copy store, a volume of an APFS
# container or LVM group, a file-system snapshot.
NAMING_KINDS = ("vss", "apfs", "lvm", "snapshot")


def volume_label(locator: Locator) -> str:
    """The volume part of a locator: ``p3``, ``v0``, ``p3/vss2`` (no encryption or fs steps)."""
    return "/".join(
        ref.label() for ref in locator if ref.kind in ("partition", "volume", *NAMING_KINDS)
    )


def locator_str(locator: Locator) -> str:
    """``p2/bitlocker`` style string of a locator."""
    return "/".join(ref.label() for ref in locator)


@dataclass(frozen=True, slots=True)
class ChainFile:
    """One file of a source as received: a segment, a virtual disk, or one of its parents.

    Attributes:
        path: the file's path.
        size: its size in bytes.
        role: ``image``, ``segment``, ``extent`` (a VMDK extent file), ``child`` or
            ``parent`` (a differencing chain, child first).
        format: the file's format (``vmdk``, ``vhdx``, ``qcow2``, ``raw``...).
        identifier: the identifier the format stores for this file (disk UUID/GUID).
        parent_identifier: the parent identifier a child records.
    """

    path: str
    size: int
    role: str = "image"
    format: str = ""
    identifier: str = ""
    parent_identifier: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "path": self.path,
            "size": self.size,
            "role": self.role,
            "format": self.format,
            "identifier": self.identifier or None,
            "parent_identifier": self.parent_identifier or None,
        }


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source is.

    Attributes:
        path: the path given by the user (first segment for split/E01 images).
        format: ``raw``, ``split-raw``, ``ewf``, ``device``, or a virtual-disk format
            (``vmdk``, ``vhd``, ``vhdx``, ``qcow2``...).
        size: media size in bytes.
        sector_size: logical sector size in bytes.
        segments: every file making up the source, in order.
        is_device: a block or character device (possibly live).
        details: extra facts: E01 header values, stored hashes, device model/serial,
            virtual-disk identifiers.
        chain: every file as received, with its role (segments, extents, a
            differencing chain child first); empty for a device.
    """

    path: str
    format: str
    size: int
    sector_size: int
    segments: tuple[str, ...] = ()
    is_device: bool = False
    details: dict[str, str] = field(default_factory=dict)
    chain: tuple[ChainFile, ...] = ()


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """One volume: a partition, or the whole source when it has no partition table.

    Attributes:
        index: the number users pass to ``--volume`` (1-based for partitions, 0 for an
            unpartitioned source).
        offset: byte offset in the source.
        size: length in bytes.
        scheme: ``gpt``, ``mbr`` or ``none``.
        type_id: GPT partition type GUID or MBR type byte (``0x07``).
        type_name: human description of the type.
        name: GPT partition name.
        guid: GPT unique partition GUID.
        slot: table slot as The Sleuth Kit numbers it (``000:001``).
        flags: e.g. ``logical`` for partitions inside an MBR extended partition.
    """

    index: int
    offset: int
    size: int
    scheme: str
    type_id: str = ""
    type_name: str = ""
    name: str = ""
    guid: str = ""
    slot: str = ""
    flags: tuple[str, ...] = ()


class EncryptionState(StrEnum):
    """Encryption state of a volume, as ``info`` reports it."""

    NONE = "none"
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    SUSPENDED = "suspended"
    DECRYPTED = "decrypted"


@dataclass(frozen=True, slots=True)
class EncryptionInfo:
    """BitLocker facts of a volume. Never holds a secret.

    Attributes:
        type: ``bitlocker``.
        state: see :class:`EncryptionState`.
        method: e.g. ``AES-XTS 128``.
        protectors: protector types, e.g. ``("password", "recovery_password")``.
        volume_guid: the FVE volume identifier.
        description: the FVE description string.
        created: FVE metadata creation time.
        unlocked_with: protector type that unlocked it (``password``, ``clear_key``...).
        fallback: set when a workaround was needed to open the volume.
        reason: one line saying why it stayed locked.
        decryptor: what decrypts the volume: ``openssl`` (the fast path, checked
            against pybde when the volume was opened) or ``pybde``; empty when locked.
        decryptor_note: why pybde decrypts it (fast path unsupported, failed, differed
            from pybde, or switched off), or why libbde did not cross-check the
            ``openssl`` decryption; empty when it did.
        conversion: set when an encryption or decryption was paused or is in progress:
            how much is encrypted and the FVE states.
    """

    type: str
    state: EncryptionState
    method: str = ""
    protectors: tuple[str, ...] = ()
    volume_guid: str = ""
    description: str = ""
    created: Timestamp | None = None
    unlocked_with: str = ""
    fallback: str = ""
    reason: str = ""
    decryptor: str = ""
    decryptor_note: str = ""
    conversion: str = ""


@dataclass(frozen=True, slots=True)
class FilesystemInfo:
    """What file system a volume holds.

    Attributes:
        type: ``ntfs``, ``fat12``, ``fat16``, ``fat32``, ``exfat``, ``ext2``, ``ext3``,
            ``ext4``, ``hfs+``, ``iso9660``...
        backend: ``pyfsntfs`` or ``pytsk3``.
        label: volume label.
        serial: volume serial number (hex string).
        block_size: cluster or block size in bytes.
        case_sensitive: whether names match case-sensitively.
    """

    type: str
    backend: str
    label: str = ""
    serial: str = ""
    block_size: int = 0
    case_sensitive: bool = False


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """An alternate data stream (or fork) of a file."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Extent:
    """A run of a stream's bytes on the volume.

    ``volume_offset`` is relative to the start of the file system's volume (the
    decrypted volume for BitLocker); None for sparse runs.
    """

    logical_offset: int
    volume_offset: int | None
    length: int
    sparse: bool = False
    compressed: bool = False


# Attribute flag names, from the NTFS/Windows FILE_ATTRIBUTE_* bits.
FILE_ATTRIBUTE_NAMES: dict[int, str] = {
    0x0001: "readonly",
    0x0002: "hidden",
    0x0004: "system",
    0x0010: "directory",
    0x0020: "archive",
    0x0040: "device",
    0x0080: "normal",
    0x0100: "temporary",
    0x0200: "sparse",
    0x0400: "reparse_point",
    0x0800: "compressed",
    0x1000: "offline",
    0x2000: "not_content_indexed",
    0x4000: "encrypted",
    0x10000000: "directory_index",
    0x20000000: "index_view",
}


_ATTRIBUTE_BITS = tuple(sorted(FILE_ATTRIBUTE_NAMES.items()))


def attribute_names(flags: int) -> tuple[str, ...]:
    """Names of the FILE_ATTRIBUTE bits set in ``flags``, in bit order."""
    if not flags:
        return ()
    return tuple(name for bit, name in _ATTRIBUTE_BITS if flags & bit)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file or directory, the same model for every file system.

    Attributes:
        path: ``/``-separated path relative to the volume root, exactly as stored
            (``""`` for the root directory).
        name: last path component.
        is_directory: a directory.
        size: logical size of the default data stream.
        allocated_size: bytes allocated on disk for it (0 when resident).
        entry: MFT entry number on NTFS, inode/metadata address elsewhere.
        sequence: MFT sequence number (NTFS) or generation, when known.
        parent_entry: parent MFT entry/inode.
        parent_sequence: parent sequence number, when known.
        allocated: False for a deleted entry.
        resident: the data lives in the MFT record (NTFS), None when not applicable.
        attribute_flags: raw FILE_ATTRIBUTE_* flags (NTFS/FAT), 0 elsewhere.
        attributes: names of the set flags.
        si: $STANDARD_INFORMATION times (NTFS).
        fn: the record's own $FILE_NAME times (NTFS).
        i30: the $FILE_NAME copy in the parent directory's $I30 index (NTFS).
        times: the inode's times on every other file system (The Sleuth Kit's, or the
            libyal binding's for APFS, XFS, ext and HFS+).
        streams: alternate data streams (not the default one).
        mode: Unix mode bits, when the file system has them.
        uid: owner user id, when the file system has it.
        gid: owner group id, when the file system has it.
        link_target: symbolic link target, when known.
        damage: why the entry's own metadata could not be read ("" when it could); a
            damaged entry carries only what its directory's index says about it (name,
            MFT reference, parent, $I30 times) and its content cannot be opened.
        links: the inode's hard-link count, when the file system has one (paths with
            the same ``entry`` are hard links of one inode).
    """

    path: str
    name: str
    is_directory: bool
    size: int
    allocated_size: int = 0
    entry: int | None = None
    sequence: int | None = None
    parent_entry: int | None = None
    parent_sequence: int | None = None
    allocated: bool = True
    resident: bool | None = None
    attribute_flags: int = 0
    attributes: tuple[str, ...] = ()
    si: TimestampSet | None = None
    fn: TimestampSet | None = None
    i30: TimestampSet | None = None
    times: TimestampSet | None = None
    streams: tuple[StreamInfo, ...] = ()
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    link_target: str = ""
    damage: str = ""
    links: int | None = None

    def child_path(self, name: str) -> str:
        """Path of a child named ``name``."""
        return f"{self.path}/{name}" if self.path else name

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (timestamps as ISO 8601 UTC strings)."""
        ntfs = self.si is not None or self.fn is not None
        out: dict[str, object] = {
            "path": self.path,
            "name": self.name,
            "type": "directory" if self.is_directory else "file",
            "size": self.size,
            "allocated_size": self.allocated_size,
            "entry": self.entry,
            "sequence": self.sequence,
            "parent_entry": self.parent_entry,
            "parent_sequence": self.parent_sequence,
            "allocated": self.allocated,
            "resident": self.resident,
            "attribute_flags": self.attribute_flags,
            "attributes": list(self.attributes),
            "streams": [{"name": s.name, "size": s.size} for s in self.streams],
        }
        if ntfs:
            out["timestamps"] = {
                "si": self.si.as_dict() if self.si else None,
                "fn": self.fn.as_dict() if self.fn else None,
                "i30": self.i30.as_dict() if self.i30 else None,
            }
        else:
            out["timestamps"] = {"times": self.times.as_dict("changed") if self.times else None}
        if self.mode is not None:
            out["mode"] = self.mode
            out["uid"] = self.uid
            out["gid"] = self.gid
        if self.link_target:
            out["link_target"] = self.link_target
        if self.damage:
            out["damage"] = self.damage
        if self.links is not None:
            out["links"] = self.links
        return out

    def stream_size(self, stream: str) -> int:
        """Size of ``stream`` ("" is the default data stream)."""
        if not stream:
            return self.size
        for info in self.streams:
            if info.name == stream:
                return info.size
        raise KeyError(stream)


@dataclass(frozen=True, slots=True)
class Digests:
    """Hex digests of one byte sequence, keyed by algorithm name."""

    values: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        """``{"md5": ..., "sha256": ...}``."""
        return dict(self.values)

    def get(self, algorithm: str) -> str | None:
        """The hex digest for ``algorithm``, or None."""
        return dict(self.values).get(algorithm)

"""The volume layers, in the order the worklist asks them, and the formats known but not read.

Adding a layer: write its module with one
:class:`~selective_imager.volumes.base.VolumeLayer` subclass and add one line to
:data:`VOLUME_LAYERS`. Modules are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selective_imager.registry import load_class

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.base import VolumeLayer

# "module:Class", asked in order on every stream of the worklist.
VOLUME_LAYERS: list[str] = [
    "selective_imager.volumes.bitlocker.layer:BitLockerLayer",
    "selective_imager.volumes.luks.layer:LuksLayer",
    "selective_imager.volumes.vss:ShadowCopyLayer",
    "selective_imager.volumes.partitions:PartitionTableLayer",
    "selective_imager.volumes.apfs:ApfsLayer",
]

# Volume formats recognised but not read: (offset, signature, what it is).
KNOWN_UNSUPPORTED: list[tuple[int, bytes, str]] = [
    (512, b"LABELONE", "an LVM2 physical volume (not supported)"),
    (3, b"ReFS\0\0\0\0", "a ReFS file system (not supported)"),
    (0x10040, b"_BHRfS_M", "a Btrfs file system (not supported)"),
    (3, b"-FVE-FS-", "a BitLocker volume"),
    (4086, b"SWAPSPACE2", "Linux swap space (no file system)"),
    (4086, b"SWAP-SPACE", "Linux swap space (no file system)"),
    (0x1000, b"\xfc\x4e\x2b\xa9", "a Linux md RAID member (not supported)"),
    (0, b"\x0b\x00\x00\x00\x00\x00\x00\x00VeraCrypt", "a VeraCrypt volume (not supported)"),
]
_CORE_STORAGE = b"CS"


def layer_class(spec: str) -> type[VolumeLayer]:
    """The class named by a ``module:Class`` registry entry."""
    cls: type[VolumeLayer] = load_class(spec)
    return cls


def layers() -> list[type[VolumeLayer]]:
    """Every registered layer, in order."""
    return [layer_class(spec) for spec in VOLUME_LAYERS]


def what_is(stream: ByteStream) -> str:
    """A name for a known but unreadable volume format on ``stream``, or ""."""
    for offset, signature, what in KNOWN_UNSUPPORTED:
        if stream.read_at(offset, len(signature)) == signature:
            return what
    head = stream.read_at(0, 96)
    # Core Storage: "CS" at 88 with version 1 at 90 (libfvde's document).
    if head[88:90] == _CORE_STORAGE and head[90:92] == b"\x01\x00":
        return "a Core Storage (FileVault 2) volume (not supported)"
    return ""

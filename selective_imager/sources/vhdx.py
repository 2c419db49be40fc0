"""Microsoft VHDX (Hyper-V) disks through libvhdi (pyvhdi).

Fixed, dynamic and differencing disks. A differencing disk's parent locator names
the parent (relative and absolute paths) and its ``parent_linkage`` identifier,
which must match the parent's; the opening itself is shared with :mod:`.vhd`.

References:
    - libyal libvhdi, "Virtual Hard Disk version 2 (VHDX) image format" (file type
      identifier ``vhdxfile``, the two headers and region tables, the metadata region
      with file parameters (has-parent flag) and the parent locator; BAT entries: state
      in bits 0-2, 6 fully / 7 partially present, file offset in MiB from bit 20).
"""

from __future__ import annotations

import struct
import uuid

from selective_imager.errors import SourceError
from selective_imager.sources.base import Source, SourceFormat, SourceOptions
from selective_imager.sources.chain import OpenedFile, open_stream, open_virtual_disk
from selective_imager.sources.vhd import open_vhdi

_SIGNATURE = b"vhdxfile"
_REGION_TABLE = 192 * 1024
_BAT = uuid.UUID("2dc27766-f623-4200-9d64-115e9bfd4a08")
_MIB = 1 << 20


class VhdxFormat(SourceFormat):
    """A VHDX: the ``vhdxfile`` file type identifier at the start."""

    name = "vhdx"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """The file type identifier at offset 0."""
        return head.startswith(_SIGNATURE)

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open the VHDX and any parents."""
        return open_virtual_disk(path, options, "vhdx", _open_one)


def _open_one(path: str) -> OpenedFile:
    check_complete(path)
    return open_vhdi(path, "vhdx")


def check_complete(path: str) -> None:
    """Refuse a VHDX that ends before a region or a block its BAT maps (a cut copy).

    libvhdi reads blocks lazily, so a truncated file would open and fail only when a
    missing block is read. A present block is at least 1 MiB (the smallest block and
    the sector bitmap size), which is the granularity of this check.

    Raises:
        SourceError: the file is truncated.
    """
    stream = open_stream(path)
    try:
        regions = stream.read_at(_REGION_TABLE, 4096)
        if regions[:4] != b"regi":
            return  # libvhdi reads the second copy or reports the damage itself
        count = min(struct.unpack_from("<I", regions, 8)[0], 127)
        for i in range(count):
            entry = 16 + 32 * i
            offset, length = struct.unpack_from("<QI", regions, entry + 16)
            if offset + length > stream.size:
                raise SourceError(f"{path}: VHDX region beyond the end of the file: truncated")
            if regions[entry : entry + 16] == _BAT.bytes_le:
                _check_blocks(path, stream.read_at(offset, length), stream.size)
    finally:
        stream.close()


def _check_blocks(path: str, table: bytes, size: int) -> None:
    for (entry,) in struct.iter_unpack("<Q", table[: len(table) // 8 * 8]):
        if entry & 7 in (6, 7) and (entry >> 20 << 20) + _MIB > size:
            raise SourceError(
                f"{path}: VHDX file is {size} bytes but maps a block at "
                f"{entry >> 20 << 20}: truncated"
            )

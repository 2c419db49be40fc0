"""The on-disk structures of EWF-E01 and EWF-S01 shared by the reader and the writer.

References:
    - libyal libewf, "Expert Witness Compression Format (EWF)" (documentation/ in
      github.com/libyal/libewf): file header, section descriptor, volume/disk/data,
      table/table2, header/header2, hash, digest and error2 sections.

All integers are little-endian. Every structure ends with an Adler-32 of the bytes
before it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

# "EVF" file header (13 bytes): signature, u8 1, u16 segment number, u16 0.
EVF_SIGNATURE = b"EVF\x09\x0d\x0a\xff\x00"
FILE_HEADER = struct.Struct("<8sBHH")
# Section descriptor (76 bytes): type (16, NUL padded), u64 next offset (from the start
# of the segment file), u64 section size, 40 bytes padding, u32 Adler-32.
DESCRIPTOR = struct.Struct("<16sQQ40xI")
DESCRIPTOR_SIZE = DESCRIPTOR.size
# Table header (24 bytes): u32 entries, u32 0, u64 base offset (EnCase 6+; zero
# before), u32 0, u32 Adler-32 of the 20 bytes before.
TABLE_HEADER = struct.Struct("<IIQII")
# Volume section of EWF-E01 (1052 bytes) and of EWF-S01 / the ASR spec (94 bytes).
VOLUME_E01_SIZE = 1052
VOLUME_S01_SIZE = 94
# Error2 header: u32 entries, 512 bytes, u32 Adler-32; entries are (u32 start sector,
# u32 sector count); then an Adler-32 of the entries.
ERROR2_HEADER_SIZE = 520
# A table entry's most significant bit: the chunk is zlib-compressed.
COMPRESSED_BIT = 0x80000000
OFFSET_MASK = 0x7FFFFFFF

# header2 / header identifiers and the names libewf (and so pyewf) gives them.
HEADER_NAMES: dict[str, str] = {
    "a": "description",
    "c": "case_number",
    "n": "evidence_number",
    "e": "examiner_name",
    "t": "notes",
    "md": "model",
    "sn": "serial_number",
    "l": "device_label",
    "av": "acquiry_software_version",
    "ov": "acquiry_operating_system",
    "m": "acquiry_date",
    "u": "system_date",
    "p": "password",
    "pid": "process_identifier",
    "dc": "unknown_dc",
    "ext": "extents",
    "r": "compression_level",
}


def adler32(data: bytes | bytearray | memoryview) -> int:
    """Adler-32 as EWF stores it (zlib's, starting from 1)."""
    return zlib.adler32(data) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One section descriptor.

    Attributes:
        kind: the section type ("header2", "volume", "sectors", "table", ...).
        offset: where the descriptor starts in its segment file.
        next_offset: where the next descriptor starts (itself for next/done).
        size: section size including the descriptor (0 for EnCase next/done).
        checksum_ok: whether the descriptor's Adler-32 matches.
    """

    kind: str
    offset: int
    next_offset: int
    size: int
    checksum_ok: bool

    @property
    def data_offset(self) -> int:
        """Where the section's data starts."""
        return self.offset + DESCRIPTOR_SIZE


def parse_descriptor(raw: bytes, offset: int) -> Descriptor:
    """Parse the 76 bytes ``raw`` read at ``offset``."""
    kind, next_offset, size, checksum = DESCRIPTOR.unpack(raw)
    name = kind.split(b"\0", 1)[0].decode("ascii", "replace")
    ok = adler32(raw[:72]) == checksum
    return Descriptor(name, offset, next_offset, size, ok)


def pack_descriptor(kind: str, next_offset: int, size: int) -> bytes:
    """A section descriptor."""
    body = DESCRIPTOR.pack(kind.encode("ascii"), next_offset, size, 0)[:72]
    return body + struct.pack("<I", adler32(body))


@dataclass(frozen=True, slots=True)
class Volume:
    """The volume (or disk/data) section: the geometry of the media.

    Attributes:
        media_type: 0 removable, 1 fixed, 3 optical, 0x10 memory.
        chunk_count: chunks in the whole segment set.
        sectors_per_chunk: sectors per chunk.
        bytes_per_sector: bytes per sector.
        sector_count: sectors of media.
        media_flags: 0x01 image file, 0x02 physical device, ...
        compression_level: 0 none, 1 good, 2 best.
        error_granularity: sectors per error block.
        set_identifier: the segment set GUID (16 bytes).
        smart: whether this is the 94-byte EWF-S01 layout.
    """

    media_type: int
    chunk_count: int
    sectors_per_chunk: int
    bytes_per_sector: int
    sector_count: int
    media_flags: int
    compression_level: int
    error_granularity: int
    set_identifier: bytes
    smart: bool

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk."""
        return self.sectors_per_chunk * self.bytes_per_sector

    @property
    def media_size(self) -> int:
        """Bytes of media."""
        return self.sector_count * self.bytes_per_sector


_VOLUME_E01 = struct.Struct("<B3xIIIQIIIB3xI4xIB3xI4x16s")
_VOLUME_S01 = struct.Struct("<IIIII")


def parse_volume(data: bytes) -> Volume | None:
    """The volume section data, or None when its size or checksum is wrong."""
    if len(data) >= VOLUME_E01_SIZE:
        body = data[:VOLUME_E01_SIZE]
        if adler32(body[:-4]) != struct.unpack_from("<I", body, VOLUME_E01_SIZE - 4)[0]:
            return None
        (mtype, chunks, spc, bps, sectors, _c, _h, _s, flags, _palm, _smart, level, gran,
         guid) = _VOLUME_E01.unpack_from(body)  # fmt: skip
        return Volume(mtype, chunks, spc, bps, sectors, flags, level, gran, guid, smart=False)
    if len(data) >= VOLUME_S01_SIZE:
        body = data[:VOLUME_S01_SIZE]
        if adler32(body[:-4]) != struct.unpack_from("<I", body, VOLUME_S01_SIZE - 4)[0]:
            return None
        _reserved, chunks, spc, bps, sectors = _VOLUME_S01.unpack_from(body)
        return Volume(1, chunks, spc, bps, sectors, 1, 1, 0, bytes(16), smart=True)
    return None


def pack_volume(volume: Volume) -> bytes:
    """The 1052-byte EWF-E01 volume (or data) section data."""
    body = bytearray(VOLUME_E01_SIZE)
    _VOLUME_E01.pack_into(
        body,
        0,
        volume.media_type,
        volume.chunk_count,
        volume.sectors_per_chunk,
        volume.bytes_per_sector,
        volume.sector_count,
        0,
        0,
        0,
        volume.media_flags,
        0,
        0,
        volume.compression_level,
        volume.error_granularity,
        volume.set_identifier,
    )
    struct.pack_into("<I", body, VOLUME_E01_SIZE - 4, adler32(body[:-4]))
    return bytes(body)

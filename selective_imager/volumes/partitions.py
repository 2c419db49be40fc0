"""Partition tables (MBR with extended/logical partitions, GPT, and TSK's others).

The Sleuth Kit's ``Volume_Info`` finds the layout. It does not expose GPT type and
partition GUIDs, so those few fields are read from the GPT entry array directly.

References:
    - UEFI Specification 2.10, section 5.3 (GPT header and partition entry array).
"""

from __future__ import annotations

import itertools
import re
import struct
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.errors import VolumeSystemError
from selective_imager.models import LayerRef, VolumeInfo
from selective_imager.streams import RangeStream, make_tsk_image, tsk_failure
from selective_imager.volumes.base import Child, LayerResult, VolumeLayer

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.base import LayerContext

# TSK_VS_TYPE_ENUM values.
_SCHEMES = {1: "mbr", 2: "bsd", 4: "sun", 8: "mac", 16: "gpt"}
_TSK_VS_PART_FLAG_ALLOC = 1
_MBR_TYPE = re.compile(r"\(0x([0-9a-fA-F]{2})\)\s*$")

# Well-known GPT type GUIDs (upper case), for a readable type name.
GPT_TYPE_NAMES = {
    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI system partition",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
    "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
    "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows recovery environment",
    "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Windows LDM metadata",
    "AF9B60A0-1431-4F62-BC68-3311714A69AD": "Windows LDM data",
    "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Windows storage spaces",
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
    "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
    "E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
    "A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
    "933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux /home",
    "BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
    "21686148-6449-6E6F-744E-656564454649": "BIOS boot partition",
    "48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS+",
    "7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
    "6A898CC3-1DD2-11B2-99A6-080020736631": "ZFS",
}


@dataclass(frozen=True, slots=True)
class VolumeSystem:
    """A partition table and its usable partitions.

    Attributes:
        scheme: ``gpt``, ``mbr``, ... or ``none`` when the source has no table.
        sector_size: the table's sector size in bytes.
        volumes: the allocated partitions, in table order.
        problems: inconsistencies found (overlap, out of range): the indexes of the
            partitions concerned and one line saying what is wrong.
        disk_guid: the GPT disk GUID.
    """

    scheme: str
    sector_size: int
    volumes: tuple[VolumeInfo, ...]
    problems: tuple[tuple[tuple[int, ...], str], ...] = ()
    disk_guid: str = ""

    def problem_of(self, index: int) -> str:
        """The problems that concern partition ``index``, joined, or ""."""
        return "; ".join(text for indexes, text in self.problems if index in indexes)


def open_volume_system(stream: ByteStream, sector_size: int = 512) -> VolumeSystem | None:
    """The partition table of ``stream``, or None when it has none.

    Raises:
        VolumeSystemError: a table was found but TSK could not list it.
    """
    import pytsk3

    img = make_tsk_image(stream)
    try:
        vs = pytsk3.Volume_Info(img)
    except (OSError, RuntimeError):
        # No (supported) partition table, or none readable (RuntimeError: a read error
        # inside TSK's image callback): the caller treats the source as one volume.
        return None
    scheme = _SCHEMES.get(int(vs.info.vstype), f"tsk-{int(vs.info.vstype)}")
    block = int(vs.info.block_size) or sector_size
    gpt_entries: dict[int, tuple[str, str, str]] = {}
    disk_guid = ""
    if scheme == "gpt":
        gpt_entries, disk_guid = _read_gpt_entries(stream, block)
    volumes: list[VolumeInfo] = []
    try:
        parts = list(vs)
    except (OSError, RuntimeError) as exc:
        why = tsk_failure(img, exc)
        raise VolumeSystemError(f"cannot list the {scheme} partition table: {why}") from exc
    lost: list[tuple[tuple[int, ...], str]] = []
    for part in parts:
        if not int(part.flags) & _TSK_VS_PART_FLAG_ALLOC:
            lost.extend(_container_past_end(part, block, stream.size))
            continue
        desc = (
            part.desc.decode("utf-8", "replace") if isinstance(part.desc, bytes) else str(part.desc)
        )
        offset = int(part.start) * block
        size = int(part.len) * block
        slot = f"{int(part.table_num):03d}:{int(part.slot_num):03d}"
        type_id = type_name = name = guid = ""
        flags: tuple[str, ...] = ()
        if scheme == "gpt":
            type_id, guid, name = gpt_entries.get(int(part.slot_num), ("", "", desc))
            type_name = GPT_TYPE_NAMES.get(type_id, "")
            slot = f"{int(part.slot_num):03d}"
        elif scheme == "mbr":
            match = _MBR_TYPE.search(desc)
            type_id = f"0x{match.group(1).lower()}" if match else ""
            type_name = _MBR_TYPE.sub("", desc).strip()
            flags = ("logical",) if int(part.table_num) > 0 else ("primary",)
        else:
            type_name = desc
        volumes.append(
            VolumeInfo(
                index=len(volumes) + 1,
                offset=offset,
                size=size,
                scheme=scheme,
                type_id=type_id,
                type_name=type_name,
                name=name,
                guid=guid,
                slot=slot,
                flags=flags,
            )
        )
    return VolumeSystem(
        scheme=scheme,
        sector_size=block,
        volumes=tuple(volumes),
        problems=(*check_layout(volumes, stream.size), *lost),
        disk_guid=disk_guid,
    )


def check_layout(volumes: list[VolumeInfo], source_size: int) -> list[tuple[tuple[int, ...], str]]:
    """Overlaps and partitions running past the end of the source, one line each."""
    problems: list[tuple[tuple[int, ...], str]] = []
    for vol in volumes:
        end = vol.offset + vol.size
        if vol.offset >= source_size:
            problems.append(
                (
                    (vol.index,),
                    f"image truncated: volume {vol.index} starts "
                    f"{_size_text(vol.offset - source_size)} after the end of the image "
                    f"(byte {vol.offset}; the image has {source_size} bytes): nothing of it "
                    "can be read",
                )
            )
        elif end > source_size:
            problems.append(
                (
                    (vol.index,),
                    f"image truncated: volume {vol.index} ends {_size_text(end - source_size)} "
                    f"after the end of the image (byte {end}; the image has {source_size} "
                    "bytes): what lies before the end is still read",
                )
            )
    ordered = sorted(volumes, key=lambda v: v.offset)
    for a, b in itertools.pairwise(ordered):
        if a.offset + a.size > b.offset:
            problems.append(((a.index, b.index), f"partitions {a.index} and {b.index} overlap"))
    return problems


def _container_past_end(
    part: Any, block: int, source_size: int
) -> list[tuple[tuple[int, ...], str]]:
    """An extended partition whose table lies past the end of a truncated image.

    Its logical partitions cannot even be listed, so they would vanish without a word.
    """
    raw = part.desc
    desc = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    offset = int(part.start) * block
    if "Extended" not in desc or "Table" in desc or offset < source_size:
        return []
    return [
        (
            (),
            f"image truncated: the extended partition at byte {offset} lies "
            f"{_size_text(offset - source_size)} after the end of the image (it has "
            f"{source_size} bytes): the logical volumes in it cannot be listed",
        )
    ]


def _size_text(size: int) -> str:
    """``1.2 GiB``-style size for a message."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def slice_volume(stream: ByteStream, vol: VolumeInfo) -> RangeStream:
    """A bounded read-only window of ``stream`` for ``vol``."""
    return RangeStream(stream, vol.offset, vol.size)


def _read_gpt_entries(
    stream: ByteStream, sector_size: int
) -> tuple[dict[int, tuple[str, str, str]], str]:
    """Slot -> (type GUID, partition GUID, name) from the primary GPT, and the disk GUID."""
    header = stream.read_at(sector_size, 92)
    if len(header) < 92 or header[:8] != b"EFI PART":
        return {}, ""
    disk_guid = str(uuid.UUID(bytes_le=header[56:72])).upper()
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    if entry_size < 128 or count > 4096:
        return {}, disk_guid
    table = stream.read_at(entries_lba * sector_size, count * entry_size)
    result: dict[int, tuple[str, str, str]] = {}
    for slot in range(min(count, len(table) // entry_size)):
        raw = table[slot * entry_size : slot * entry_size + 128]
        if raw[:16] == b"\0" * 16:
            continue
        type_guid = str(uuid.UUID(bytes_le=raw[0:16])).upper()
        part_guid = str(uuid.UUID(bytes_le=raw[16:32])).upper()
        name = raw[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        result[slot] = (type_guid, part_guid, name)
    return result, disk_guid


class PartitionTableLayer(VolumeLayer):
    """MBR (with logical partitions), GPT and the other tables The Sleuth Kit lists."""

    name = "partition-table"
    kind = "partition-table"

    @classmethod
    def applies(cls, context: LayerContext) -> bool:
        """On the source itself: a partition's (or decrypted volume's) first sector is a
        boot record, which TSK would take for an MBR."""
        return context.depth == 0

    @classmethod
    def detect(cls, stream: ByteStream, context: LayerContext) -> bool:
        """The Sleuth Kit finds a table."""
        import pytsk3

        try:
            pytsk3.Volume_Info(make_tsk_image(stream))
        except (OSError, RuntimeError):
            # RuntimeError: a read error raised inside TSK's image callback.
            return False
        return True

    @classmethod
    def open_layer(cls, stream: ByteStream, context: LayerContext) -> LayerResult:
        """One child per allocated partition, with the layout problems that concern it."""
        table = open_volume_system(stream, context.sector_size)
        if table is None:
            return LayerResult(error="no partition table")
        children = [
            Child(
                slice_volume(stream, vol),
                LayerRef("partition", vol.index, vol.offset, vol.guid),
                vol,
                table.problem_of(vol.index),
            )
            for vol in table.volumes
        ]
        return LayerResult(children=children, table=table)

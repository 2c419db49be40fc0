"""VMware VMDK virtual disks through libvmdk (pyvmdk).

Monolithic sparse and flat, split (``-s001.vmdk``/``-f001.vmdk``) extents,
stream-optimized, and snapshots (a child descriptor whose ``parentCID`` is its
parent's ``CID``, found through ``parentFileNameHint``).

References:
    - libyal libvmdk, "VMware Virtual Disk (VMDK) format" (sparse extent header:
      ``KDMV``, u32 version, u32 flags, u64 capacity, u64 grain size, u64 descriptor
      offset and size in sectors; the text descriptor with ``CID``/``parentCID``,
      ``createType``, ``parentFileNameHint`` and the extent lines).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from selective_imager.errors import SourceError, short_error
from selective_imager.models import ChainFile
from selective_imager.sources.base import Source, SourceFormat, SourceOptions, read_head
from selective_imager.sources.chain import OpenedFile, open_stream, open_virtual_disk

if TYPE_CHECKING:
    from selective_imager.streams import FileStream

_SPARSE = b"KDMV"
_COWD = b"COWD"  # ESX 2/3 VMFS sparse extent
_DESCRIPTOR = b"# Disk DescriptorFile"
_NO_PARENT = 0xFFFFFFFF
_GD_AT_END = 0xFFFFFFFFFFFFFFFF
_COMPRESSED = 1 << 16  # header flag: grains are compressed (stream-optimized)
_EXTENT_NAME = re.compile(r"^(?P<base>.*)-[sf](?P<num>\d{3})\.vmdk$", re.IGNORECASE)


class VmdkFormat(SourceFormat):
    """A VMDK descriptor, or a sparse file with its descriptor embedded."""

    name = "vmdk"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """The sparse-extent magic or a text descriptor at the start."""
        return head.startswith((_SPARSE, _COWD, _DESCRIPTOR))

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open the descriptor, its extents and any parents."""
        return open_virtual_disk(path, options, "vmdk", _open_one)


def _open_one(path: str) -> OpenedFile:
    import pyvmdk

    if not _has_descriptor(path):
        raise SourceError(f"{path}: {_lone_extent_message(path)}")
    descriptor = open_stream(path)
    handle = pyvmdk.handle()
    try:
        handle.open_file_object(descriptor)
    except OSError as exc:
        descriptor.close()
        raise SourceError(f"{path}: cannot open VMDK: {short_error(exc)}") from exc
    opened = OpenedFile(path, handle, [descriptor], [])
    try:
        _open_extents(opened)
        _describe(opened)
    except BaseException:
        opened.close()
        raise
    return opened


def _open_extents(opened: OpenedFile) -> None:
    """Hand every extent file the descriptor lists to the handle, read-only."""
    folder = Path(opened.path).parent
    descriptors = list(opened.handle.extent_descriptors)
    extents = []
    for extent in descriptors:
        if not extent.filename:
            continue
        # An embedded descriptor's only extent is the file itself, whatever name the
        # descriptor kept from before a copy or rename.
        embedded = len(descriptors) == 1 and read_head(opened.path, 4) == _SPARSE
        extent_path = Path(opened.path) if embedded else folder / extent.filename
        if not extent_path.is_file():
            raise SourceError(
                f"{opened.path}: VMDK extent {extent.filename} not found (looked for "
                f"{extent_path})"
            )
        stream = open_stream(str(extent_path))
        opened.files.append(stream)
        extents.append(stream)
        _check_complete(stream, str(extent_path))
        if extent_path.resolve() != Path(opened.path).resolve():
            opened.chain.append(ChainFile(str(extent_path), stream.size, "extent", "vmdk"))
    try:
        opened.handle.open_extent_data_files_as_file_objects(extents)
    except OSError as exc:
        raise SourceError(
            f"{opened.path}: cannot open the VMDK extents (damaged or truncated?): "
            f"{short_error(exc)}"
        ) from exc


def _check_complete(stream: FileStream, path: str) -> None:
    """Refuse a sparse extent that ends before the grains its tables map (a cut copy).

    libvmdk reads lazily, so without this a truncated file opens and fails (or is
    short) only when the missing grains are read.
    """
    head = stream.read_at(0, 512)
    if not head.startswith(_SPARSE) or len(head) < 72:
        return
    flags = struct.unpack_from("<I", head, 8)[0]
    capacity, grain, _, _, per_table = struct.unpack_from("<QQQQI", head, 12)
    directory = struct.unpack_from("<Q", head, 56)[0]
    if directory == _GD_AT_END:
        # Stream-optimized: the footer (a copy of the header) precedes the end marker.
        footer = stream.read_at(stream.size - 1024, 512)
        if not footer.startswith(_SPARSE):
            raise SourceError(f"{path}: stream-optimized VMDK without its footer: truncated")
        return
    if not grain or not per_table:
        return
    tables = -(-capacity // (grain * per_table))
    entries = stream.read_at(directory * 512, tables * 4)
    if len(entries) < tables * 4:
        raise SourceError(f"{path}: VMDK grain directory beyond the end of the file: truncated")
    last = 0
    for (table,) in struct.iter_unpack("<I", entries):
        if table:
            data = stream.read_at(table * 512, per_table * 4)
            if len(data) < per_table * 4:
                raise SourceError(f"{path}: VMDK grain table beyond the end of the file: truncated")
            last = max(last, *(g for (g,) in struct.iter_unpack("<I", data)))
    # A compressed grain (stream-optimized) is shorter than a grain: its marker sector.
    span = 1 if flags & _COMPRESSED else grain
    if last and (last + span) * 512 > stream.size:
        raise SourceError(
            f"{path}: VMDK file is {stream.size} bytes but maps a grain at {last * 512}: truncated"
        )


def _describe(opened: OpenedFile) -> None:
    import pyvmdk

    handle = opened.handle
    types = {
        getattr(pyvmdk.disk_types, n): n.lower()
        for n in dir(pyvmdk.disk_types)
        if n.isupper()
    }
    cid = handle.get_content_identifier()
    parent_cid = handle.get_parent_content_identifier()
    opened.identifier = f"{cid:08x}"
    if parent_cid is not None and parent_cid != _NO_PARENT:
        opened.parent_identifier = f"{parent_cid:08x}"
        opened.parent_name = handle.get_parent_filename() or ""
    opened.details = {
        "vmdk.disk_type": types.get(handle.get_disk_type(), str(handle.get_disk_type())),
        "vmdk.content_id": opened.identifier,
        "vmdk.extents": str(handle.get_number_of_extents()),
    }
    if opened.parent_identifier:
        opened.details["vmdk.parent_content_id"] = opened.parent_identifier
        opened.details["vmdk.parent_file_name"] = opened.parent_name
    size = Path(opened.path).stat().st_size
    opened.chain.insert(
        0,
        ChainFile(opened.path, size, "image", "vmdk", opened.identifier, opened.parent_identifier),
    )


def _has_descriptor(path: str) -> bool:
    """False for a sparse extent whose embedded descriptor area is absent or empty.

    The extents of a split set (``-s002.vmdk``) carry no descriptor: only the
    separate descriptor file lists them all.
    """
    head = read_head(path, 512)
    if not head.startswith(_SPARSE) or len(head) < 44:
        return True
    offset, size = struct.unpack_from("<QQ", head, 28)
    if size == 0:
        return False
    first = read_head(path, offset * 512 + 1)[offset * 512 :]
    return first not in (b"", b"\0")


def _lone_extent_message(path: str) -> str:
    """What to give instead of an extent file of a split VMDK given alone."""
    match = _EXTENT_NAME.match(Path(path).name)
    if match:
        descriptor = Path(path).with_name(match["base"] + ".vmdk")
        if descriptor.is_file():
            return (
                f"is extent {int(match['num'])} of a split VMDK: give its descriptor "
                f"({descriptor}) instead"
            )
    return "is a VMDK extent without a descriptor: give the descriptor .vmdk that lists it"

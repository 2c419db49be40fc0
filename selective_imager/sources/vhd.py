"""Microsoft VHD (Virtual PC / Hyper-V generation 1) disks through libvhdi (pyvhdi).

Fixed, dynamic and differencing disks. A differencing disk records its parent's
unique identifier and name in its dynamic header; the parent is checked against it.

References:
    - libyal libvhdi, "Virtual Hard Disk (VHD) image format" (the 512-byte footer:
      ``conectix`` cookie, disk type 2 fixed / 3 dynamic / 4 differencing, unique
      identifier; a copy at offset 0 in dynamic and differencing disks, only at the
      end of a fixed one; the dynamic header ``cxsparse`` with the parent identifier
      and parent name).
"""

from __future__ import annotations

import os
from pathlib import Path

from selective_imager.errors import SourceError, short_error
from selective_imager.models import ChainFile
from selective_imager.sources.base import Source, SourceFormat, SourceOptions
from selective_imager.sources.chain import OpenedFile, open_stream, open_virtual_disk

_COOKIE = b"conectix"
_DISK_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}


class VhdFormat(SourceFormat):
    """A VHD: the footer cookie at the start (dynamic) or in the last sector (fixed)."""

    name = "vhd"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """The ``conectix`` footer at the start or in the last 512 (or 511) bytes."""
        tail = _tail(path, 512)
        return head.startswith(_COOKIE) or tail.startswith(_COOKIE) or tail[1:].startswith(_COOKIE)

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open the VHD and any parents."""
        return open_virtual_disk(path, options, "vhd", lambda p: open_vhdi(p, "vhd"))


def _tail(path: str, size: int) -> bytes:
    """The last ``size`` bytes of a file (b"" when it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return b""
    try:
        end = os.fstat(fd).st_size
        if end < size:
            return b""
        return os.pread(fd, size, end - size) if hasattr(os, "pread") else b""
    except OSError:
        return b""
    finally:
        os.close(fd)


def open_vhdi(path: str, fmt: str) -> OpenedFile:
    """Open one VHD or VHDX file in pyvhdi (shared with :mod:`.vhdx`).

    Raises:
        SourceError: the file is damaged or truncated.
    """
    import pyvhdi

    stream = open_stream(path)
    handle = pyvhdi.file()
    try:
        handle.open_file_object(stream)
    except OSError as exc:
        stream.close()
        raise SourceError(
            f"{path}: cannot open {fmt.upper()} (damaged or truncated?): {short_error(exc)}"
        ) from exc
    opened = OpenedFile(path, handle, [stream], [])
    try:
        disk_type = handle.get_disk_type()
        opened.identifier = str(handle.get_identifier() or "")
        if disk_type == 4:
            opened.parent_identifier = str(handle.get_parent_identifier() or "")
            opened.parent_name = handle.get_parent_filename() or ""
        opened.details = {
            f"{fmt}.disk_type": _DISK_TYPES.get(disk_type, str(disk_type)),
            f"{fmt}.format_version": str(handle.get_format_version()),
            f"{fmt}.identifier": opened.identifier,
            f"{fmt}.bytes_per_sector": str(handle.get_bytes_per_sector()),
        }
    except OSError as exc:
        opened.close()
        raise SourceError(f"{path}: cannot read {fmt.upper()} metadata: {short_error(exc)}") from exc
    if opened.parent_identifier:
        opened.details[f"{fmt}.parent_identifier"] = opened.parent_identifier
        opened.details[f"{fmt}.parent_file_name"] = opened.parent_name
    opened.chain.append(
        ChainFile(
            path,
            Path(path).stat().st_size,
            "image",
            fmt,
            opened.identifier,
            opened.parent_identifier,
        )
    )
    return opened

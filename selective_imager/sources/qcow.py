"""QEMU QCOW (version 1) and QCOW2 (versions 2 and 3) disks through libqcow (pyqcow).

An overlay records its backing file by name or path only (no identifier), so a
parent cannot be checked beyond being a readable disk image. Encrypted images are
refused with a message.

References:
    - libyal libqcow, "QEMU Copy-On-Write (QCOW) image file format" (big-endian
      header: ``QFI\\xfb``, u32 version, u64 backing file name offset, u32 its size;
      the encryption method at offset 36 in version 1, 32 in versions 2 and 3).
"""

from __future__ import annotations

import struct
from pathlib import Path

from selective_imager.errors import SourceError, short_error
from selective_imager.models import ChainFile
from selective_imager.sources.base import Source, SourceFormat, SourceOptions, read_head
from selective_imager.sources.chain import OpenedFile, open_stream, open_virtual_disk

_MAGIC = b"QFI\xfb"


class QcowFormat(SourceFormat):
    """A QCOW image: the magic at offset 0 and a version of 1, 2 or 3."""

    name = "qcow"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """The magic and a known version."""
        return head.startswith(_MAGIC) and len(head) >= 8 and _version(head) in (1, 2, 3)

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open the image and its backing files."""
        version = _version(read_head(path, 8))
        return open_virtual_disk(path, options, "qcow2" if version > 1 else "qcow", _open_one)


def _version(head: bytes) -> int:
    return int(struct.unpack_from(">I", head, 4)[0])


def _open_one(path: str) -> OpenedFile:
    import pyqcow

    head = read_head(path, 48)
    if not head.startswith(_MAGIC) or len(head) < 40:
        raise SourceError(f"{path}: is not a QCOW image (a backing file must be QCOW too)")
    version = _version(head)
    crypt = struct.unpack_from(">I", head, 36 if version == 1 else 32)[0]
    if crypt:
        raise SourceError(
            f"{path}: is an encrypted QCOW image (method {crypt}), which this build cannot read"
        )
    fmt = "qcow2" if version > 1 else "qcow"
    stream = open_stream(path)
    handle = pyqcow.file()
    try:
        handle.open_file_object(stream)
    except OSError as exc:
        stream.close()
        raise SourceError(
            f"{path}: cannot open QCOW (damaged or truncated?): {short_error(exc)}"
        ) from exc
    opened = OpenedFile(path, handle, [stream], [])
    opened.parent_name = handle.get_backing_filename() or ""
    opened.details = {"qcow.version": str(version)}
    if opened.parent_name:
        opened.details["qcow.backing_file"] = opened.parent_name
    opened.chain.append(ChainFile(path, Path(path).stat().st_size, "image", fmt))
    return opened

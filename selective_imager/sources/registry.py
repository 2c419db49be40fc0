"""The source formats, in detection order, and :func:`open_source`.

Adding a format: write its module with one :class:`~selective_imager.sources.base.SourceFormat`
subclass and add one line to :data:`SOURCE_FORMATS`. Modules are imported only when a
file is being detected, so a start-up pays for none of their bindings.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from selective_imager.errors import SourceError
from selective_imager.registry import load_class
from selective_imager.sources.base import (
    DEVICE_READ_TIMEOUT,
    HEAD_SIZE,
    SourceOptions,
    read_head,
)
from selective_imager.sources.device import (
    is_windows_device_path,
    open_unix_device,
    open_windows_device,
)
from selective_imager.streams import TimeoutStream

if TYPE_CHECKING:
    from selective_imager.sources.base import Source, SourceFormat

# "module:Class", tried in order; raw claims whatever is left, so it stays last.
SOURCE_FORMATS: list[str] = [
    "selective_imager.sources.ewf:EwfFormat",
    "selective_imager.sources.vmdk:VmdkFormat",
    "selective_imager.sources.vhdx:VhdxFormat",
    "selective_imager.sources.vhd:VhdFormat",
    "selective_imager.sources.qcow:QcowFormat",
    "selective_imager.sources.split:SplitRawFormat",
    "selective_imager.sources.raw:RawFormat",
]

# Files we recognise but do not read as a disk: (offset, signature, message).
KNOWN_UNSUPPORTED: list[tuple[int, bytes, str]] = [
    (0, b"\x1f\x8b", "is gzip-compressed: decompress it first (gzip allows no random access)"),
    (0, b"BZh", "is bzip2-compressed: decompress it first"),
    (0, b"\xfd7zXZ\x00", "is xz-compressed: decompress it first"),
    (0, b"(\xb5/\xfd", "is zstd-compressed: decompress it first"),
    (0, b"7z\xbc\xaf\x27\x1c", "is a 7-Zip archive, not a disk image: extract it first"),
    (0, b"PK\x03\x04", "is a ZIP file, not a disk image (a selective-imager container? use show)"),
    (0, b"age-encryption.org/v1", "is an age-encrypted file: decrypt it first"),
    (0, b"AFF10\r\n\x00", "is an AFF image: convert it to raw or E01 first"),
    (
        0,
        b"<<< Oracle VM VirtualBox Disk Image >>>",
        "is a VirtualBox VDI disk, not supported: "
        "convert it to raw (qemu-img convert -O raw) first",
    ),
]


def format_class(spec: str) -> type[SourceFormat]:
    """The class named by a ``module:Class`` registry entry."""
    cls: type[SourceFormat] = load_class(spec)
    return cls


def unsupported_reason(head: bytes) -> str:
    """The message for a known file type that is not a readable disk, or ""."""
    for offset, signature, message in KNOWN_UNSUPPORTED:
        if head[offset : offset + len(signature)] == signature:
            return message
    return ""


def open_source(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Source:
    """Open ``path`` read-only as a source, detecting its format by content.

    Raises:
        SourceError: the path does not exist, is a directory, is empty, is a file we
            recognise but cannot read, or the image is damaged or incomplete.
    """
    options = options or SourceOptions()
    source = _open_by_format(os.fspath(path), options)
    timeout = options.read_timeout
    if timeout is None:
        timeout = DEVICE_READ_TIMEOUT if source.info.is_device else 0.0
    if timeout > 0:
        source.stream = TimeoutStream(source.stream, timeout)
    return source


def _open_by_format(text: str, options: SourceOptions) -> Source:
    """The source at ``text`` opened by the first format that recognises it."""
    if is_windows_device_path(text):
        return open_windows_device(text)
    try:
        st = Path(text).stat()
    except FileNotFoundError:
        raise SourceError(f"{text}: no such file or device") from None
    except OSError as exc:
        raise SourceError(f"{text}: cannot access: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{text}: is a directory, not a disk image or device")
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return open_unix_device(text)
    if st.st_size == 0:
        raise SourceError(f"{text}: empty file")
    head = read_head(text, HEAD_SIZE)
    for spec in SOURCE_FORMATS:
        cls = format_class(spec)
        if cls.name == "raw":
            reason = unsupported_reason(head)
            if reason:
                raise SourceError(f"{text}: {reason}")
        if cls.detect(text, head):
            return cls.open_source(text, options)
    raise SourceError(f"{text}: no source format recognised")  # pragma: no cover - raw is last

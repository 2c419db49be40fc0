"""The file-system backends, in the order they are tried.

Adding a backend: write its module with a
:class:`~selective_imager.filesystems.base.FilesystemFormat` subclass and add one line
to :data:`FILESYSTEMS`. Every backend whose ``detect`` accepts a volume is tried in
order until one opens it, so TSK also catches an NTFS volume pyfsntfs refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selective_imager.errors import (
    FilesystemError,
    SelectiveImagerError,
    UnsupportedFilesystemError,
)
from selective_imager.registry import load_class
from selective_imager.volumes.registry import what_is

if TYPE_CHECKING:
    from selective_imager.filesystems.base import Filesystem, FilesystemFormat
    from selective_imager.streams import ByteStream

FILESYSTEMS: list[str] = [
    "selective_imager.filesystems.ntfs:NtfsFormat",
    "selective_imager.filesystems.apfs:ApfsFormat",
    "selective_imager.filesystems.xfs:XfsFormat",
    "selective_imager.filesystems.tsk:TskFormat",
]


def format_class(spec: str) -> type[FilesystemFormat]:
    """The class named by a ``module:Class`` registry entry."""
    cls: type[FilesystemFormat] = load_class(spec)
    return cls


def open_filesystem(stream: ByteStream) -> tuple[Filesystem, str]:
    """Open the file system on ``stream``; returns it and a note ("" or which backend failed).

    Raises:
        UnsupportedFilesystemError: nothing recognised (the message names a known
            but unsupported format when it is one).
        FilesystemError: recognised but damaged beyond what every backend can read.
    """
    failures: list[tuple[str, FilesystemError]] = []
    for spec in FILESYSTEMS:
        cls = format_class(spec)
        try:
            if not cls.detect(stream):
                continue
        except (OSError, SelectiveImagerError) as exc:
            # Its signature cannot be read: a read error, not "no file system".
            failures.append((cls.name, FilesystemError(f"cannot read the volume: {exc}")))
            continue
        try:
            fs = cls.open_filesystem(stream)
        except UnsupportedFilesystemError as exc:
            if not failures:
                failures.append((cls.name, exc))
            continue
        except FilesystemError as exc:
            failures.append((cls.name, exc))
            continue
        note = "; ".join(f"{name} failed ({exc})" for name, exc in failures)
        return fs, f"{note}; opened with {fs.info.backend}" if note else ""
    real = [exc for _, exc in failures if not isinstance(exc, UnsupportedFilesystemError)]
    if real:
        raise real[0]
    try:
        what = what_is(stream)
    except (OSError, SelectiveImagerError):
        what = ""
    if what:
        raise UnsupportedFilesystemError(f"{what}")
    raise UnsupportedFilesystemError("no supported file system recognised")

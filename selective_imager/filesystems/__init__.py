"""File-system backends and the detector that picks one for a volume.

NTFS goes to pyfsntfs (it opens volumes TSK cannot); everything else, and NTFS that
pyfsntfs refuses, goes to The Sleuth Kit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selective_imager.errors import FilesystemError, UnsupportedFilesystemError
from selective_imager.filesystems.base import Filesystem

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream

__all__ = ["Filesystem", "open_filesystem"]


def open_filesystem(stream: ByteStream) -> tuple[Filesystem, str]:
    """Open the file system on ``stream``; returns it and a note ("" or a fallback note).

    Raises:
        UnsupportedFilesystemError: nothing recognised.
        FilesystemError: recognised but damaged beyond what every backend can read.
    """
    from selective_imager.filesystems.ntfs import NtfsFilesystem, is_ntfs
    from selective_imager.filesystems.tsk import TskFilesystem

    if is_ntfs(stream):
        try:
            return NtfsFilesystem(stream), ""
        except FilesystemError as ntfs_error:
            try:
                return TskFilesystem(stream), f"pyfsntfs failed ({ntfs_error}); opened with TSK"
            except UnsupportedFilesystemError:
                raise ntfs_error from None
    return TskFilesystem(stream), ""

"""XFS through pyfsxfs (libfsxfs): inode numbers, nanosecond times, extended attributes.

The Sleuth Kit does not read XFS. Entries are numbered by inode, the four times
(created is the v5 inode's ``crtime``; v4 inodes have none) carry nanoseconds, and
every extended attribute is a named stream under its Linux name (``user.x``,
``trusted.x``, ``security.selinux``).

References:
    - XFS Algorithms & Data Structures, 3rd edition (the on-disk format; superblock
      magic ``XFSB``).
    - libyal libfsxfs, ``pyfsxfs.volume`` and ``pyfsxfs.file_entry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selective_imager.errors import FilesystemError, short_error
from selective_imager.filesystems.base import Filesystem, FilesystemFormat
from selective_imager.filesystems.libyal import LibyalFilesystem
from selective_imager.models import FilesystemInfo
from selective_imager.streams import RangeStream

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream

XFS_MAGIC = b"XFSB"


class XfsFilesystem(LibyalFilesystem):
    """An XFS volume opened with pyfsxfs."""

    label = "XFS"

    def __init__(self, stream: ByteStream) -> None:
        import pyfsxfs

        super().__init__()
        self._stream = RangeStream(stream, 0, stream.size)  # own position for libfsxfs
        volume = pyfsxfs.volume()
        try:
            volume.open_file_object(self._stream)
        except OSError as exc:
            raise FilesystemError(f"cannot open XFS: {short_error(exc)}") from exc
        self._volume = volume
        head = stream.read_at(0, 64)
        uuid = head[32:48].hex()
        self.info = FilesystemInfo(
            type="xfs",
            backend="pyfsxfs",
            label=str(volume.get_label() or ""),
            serial=f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}",
            block_size=int.from_bytes(head[4:8], "big"),
            case_sensitive=True,
        )

    def _root_object(self) -> Any:
        return self._volume.get_root_directory()

    def _object_by_number(self, number: int) -> Any:
        return self._volume.get_file_entry_by_inode(number)

    def _number(self, fe: Any) -> int:
        return int(fe.get_inode_number())


class XfsFormat(FilesystemFormat):
    """XFS (v4 and v5 superblocks)."""

    name = "xfs"

    @classmethod
    def detect(cls, stream: ByteStream) -> bool:
        """The ``XFSB`` magic at the start of the primary superblock."""
        return stream.read_at(0, 4) == XFS_MAGIC

    @classmethod
    def open_filesystem(cls, stream: ByteStream) -> Filesystem:
        """Open with pyfsxfs."""
        return XfsFilesystem(stream)

"""APFS volumes through pyfsapfs (libfsapfs).

The volume arrives already opened: :class:`~selective_imager.volumes.apfs.ApfsLayer`
yields an :class:`~selective_imager.volumes.apfs.ApfsVolumeStream` per volume of a
container, carrying the pyfsapfs volume, and :class:`ApfsFormat` accepts only that type
(see the layer's module for why). Entries are numbered by inode (hard links share
one), times are the four inode times in nanoseconds, and every extended attribute is a
named stream, the resource fork included (``com.apple.ResourceFork``).

References:
    - Apple, "Apple File System Reference" (2020-06-22): j_inode_val_t, j_xattr_val_t.
    - libyal libfsapfs, ``pyfsapfs.file_entry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selective_imager.errors import CredentialsError, UnsupportedFilesystemError
from selective_imager.filesystems.base import Filesystem, FilesystemFormat
from selective_imager.filesystems.libyal import LibyalFilesystem
from selective_imager.models import FilesystemInfo
from selective_imager.volumes.apfs import ApfsVolumeStream

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream


class ApfsFilesystem(LibyalFilesystem):
    """One volume of an APFS container."""

    label = "APFS"

    def __init__(self, stream: ApfsVolumeStream) -> None:
        super().__init__()
        if stream.volume is None:
            raise CredentialsError(f"APFS volume locked: {stream.locked_reason}")
        self._volume = stream.volume
        facts = stream.facts
        self.info = FilesystemInfo(
            type="apfs",
            backend="pyfsapfs",
            label=facts.name,
            serial=facts.identifier,
            block_size=stream.block_size,
            case_sensitive=facts.case_sensitive,
        )

    def _root_object(self) -> Any:
        return self._volume.get_root_directory()

    def _object_by_number(self, number: int) -> Any:
        return self._volume.get_file_entry_by_identifier(number)

    def _number(self, fe: Any) -> int:
        return int(fe.get_identifier())

    def _parent_number(self, fe: Any) -> int | None:
        parent = fe.get_parent_identifier()
        return None if parent is None else int(parent)

    def close(self) -> None:
        """The volume belongs to its container (a layer handle): only drop it."""
        self._volume = None


class ApfsFormat(FilesystemFormat):
    """An APFS volume handed over by the APFS container layer."""

    name = "apfs"

    @classmethod
    def detect(cls, stream: ByteStream) -> bool:
        """Only the container layer's volume streams."""
        return isinstance(stream, ApfsVolumeStream)

    @classmethod
    def open_filesystem(cls, stream: ByteStream) -> Filesystem:
        """Wrap the already opened pyfsapfs volume."""
        if not isinstance(stream, ApfsVolumeStream):
            raise UnsupportedFilesystemError("not an APFS volume of a container")
        return ApfsFilesystem(stream)

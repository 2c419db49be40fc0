"""From a source down to its file systems: the worklist over volumes.

Shaped like dissect's volume loop: take a stream; if it is BitLocker, unlock it and
put the decrypted stream back; else open its file system. A volume that cannot be
opened is recorded with a one-line reason and the rest of the disk goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from selective_imager.errors import (
    FilesystemError,
    SelectiveImagerError,
    UnsupportedFilesystemError,
)
from selective_imager.filesystems import open_filesystem
from selective_imager.models import (
    EncryptionInfo,
    FilesystemInfo,
    LayerRef,
    Locator,
    VolumeInfo,
    locator_str,
)
from selective_imager.sources import Source, open_source
from selective_imager.volumes.bitlocker.unlock import BitLockerVolume, is_bitlocker, open_bitlocker
from selective_imager.volumes.partitions import VolumeSystem, open_volume_system, slice_volume

if TYPE_CHECKING:
    import os

    from selective_imager.credentials import CredentialProvider
    from selective_imager.filesystems.base import Filesystem
    from selective_imager.streams import ByteStream


@dataclass(frozen=True, slots=True)
class VolumeReport:
    """What was found on one volume: secret-free, ready for reports and manifests."""

    volume: VolumeInfo
    locator: Locator
    encryption: EncryptionInfo | None = None
    filesystem: FilesystemInfo | None = None
    error: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        """``p3`` for partition 3, ``v0`` for an unpartitioned source."""
        return self.locator[0].label() if self.locator else f"v{self.volume.index}"

    def as_dict(self) -> dict[str, Any]:
        """The ``info --json`` form of a volume."""
        enc = self.encryption
        fs = self.filesystem
        return {
            "index": self.volume.index,
            "label": self.label,
            "locator": locator_str(self.locator),
            "offset": self.volume.offset,
            "size": self.volume.size,
            "scheme": self.volume.scheme,
            "type": self.volume.type_id,
            "type_name": self.volume.type_name,
            "name": self.volume.name,
            "guid": self.volume.guid,
            "slot": self.volume.slot,
            "flags": list(self.volume.flags),
            "encryption": None
            if enc is None
            else {
                "type": enc.type,
                "state": str(enc.state),
                "method": enc.method,
                "protectors": list(enc.protectors),
                "volume_guid": enc.volume_guid,
                "description": enc.description,
                "created": enc.created.isoformat() if enc.created else None,
                "unlocked_with": enc.unlocked_with or None,
                "fallback": enc.fallback or None,
                "reason": enc.reason or None,
                "decryptor": enc.decryptor or None,
                "decryptor_note": enc.decryptor_note or None,
            },
            "filesystem": None
            if fs is None
            else {
                "type": fs.type,
                "label": fs.label,
                "serial": fs.serial,
                "block_size": fs.block_size,
                "backend": fs.backend,
                "case_sensitive": fs.case_sensitive,
            },
            "error": self.error or None,
            "note": self.note or None,
        }


@dataclass(slots=True)
class OpenVolume:
    """A volume with its live objects: the raw slice, the decrypted stream, the FS."""

    report: VolumeReport
    raw: ByteStream
    stream: ByteStream | None
    filesystem: Filesystem | None
    _bitlocker: BitLockerVolume | None = None

    def close(self) -> None:
        """Close the file system and the BitLocker handle."""
        if self.filesystem is not None:
            self.filesystem.close()
            self.filesystem = None
        if self._bitlocker is not None:
            self._bitlocker.close()
            self._bitlocker = None


@dataclass(slots=True)
class Disk:
    """An opened source with every volume found on it."""

    source: Source
    table: VolumeSystem | None
    volumes: list[OpenVolume] = field(default_factory=list)

    def volume(self, index: int) -> OpenVolume:
        """The volume numbered ``index`` (as ``info`` lists them).

        Raises:
            KeyError: no such volume.
        """
        for vol in self.volumes:
            if vol.report.volume.index == index:
                return vol
        raise KeyError(index)

    def recognised(self) -> bool:
        """Whether anything at all was recognised (a table, BitLocker or a file system)."""
        return self.table is not None or any(
            v.report.encryption is not None or v.report.filesystem is not None for v in self.volumes
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``info --json`` object."""
        info = self.source.info
        return {
            "source": {
                "path": info.path,
                "format": info.format,
                "size": info.size,
                "sector_size": info.sector_size,
                "segments": list(info.segments),
                "is_device": info.is_device,
                "details": dict(info.details),
            },
            "partition_table": None
            if self.table is None
            else {
                "scheme": self.table.scheme,
                "sector_size": self.table.sector_size,
                "disk_guid": self.table.disk_guid or None,
                "problems": [text for _, text in self.table.problems],
            },
            "volumes": [v.report.as_dict() for v in self.volumes],
        }

    def close(self) -> None:
        """Close every volume and the source."""
        for vol in self.volumes:
            vol.close()
        self.source.close()

    def __enter__(self) -> Disk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_disk(path: str | os.PathLike[str], credentials: CredentialProvider | None = None) -> Disk:
    """Open a source and everything on it.

    Raises:
        SourceError: the source itself cannot be opened.
        VolumeSystemError: its partition table cannot be listed.
    """
    source = open_source(path)
    try:
        return discover(source, credentials)
    except BaseException:
        source.close()
        raise


def discover(source: Source, credentials: CredentialProvider | None = None) -> Disk:
    """Find the volumes and file systems of an open source."""
    table = open_volume_system(source.stream, source.info.sector_size)
    disk = Disk(source, table)
    work: list[tuple[VolumeInfo, ByteStream, Locator, str]] = []
    if table is None:
        whole = VolumeInfo(index=0, offset=0, size=source.info.size, scheme="none")
        work.append((whole, source.stream, (LayerRef("volume", 0, 0),), ""))
    else:
        for vol in table.volumes:
            ref = LayerRef("partition", vol.index, vol.offset, vol.guid)
            work.append(
                (vol, slice_volume(source.stream, vol), (ref,), table.problem_of(vol.index))
            )
    for vol, raw, locator, problem in work:
        disk.volumes.append(_open_volume(vol, raw, locator, problem, credentials))
    return disk


def _open_volume(
    vol: VolumeInfo,
    raw: ByteStream,
    locator: Locator,
    problem: str,
    credentials: CredentialProvider | None,
) -> OpenVolume:
    if raw.size == 0:
        report = VolumeReport(
            vol, locator, error=problem or "volume is empty or outside the source"
        )
        return OpenVolume(report, raw, None, None)
    encryption: EncryptionInfo | None = None
    bde: BitLockerVolume | None = None
    stream: ByteStream | None = raw
    if is_bitlocker(raw):
        bde = open_bitlocker(raw, credentials, vol if vol.scheme != "none" else None)
        encryption = bde.info
        stream = bde.stream
        locator = (*locator, LayerRef("bitlocker", 0, 0, encryption.volume_guid))
        if stream is None:
            error = f"BitLocker volume locked: {encryption.reason}"
            return OpenVolume(
                VolumeReport(vol, locator, encryption, error=_join(problem, error)),
                raw,
                None,
                None,
                bde,
            )
    assert stream is not None
    try:
        fs, note = open_filesystem(stream)
    except UnsupportedFilesystemError as exc:
        what = vol.type_name or vol.type_id
        error = f"no supported file system recognised{f' ({what})' if what else ''}"
        if encryption is not None:
            error = "decrypted, but no supported file system recognised inside"
        if "encrypted" in str(exc):
            error = str(exc)
        return OpenVolume(
            VolumeReport(vol, locator, encryption, error=_join(problem, error)),
            raw,
            stream,
            None,
            bde,
        )
    except (FilesystemError, SelectiveImagerError) as exc:
        return OpenVolume(
            VolumeReport(vol, locator, encryption, error=_join(problem, str(exc))),
            raw,
            stream,
            None,
            bde,
        )
    locator = (*locator, LayerRef("filesystem", 0, 0, fs.info.type))
    report = VolumeReport(vol, locator, encryption, fs.info, error=problem, note=note)
    return OpenVolume(report, raw, stream, fs, bde)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)

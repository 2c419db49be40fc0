"""APFS containers as a volume layer: one child per volume, unlocked when encrypted.

How a volume reaches its file-system backend: pyfsapfs opens a volume only from its
container object (``container.get_volume(i)``), never from a byte stream. So each child's
stream is an :class:`ApfsVolumeStream`: its bytes are the container's (file extents
are container offsets, so ``extents`` stay true), and it carries the opened, unlocked
pyfsapfs volume. :class:`~selective_imager.filesystems.apfs.ApfsFormat` detects exactly
that type, so no other backend is tried on it and no byte stream is mistaken for a
volume. The container object is a layer handle, closed with the disk.

Encrypted volumes are unlocked with the APFS credentials given (``apfs_password``,
``apfs_recovery_key``), each tried in turn; a volume none opens is reported ``locked``
and the other volumes go on. Facts pyfsapfs does not give (roles, case sensitivity,
snapshots) come from :mod:`selective_imager.volumes.apfs_meta`.

References:
    - Apple, "Apple File System Reference" (2020-06-22).
    - libyal libfsapfs, "Apple File System (APFS)" format documentation, and its
      Python binding (``pyfsapfs.container``, ``pyfsapfs.volume``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selective_imager.credentials import APFS_PASSWORD, APFS_RECOVERY_KEY
from selective_imager.errors import VolumeSystemError, short_error
from selective_imager.models import EncryptionInfo, EncryptionState, LayerRef
from selective_imager.streams import ByteStream, RangeStream
from selective_imager.volumes.apfs_meta import (
    ContainerFacts,
    VolumeFacts,
    is_apfs_container,
    read_container,
)
from selective_imager.volumes.base import Child, LayerResult, VolumeLayer

if TYPE_CHECKING:
    from selective_imager.credentials import Credential
    from selective_imager.volumes.base import LayerContext

_KINDS = (APFS_PASSWORD, APFS_RECOVERY_KEY)


class ApfsVolumeStream(ByteStream):
    """The container's bytes, carrying one opened pyfsapfs volume and its facts.

    Attributes:
        volume: the pyfsapfs volume (unlocked, or None when it stayed locked).
        index: 1-based position in the container.
        facts: what the volume superblock says.
        block_size: the container block size.
        locked_reason: why ``volume`` is None (no credential opened it).
    """

    def __init__(
        self,
        container: ByteStream,
        volume: Any,
        index: int,
        facts: VolumeFacts,
        block_size: int,
        locked_reason: str = "",
    ) -> None:
        super().__init__(container.size)
        self._container = container
        self.volume = volume
        self.index = index
        self.facts = facts
        self.block_size = block_size
        self.locked_reason = locked_reason

    def _read_at(self, offset: int, size: int) -> bytes:
        return self._container.read_at(offset, size)

    def __repr__(self) -> str:
        return f"ApfsVolumeStream(index={self.index}, identifier={self.facts.identifier!r})"


class _Container:
    """The pyfsapfs container handle, closed with the disk."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def close(self) -> None:
        if self.obj is not None:
            self.obj.close()
            self.obj = None


class ApfsLayer(VolumeLayer):
    """An APFS container (a GPT partition of type APFS, or a bare container image)."""

    name = "apfs"
    kind = "container"

    @classmethod
    def detect(cls, stream: ByteStream, context: LayerContext) -> bool:
        """The ``NXSB`` container superblock magic in block 0 (not on our own children,
        whose bytes are the container's)."""
        return not isinstance(stream, ApfsVolumeStream) and is_apfs_container(stream)

    @classmethod
    def open_layer(cls, stream: ByteStream, context: LayerContext) -> LayerResult:
        """One child per volume; a damaged container is the layer's one-line error."""
        import pyfsapfs

        try:
            facts = read_container(stream)
        except VolumeSystemError as exc:
            return LayerResult(error=str(exc))
        container = pyfsapfs.container()
        try:
            container.open_file_object(RangeStream(stream, 0, stream.size))
            count = container.get_number_of_volumes()
        except OSError as exc:
            return LayerResult(error=f"APFS: cannot open the container: {short_error(exc)}")
        handle = _Container(container)
        details = {"apfs_container": _container_details(facts)}
        children: list[Child] = []
        for i in range(count):
            try:
                children.append(cls._child(stream, container, i, facts, context))
            except OSError as exc:
                return LayerResult(
                    error=f"APFS: cannot open volume {i + 1}: {short_error(exc)}",
                    details=details,
                    handles=[handle],
                )
        return LayerResult(children=children, details=details, handles=[handle])

    @classmethod
    def _child(
        cls,
        stream: ByteStream,
        container: Any,
        i: int,
        facts: ContainerFacts,
        context: LayerContext,
    ) -> Child:
        volume = container.get_volume(i)
        identifier = str(volume.get_identifier())
        vfacts = next((v for v in facts.volumes if v.identifier == identifier), None)
        if vfacts is None:
            vfacts = VolumeFacts(identifier, str(volume.get_name() or ""), "none", False, False, 0)
        encryption = None
        if volume.is_locked():
            encryption, unlocked = _unlock(volume, identifier, context)
            if not unlocked:
                volume = None
        elif vfacts.encrypted:
            # Encrypted with a key the container itself holds (no user credential).
            encryption = EncryptionInfo(
                type="apfs",
                state=EncryptionState.UNLOCKED,
                volume_guid=identifier,
                unlocked_with="none needed",
            )
        expected = facts.block_count * facts.block_size
        problem = ""
        if expected > stream.size:
            problem = f"APFS container truncated: {stream.size} of {expected} bytes present"
        return Child(
            ApfsVolumeStream(
                stream,
                volume,
                i + 1,
                vfacts,
                facts.block_size,
                encryption.reason if encryption is not None and volume is None else "",
            ),
            LayerRef("apfs", i + 1, 0, identifier),
            problem=problem,
            encryption=encryption,
            details={"apfs_volume": _volume_details(i + 1, vfacts)},
        )


def _unlock(volume: Any, identifier: str, context: LayerContext) -> tuple[EncryptionInfo, bool]:
    """Try every APFS credential; the EncryptionInfo says which one worked, or why none."""
    given: list[Credential] = []
    if context.credentials is not None:
        where = context.volume if context.volume.scheme != "none" else None
        given = list(context.credentials.credentials_for(where, _KINDS))
    failures: list[str] = []
    for cred in given:
        try:
            if cred.kind == APFS_PASSWORD:
                volume.set_password(cred.secret)
            else:
                volume.set_recovery_password(cred.secret)
            if volume.unlock():
                return (
                    EncryptionInfo(
                        type="apfs",
                        state=EncryptionState.UNLOCKED,
                        volume_guid=identifier,
                        unlocked_with=cred.kind,
                    ),
                    True,
                )
            failures.append(f"{cred.describe()} did not unlock it")
        except OSError:
            # The library's message could quote the input: it is not passed on.
            failures.append(f"{cred.describe()}: rejected as malformed")
    reason = "; ".join(failures) or "no APFS password or recovery key given"
    locked = EncryptionInfo(
        type="apfs", state=EncryptionState.LOCKED, volume_guid=identifier, reason=reason
    )
    return locked, False


def _container_details(facts: ContainerFacts) -> dict[str, Any]:
    return {
        "identifier": facts.identifier,
        "block_size": facts.block_size,
        "block_count": facts.block_count,
        "xid": facts.xid,
        "volumes": len(facts.volumes),
    }


def _volume_details(index: int, facts: VolumeFacts) -> dict[str, Any]:
    return {
        "index": index,
        "identifier": facts.identifier,
        "name": facts.name,
        "role": facts.role,
        "case_sensitive": facts.case_sensitive,
        "encrypted": facts.encrypted,
        "snapshot_count": facts.snapshot_count,
        "snapshots": [s.as_dict() for s in facts.snapshots],
        "snapshot_problem": facts.problem or None,
    }

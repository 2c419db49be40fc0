"""From a source down to its file systems: the worklist over volume layers.

Shaped like dissect's volume loop: pop a stream; ask each layer of
:mod:`selective_imager.volumes.registry` whether it is there (a partition table, an
encrypted volume, shadow copies...); a layer's children go back on the list; a stream
no layer claims (or whose layer keeps it, as shadow copies do) gets its file system
opened. A volume that cannot be opened is recorded with a one-line reason and the
rest of the disk goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    volume_label,
)
from selective_imager.sources import Source, SourceOptions, open_source
from selective_imager.volumes.base import DiscoveryOptions, LayerContext
from selective_imager.volumes.registry import layers

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from selective_imager.credentials import CredentialProvider
    from selective_imager.filesystems.base import Filesystem
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.base import Child, LayerResult, VolumeLayer
    from selective_imager.volumes.partitions import VolumeSystem


@dataclass(frozen=True, slots=True)
class VolumeReport:
    """What was found on one volume: secret-free, ready for reports and manifests."""

    volume: VolumeInfo
    locator: Locator
    encryption: EncryptionInfo | None = None
    filesystem: FilesystemInfo | None = None
    error: str = ""
    note: str = ""
    snapshot: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``p3`` for partition 3, ``v0`` for an unpartitioned source, ``p3/vss2`` for
        its second shadow-copy store: the prefix of container paths."""
        return volume_label(self.locator) or f"v{self.volume.index}"

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
                "conversion": enc.conversion or None,
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
            "snapshot": self.snapshot,
            **self.details,
        }


@dataclass(slots=True)
class OpenVolume:
    """A volume with its live objects: the raw slice, the decrypted stream, the FS."""

    report: VolumeReport
    raw: ByteStream
    stream: ByteStream | None
    filesystem: Filesystem | None

    def close(self) -> None:
        """Close the file system (layer handles belong to the :class:`Disk`)."""
        if self.filesystem is not None:
            self.filesystem.close()
            self.filesystem = None


@dataclass(slots=True)
class Disk:
    """An opened source with every volume found on it."""

    source: Source
    table: VolumeSystem | None
    volumes: list[OpenVolume] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    options: DiscoveryOptions = field(default_factory=DiscoveryOptions)

    def volume(self, key: int | str) -> OpenVolume:
        """The volume numbered ``key`` (as ``info`` lists them), or labelled ``key``.

        A number names the volume itself, not one of its snapshots; a label
        (``p3``, ``p3/vss2``) names exactly one.

        Raises:
            KeyError: no such volume.
        """
        for vol in self.volumes:
            if isinstance(key, str) and not key.isdigit():
                if vol.report.label == key:
                    return vol
            elif vol.report.volume.index == int(key) and vol.report.snapshot is None:
                return vol
        raise KeyError(key)

    def selected(self, volumes: Sequence[int | str] | None) -> list[OpenVolume]:
        """The volumes ``volumes`` names (every volume for None), in disk order.

        A number (or a string of digits) names every volume of that partition or source
        (its APFS volumes and shadow copies too); a label (``p2/apfs1``) names one.
        """
        if volumes is None:
            return list(self.volumes)
        numbers = {int(k) for k in volumes if isinstance(k, int) or k.isdigit()}
        labels = {k for k in volumes if isinstance(k, str) and not k.isdigit()}
        return [
            v
            for v in self.volumes
            if v.report.volume.index in numbers or v.report.label in labels
        ]

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
                "chain": [c.as_dict() for c in info.chain],
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
        for handle in reversed(self.handles):
            handle.close()
        self.handles.clear()
        self.source.close()

    def __enter__(self) -> Disk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_disk(
    path: str | os.PathLike[str],
    credentials: CredentialProvider | None = None,
    options: DiscoveryOptions | None = None,
    source_options: SourceOptions | None = None,
) -> Disk:
    """Open a source and everything on it.

    Raises:
        SourceError: the source itself cannot be opened.
        VolumeSystemError: its partition table cannot be listed.
    """
    source = open_source(path, source_options)
    try:
        return discover(source, credentials, options)
    except BaseException:
        source.close()
        raise


@dataclass(frozen=True, slots=True)
class _Node:
    """One stream on the worklist, with how it was reached."""

    stream: ByteStream
    volume: VolumeInfo
    locator: Locator
    kinds: tuple[str, ...] = ()
    problem: str = ""
    encryption: EncryptionInfo | None = None
    snapshot: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


def discover(
    source: Source,
    credentials: CredentialProvider | None = None,
    options: DiscoveryOptions | None = None,
) -> Disk:
    """Find the volumes and file systems of an open source (the worklist)."""
    options = options or DiscoveryOptions()
    disk = Disk(source, None, options=options)
    whole = VolumeInfo(index=0, offset=0, size=source.info.size, scheme="none")
    work: list[_Node] = [_Node(source.stream, whole, (LayerRef("volume", 0, 0),))]
    while work:
        node = work.pop(0)
        if node.stream.size == 0:
            error = node.problem or "volume is empty or outside the source"
            disk.volumes.append(_leaf(node, error=error))
            continue
        context = LayerContext(
            volume=node.volume,
            sector_size=source.info.sector_size,
            depth=len(node.kinds),
            kinds_above=node.kinds,
            credentials=credentials,
            options=options,
        )
        layer = _detect_layer(node.stream, context)
        if layer is None:
            disk.volumes.append(_open_leaf(node))
            continue
        result = layer.open_layer(node.stream, context)
        disk.handles.extend(result.handles)
        if result.table is not None and disk.table is None and not node.kinds:
            disk.table = result.table
        children = [_child_node(node, layer, result, child) for child in result.children]
        if result.keep_parent:
            # The layer's facts (a store list) describe the parent it keeps.
            kept = replace(node, details={**node.details, **result.details})
            disk.volumes.append(_open_leaf(kept))
        elif result.error or (not children and result.encryption is not None):
            encrypted = replace(
                node,
                encryption=result.encryption or node.encryption,
                details={**node.details, **result.details},
            )
            disk.volumes.append(_leaf(encrypted, error=result.error))
        work[:0] = children
    return disk


def _detect_layer(stream: ByteStream, context: LayerContext) -> type[VolumeLayer] | None:
    for layer in layers():
        try:
            if layer.applies(context) and layer.detect(stream, context):
                return layer
        except (OSError, SelectiveImagerError):
            # The bytes it probes cannot be read (a bad sector, a source ending early):
            # not this layer, as far as can be told; opening the file system says why.
            continue
    return None


def _child_node(
    parent: _Node, layer: type[VolumeLayer], result: LayerResult, child: Child
) -> _Node:
    # Partitions of the source itself are named p1, p2... rather than v0/p1.
    base = parent.locator if parent.kinds else ()
    if layer.kind != "partition-table":
        base = parent.locator
    details = dict(parent.details)
    if result.details and not result.keep_parent:
        details.update(result.details)
    details.update(child.details)
    return _Node(
        stream=child.stream,
        volume=child.volume or parent.volume,
        locator=(*base, child.ref),
        kinds=(*parent.kinds, layer.kind),
        problem=_join(parent.problem, child.problem),
        encryption=child.encryption or result.encryption or parent.encryption,
        snapshot=child.snapshot or parent.snapshot,
        details=details,
    )


def _leaf(
    node: _Node,
    error: str = "",
    fs: Filesystem | None = None,
    note: str = "",
    stream: ByteStream | None = None,
) -> OpenVolume:
    locator = node.locator
    if fs is not None:
        locator = (*locator, LayerRef("filesystem", 0, 0, fs.info.type))
    report = VolumeReport(
        node.volume,
        locator,
        node.encryption,
        fs.info if fs is not None else None,
        error=_join(node.problem, error) if error else node.problem,
        note=note,
        snapshot=node.snapshot,
        details=node.details,
    )
    return OpenVolume(report, node.stream, node.stream if fs is not None else stream, fs)


def _open_leaf(node: _Node) -> OpenVolume:
    try:
        fs, note = open_filesystem(node.stream)
    except UnsupportedFilesystemError as exc:
        vol = node.volume
        what = vol.type_name or vol.type_id
        error = f"no supported file system recognised{f' ({what})' if what else ''}"
        if str(exc) != "no supported file system recognised":
            error = f"{exc}{f' ({what})' if what else ''}"
        if node.encryption is not None:
            error = "decrypted, but no supported file system recognised inside"
        return _leaf_with_stream(node, error)
    except (FilesystemError, SelectiveImagerError) as exc:
        return _leaf_with_stream(node, str(exc))
    try:
        declared = fs.declared_size()
    except (OSError, SelectiveImagerError):
        declared = None
    if declared is not None and declared > node.stream.size:
        # Without a partition table (or inside BitLocker) only the file system knows.
        cut = (
            f"image truncated: the {fs.info.type} volume is {declared} bytes, "
            f"{declared - node.stream.size} bytes past the end of what can be read; "
            "what lies before the end is still read"
        )
        note = f"{cut}; {note}" if note else cut
    return _leaf(node, fs=fs, note=note)


def _leaf_with_stream(node: _Node, error: str) -> OpenVolume:
    return _leaf(node, error=error, stream=node.stream)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)

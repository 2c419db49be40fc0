"""The volume-layer interface: a layer recognises itself on a stream and yields children.

A layer is anything between the source and a file system: a partition table (yields
its partitions), an encrypted volume (yields the decrypted volume), shadow copies
(yield one volume per store, beside the live volume), a container of volumes (APFS,
LVM). :mod:`selective_imager.discovery` runs the worklist: it pops a stream, asks the
layers of :mod:`selective_imager.volumes.registry` in order, and pushes the children
back, so nesting (BitLocker in a GPT partition in a VHDX) needs no special case.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from selective_imager.credentials import CredentialProvider
    from selective_imager.models import EncryptionInfo, LayerRef, VolumeInfo
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.partitions import VolumeSystem


@dataclass(frozen=True, slots=True)
class DiscoveryOptions:
    """What the user asked of discovery beyond credentials.

    Attributes:
        vss: open shadow-copy stores as volumes (False: only list them).
        vss_select: store indexes to open (1 = oldest); empty for all.
        vss_latest: open only the newest store.
        vss_since_ns: open only stores created at or after this time (ns since 1970).
    """

    vss: bool = False
    vss_select: tuple[int, ...] = ()
    vss_latest: bool = False
    vss_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class LayerContext:
    """What a layer may know about the stream it is asked about.

    Attributes:
        volume: the partition (or whole-source volume) the stream belongs to.
        sector_size: the source's logical sector size.
        depth: how many layers lie above (0 is the source itself).
        kinds_above: the ``kind`` of every layer above, outermost first.
        credentials: where to ask for secrets.
        options: discovery options (shadow-copy selection).
    """

    volume: VolumeInfo
    sector_size: int
    depth: int
    kinds_above: tuple[str, ...]
    credentials: CredentialProvider | None
    options: DiscoveryOptions = field(default_factory=DiscoveryOptions)


@dataclass(frozen=True, slots=True)
class Child:
    """One volume a layer yields.

    Attributes:
        stream: the child's bytes.
        ref: the step appended to the locator (``partition``, ``bitlocker``, ``vss``...).
        volume: the child's own volume facts (a partition); None to inherit the parent's.
        problem: a one-line problem of this child (overlap, beyond the source's end).
        snapshot: for a shadow-copy store or file-system snapshot: its secret-free facts
            (``index``, ``identifier``, ``creation_time``...); None for a live volume.
        encryption: this child's own encryption facts, when the children of one layer
            differ (the volumes of an APFS container); None to use the layer's.
        details: this child's own secret-free facts, added over the layer's.
    """

    stream: ByteStream
    ref: LayerRef
    volume: VolumeInfo | None = None
    problem: str = ""
    snapshot: dict[str, Any] | None = None
    encryption: EncryptionInfo | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LayerResult:
    """What opening a layer gave.

    Attributes:
        children: the volumes it yields, in order.
        keep_parent: the parent stream is also walked as it is (shadow copies are
            added beside the live volume; a partition table replaces its disk).
        encryption: for an encrypted volume, its secret-free facts (also when locked).
        details: secret-free facts for reports, keyed by the layer's name
            (``info --json`` puts them under the volume).
        error: why the layer yields nothing (locked, damaged); "" when it worked.
        handles: objects to close when the disk is closed (after the children).
        table: for a partition table, the table itself (``info`` shows the top one).
    """

    children: list[Child] = field(default_factory=list)
    keep_parent: bool = False
    encryption: EncryptionInfo | None = None
    table: VolumeSystem | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    handles: list[Any] = field(default_factory=list)


class VolumeLayer(ABC):
    """One volume format. ``detect`` must be position-safe (``read_at`` only)."""

    name: ClassVar[str]
    # partition-table, encryption, snapshots or container.
    kind: ClassVar[str]

    @classmethod
    def applies(cls, context: LayerContext) -> bool:
        """Whether to ask this layer at all here (e.g. no partition table in a partition)."""
        return True

    @classmethod
    @abstractmethod
    def detect(cls, stream: ByteStream, context: LayerContext) -> bool:
        """Whether ``stream`` holds this layer."""

    @classmethod
    @abstractmethod
    def open_layer(cls, stream: ByteStream, context: LayerContext) -> LayerResult:
        """Open the layer; errors of the volume itself go into ``LayerResult.error``.

        Raises:
            VolumeSystemError: a partition table is present but cannot be listed.
        """

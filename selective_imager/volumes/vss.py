"""Volume Shadow Copies as a volume layer: each selected store is a volume beside the live one.

References:
    - libyal libvshadow, "Volume Shadow Snapshot (VSS) format": the VSS volume header
      (the VSS identifier GUID at offset 0x1e00 of the NTFS volume), the catalog, the
      stores and their block descriptors (16 KiB blocks, "Reading snapshot data").

The stores are always listed (``LayerResult.details["shadow_copies"]``); they are
opened as volumes only when :class:`~selective_imager.volumes.base.DiscoveryOptions`
selects them. Index 1 is the oldest store. A store libvshadow cannot read is listed
with its reason and yields no volume; the live volume and the other stores go on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.errors import short_error
from selective_imager.models import LayerRef, Timestamp
from selective_imager.streams import ByteStream, LibyalStream, RangeStream
from selective_imager.volumes.base import Child, LayerResult, VolumeLayer

if TYPE_CHECKING:
    from selective_imager.volumes.base import DiscoveryOptions, LayerContext

# The VSS identifier (_VSP_DIFF_AREA_FILE_GUID), stored as a little-endian GUID.
VSS_IDENTIFIER = uuid.UUID("3808876b-c176-4e48-b7ae-04046e6cc752").bytes_le
VSS_HEADER_OFFSET = 0x1E00
# A store copies the volume in blocks of this size.
BLOCK_SIZE = 0x4000


def has_shadow_copies(stream: ByteStream) -> bool:
    """An NTFS boot sector with the VSS volume header at 0x1e00 (position-safe)."""
    if stream.read_at(3, 8) != b"NTFS    ":
        return False
    return stream.read_at(VSS_HEADER_OFFSET, 16) == VSS_IDENTIFIER


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """The secret-free facts of one store, as ``info`` lists them."""

    index: int
    identifier: str = ""
    copy_identifier: str = ""
    copy_set_identifier: str = ""
    creation_time: Timestamp | None = None
    in_volume_data: bool | None = None
    size: int = 0
    blocks: int | None = None
    error: str = ""

    def as_dict(self, selected: bool) -> dict[str, Any]:
        """The ``info --json`` form (under the volume's ``shadow_copies``)."""
        return {
            "index": self.index,
            "identifier": self.identifier,
            "copy_identifier": self.copy_identifier,
            "copy_set_identifier": self.copy_set_identifier,
            "creation_time": self.creation_time.isoformat() if self.creation_time else None,
            "in_volume_data": self.in_volume_data,
            "size": self.size,
            "blocks": self.blocks,
            "selected": selected and not self.error,
            "error": self.error or None,
        }

    def snapshot(self) -> dict[str, Any]:
        """What a store's volume carries as ``VolumeReport.snapshot``."""
        return {
            "type": "vss",
            "index": self.index,
            "identifier": self.identifier,
            "copy_identifier": self.copy_identifier,
            "creation_time": self.creation_time.isoformat() if self.creation_time else None,
            "in_volume_data": self.in_volume_data,
        }


class StoreStream(LibyalStream):
    """One store read through libvshadow, with its block list at hand.

    Attributes:
        store: the pyvshadow store (for its block descriptors).
        index: the store's 1-based index.
        count: how many stores the volume has (newer stores also hold this one's blocks).
    """

    def __init__(self, store: Any, size: int, index: int, count: int) -> None:
        super().__init__(store, size)
        self.store = store
        self.index = index
        self.count = count


def select_stores(stores: list[StoreFacts], options: DiscoveryOptions) -> set[int]:
    """The indexes of the stores to open as volumes, as the options ask."""
    if not options.vss:
        return set()
    readable = [s for s in stores if not s.error]
    chosen = {s.index for s in readable}
    if options.vss_select:
        chosen &= set(options.vss_select)
    if options.vss_since_ns is not None:
        since = options.vss_since_ns
        chosen &= {
            s.index for s in readable if s.creation_time and s.creation_time.ns >= since
        }
    if options.vss_latest:
        newest = max(
            (s for s in readable if s.index in chosen),
            key=lambda s: (s.creation_time.ns if s.creation_time else 0, s.index),
            default=None,
        )
        chosen = {newest.index} if newest is not None else set()
    return chosen


def _facts(store: Any, index: int) -> StoreFacts:
    """Read one store's facts; a store whose block list cannot be read gets an error."""
    identifier = copy_id = set_id = ""
    created: Timestamp | None = None
    try:
        identifier = str(store.identifier or "")
        copy_id = str(store.copy_identifier or "")
        set_id = str(store.copy_set_identifier or "")
        filetime = store.get_creation_time_as_integer()
        created = Timestamp.from_filetime(int(filetime)) if filetime else None
        in_volume = bool(store.has_in_volume_data())
        size = int(store.size)
        # Reading the block count reads (and checks) the store's block list; one
        # sector read checks that the store's data can be reached through it.
        blocks = int(store.number_of_blocks)
        store.read_buffer_at_offset(512, 0)
    except OSError as exc:
        return StoreFacts(
            index,
            identifier,
            copy_id,
            set_id,
            created,
            error=f"store {index} unreadable: {short_error(exc)}",
        )
    return StoreFacts(index, identifier, copy_id, set_id, created, in_volume, size, blocks)


class ShadowCopyLayer(VolumeLayer):
    """The shadow copies of an NTFS volume: the live volume stays, each store is added."""

    name = "vss"
    kind = "snapshots"

    @classmethod
    def applies(cls, context: LayerContext) -> bool:
        """Not inside a store: a store's copy of the VSS header names the same stores."""
        return "snapshots" not in context.kinds_above

    @classmethod
    def detect(cls, stream: ByteStream, context: LayerContext) -> bool:
        """The VSS identifier at 0x1e00 of an NTFS volume (two small reads)."""
        return has_shadow_copies(stream)

    @classmethod
    def open_layer(cls, stream: ByteStream, context: LayerContext) -> LayerResult:
        """List every store; open the selected ones as children of the live volume."""
        import pyvshadow

        volume = pyvshadow.volume()
        # Its own position: the live file system reads the same stream.
        view = RangeStream(stream, 0, stream.size)
        try:
            volume.open_file_object(view)
            count = int(volume.number_of_stores)
        except OSError as exc:
            reason = f"shadow copies present but unreadable: {short_error(exc)}"
            return LayerResult(
                keep_parent=True,
                details={"shadow_copies": [], "shadow_copies_error": reason},
            )
        stores: list[StoreFacts] = []
        handles: dict[int, Any] = {}
        for i in range(count):
            try:
                store = volume.get_store(i)
            except OSError as exc:
                stores.append(StoreFacts(i + 1, error=f"store {i + 1}: {short_error(exc)}"))
                continue
            facts = _facts(store, i + 1)
            stores.append(facts)
            if not facts.error:
                handles[facts.index] = store
        chosen = select_stores(stores, context.options)
        children = [
            Child(
                StoreStream(handles[s.index], s.size, s.index, count),
                LayerRef("vss", s.index, 0, s.identifier),
                snapshot=s.snapshot(),
            )
            for s in stores
            if s.index in chosen
        ]
        listing = [s.as_dict(s.index in chosen) for s in stores]
        return LayerResult(
            children=children,
            keep_parent=True,
            details={"shadow_copies": listing},
            handles=[_Closer(volume, view)],
        )


class _Closer:
    """Closes the pyvshadow volume (after the stores' file systems) when the disk closes."""

    def __init__(self, volume: Any, view: ByteStream) -> None:
        self._volume = volume
        self._view = view

    def close(self) -> None:
        if self._volume is not None:
            self._volume.close()
            self._volume = None

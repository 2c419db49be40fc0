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
from dataclasses import dataclass, replace
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
            "selected": selected,
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


class StoreSet:
    """The stores of one volume: which volume blocks read differently in each store.

    A store is read by applying the newer stores' blocks and then its own over the
    live volume ("Reading snapshot data"), so store ``i`` differs from the live volume
    only in blocks some store ``j >= i`` holds a descriptor for, plus, in the newest
    store only, blocks its current bitmap flags as not in use (libvshadow zero-fills
    them). Everything else is read from the live volume at the same offset.
    """

    def __init__(self, volume: Any, live: ByteStream, identifiers: dict[int, str]) -> None:
        self._volume = volume
        self._live = live
        self._identifiers = identifiers
        self.count = int(volume.number_of_stores)
        # block number -> the newest store holding it; built on first use.
        self._holder: dict[int, int] | None = None
        # stores at or below this index have an unreadable newer block list.
        self._unknown_upto = 0
        self._unused: set[int] | None = None
        self.problem = ""

    def _build(self) -> dict[int, int]:
        holder: dict[int, int] = {}
        for i in range(self.count):
            try:
                store = self._volume.get_store(i)
                for k in range(int(store.number_of_blocks)):
                    block = int(store.get_block(k).original_offset) // BLOCK_SIZE
                    holder[block] = i + 1
            except OSError as exc:
                self._unknown_upto = i + 1
                self.problem = f"store {i + 1} block list unreadable: {short_error(exc)}"
        return holder

    def _newest_unused(self) -> set[int]:
        """Blocks the newest store's current bitmap flags as not in use (read as zeros)."""
        try:
            return _unused_blocks(self._live, self._identifiers.get(self.count, ""))
        except (OSError, ValueError) as exc:
            self.problem = f"store {self.count} bitmap unreadable: {exc}"
            self._unknown_upto = max(self._unknown_upto, self.count)
            return set()

    def live_at(self, offset: int, size: int) -> bytes:
        """Bytes of the live volume."""
        return self._live.read_at(offset, size)

    def unchanged(self, index: int, ranges: list[tuple[int, int]]) -> bool:
        """Whether store ``index`` reads every ``(offset, length)`` range as the live volume."""
        if self._holder is None:
            self._holder = self._build()
            self._unused = self._newest_unused()
        if index <= self._unknown_upto:
            return False
        holder = self._holder
        unused = self._unused if index == self.count else None
        for offset, length in ranges:
            if length <= 0:
                continue
            for block in range(offset // BLOCK_SIZE, (offset + length - 1) // BLOCK_SIZE + 1):
                if holder.get(block, 0) >= index or (unused and block in unused):
                    return False
        return True


def _unused_blocks(live: ByteStream, identifier: str) -> set[int]:
    """The blocks flagged "not in use" in a store's current bitmap (catalog entry type 3).

    Raises:
        ValueError: the catalog or the bitmap is not where the VSS header says.
    """
    if not identifier:
        raise ValueError("no store identifier")
    wanted = uuid.UUID(identifier).bytes_le
    header = live.read_at(VSS_HEADER_OFFSET, 64)
    catalog = int.from_bytes(header[48:56], "little")
    bitmap_offset = 0
    seen = 0
    while catalog and seen < 1024 and not bitmap_offset:
        block = live.read_at(catalog, BLOCK_SIZE)
        if len(block) < BLOCK_SIZE or block[:16] != VSS_IDENTIFIER:
            raise ValueError(f"no catalog block at {catalog}")
        for pos in range(128, BLOCK_SIZE, 128):
            entry = block[pos : pos + 128]
            if int.from_bytes(entry[:8], "little") == 3 and entry[16:32] == wanted:
                bitmap_offset = int.from_bytes(entry[48:56], "little")
                break
        catalog = int.from_bytes(block[40:48], "little")
        seen += 1
    if not bitmap_offset:
        raise ValueError("store not in the catalog")
    unused: set[int] = set()
    bit = 0
    seen = 0
    while bitmap_offset and seen < 1 << 20:
        block = live.read_at(bitmap_offset, BLOCK_SIZE)
        if len(block) < BLOCK_SIZE or block[:16] != VSS_IDENTIFIER:
            raise ValueError(f"no bitmap block at {bitmap_offset}")
        for byte in block[128:]:
            if byte:
                unused.update(bit + k for k in range(8) if byte >> k & 1)
            bit += 8
        bitmap_offset = int.from_bytes(block[40:48], "little")
        seen += 1
    return unused


class StoreStream(LibyalStream):
    """One store read through libvshadow, with the volume's other stores at hand.

    Attributes:
        index: the store's 1-based index.
        stores: every store of the volume (which blocks each one changes).
    """

    def __init__(self, store: Any, size: int, index: int, stores: StoreSet) -> None:
        super().__init__(store, size)
        self.index = index
        self.stores = stores

    def unchanged(self, ranges: list[tuple[int, int]]) -> bool:
        """Whether this store reads every ``(offset, length)`` range as the live volume."""
        return self.stores.unchanged(self.index, ranges)

    def same_as_live(self, offset: int, size: int) -> bool:
        """Whether these bytes read the same in this store and on the live volume (reads both)."""
        mine = self.read_at(offset, size)
        return len(mine) == size and mine == self.stores.live_at(offset, size)


def select_stores(stores: list[StoreFacts], options: DiscoveryOptions) -> set[int]:
    """The indexes of the stores the options ask for (an unreadable one is not opened)."""
    if not options.vss:
        return set()
    readable = stores
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
    """Read one store's facts; a store whose catalog facts or block list cannot be read
    gets an error (with whatever facts were read before)."""
    facts = StoreFacts(index)
    try:
        filetime = store.get_creation_time_as_integer()
        facts = StoreFacts(
            index,
            identifier=str(store.identifier or ""),
            copy_identifier=str(store.copy_identifier or ""),
            copy_set_identifier=str(store.copy_set_identifier or ""),
            creation_time=Timestamp.from_filetime(int(filetime)) if filetime else None,
            in_volume_data=bool(store.has_in_volume_data()),
            size=int(store.size),
        )
    except OSError as exc:
        return replace(facts, error=f"store {index}: catalog entry unreadable: {short_error(exc)}")
    try:
        # Reading the block count reads (and checks) the store's block list; one
        # sector read checks that the store's data can be reached through it.
        blocks = int(store.number_of_blocks)
        store.read_buffer_at_offset(512, 0)
    except OSError as exc:
        return replace(facts, error=f"store {index}: block list unreadable: {short_error(exc)}")
    return replace(facts, blocks=blocks)


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
        store_set = StoreSet(volume, view, {s.index: s.identifier for s in stores})
        children = [
            Child(
                StoreStream(handles[s.index], s.size, s.index, store_set),
                LayerRef("vss", s.index, 0, s.identifier),
                snapshot=s.snapshot(),
            )
            for s in stores
            if s.index in chosen and not s.error
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

"""Shadow-copy items that are the live file: recorded as duplicates without being read.

A store shares every block it did not copy with the live volume. An item of a store
whose data runs lie only in blocks no store changed, whose MFT record lies in such a
block or reads byte for byte as the live record at the same place, and whose entry,
sequence and runs equal those of an item already collected from the live volume, has
exactly the live item's bytes: its record is a ``duplicate`` of the live member, and
neither its content nor the live file is read again. Which blocks a store changes is
:meth:`selective_imager.volumes.vss.StoreSet.unchanged`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.errors import PathNotFoundError, SelectiveImagerError
from selective_imager.volumes.vss import StoreStream

if TYPE_CHECKING:
    from selective_imager.discovery import OpenVolume
    from selective_imager.filesystems.base import Filesystem
    from selective_imager.models import Extent, Locator
    from selective_imager.selection.matcher import Match

_RunKey = tuple[tuple[int | None, int, bool, bool], ...]
# Live items kept per run (~300 bytes each); past this the later ones are simply read
# again from the stores that hold them.
MAX_LIVE_ITEMS = 200_000


@dataclass(frozen=True, slots=True)
class LiveItem:
    """What a store item needs of the live item it may be.

    Attributes:
        member: the container member holding the content.
        hashes: its digests.
        size: the logical size.
        runs: the data runs, as compared.
        record: where the live MFT record lies on the volume (offset, length).
        label: the live volume's label.
    """

    member: str
    hashes: dict[str, str]
    size: int
    runs: _RunKey
    record: tuple[int, int]
    label: str


def _volume_key(locator: Locator) -> tuple[tuple[str, int, str], ...]:
    """The locator without the store and file-system steps: the live volume's identity."""
    return tuple(
        (ref.kind, ref.index, ref.identifier)
        for ref in locator
        if ref.kind not in ("vss", "filesystem")
    )


def _run_key(extents: tuple[Extent, ...]) -> _RunKey:
    return tuple((e.volume_offset, e.length, e.sparse, e.compressed) for e in extents)


class LiveIndex:
    """Live items of volumes whose shadow copies are collected (at most MAX_LIVE_ITEMS)."""

    def __init__(self) -> None:
        self._items: dict[tuple[Any, ...], LiveItem] = {}
        # id(filesystem) -> ($MFT extents, record size), or None for "cannot locate".
        self._mft: dict[int, tuple[tuple[Extent, ...], int] | None] = {}

    def remember(
        self,
        vol: OpenVolume,
        m: Match,
        extents: tuple[Extent, ...],
        member: str,
        hashes: dict[str, str],
    ) -> None:
        """Keep a collected live item of a volume with shadow copies."""
        report = vol.report
        fs = vol.filesystem
        if report.snapshot is not None or len(self._items) >= MAX_LIVE_ITEMS:
            return
        stores = report.details.get("shadow_copies") or ()
        if not any(s["selected"] and not s["error"] for s in stores):
            return  # no store of this volume is collected
        if fs is None or m.entry.entry is None:
            return
        record = self._record_range(vol, fs, m.entry.entry)
        if record is None:
            return
        key = (_volume_key(report.locator), m.entry.entry, m.entry.sequence, m.stream)
        self._items[key] = LiveItem(
            member, dict(hashes), m.size, _run_key(extents), record, report.label
        )

    def find(self, vol: OpenVolume, m: Match, extents: tuple[Extent, ...]) -> LiveItem | None:
        """The live item a store item is, if its bytes cannot differ; else None."""
        stream = vol.raw
        fs = vol.filesystem
        if not isinstance(stream, StoreStream) or fs is None or m.entry.entry is None:
            return None
        key = (_volume_key(vol.report.locator), m.entry.entry, m.entry.sequence, m.stream)
        live = self._items.get(key)
        if live is None or live.size != m.size or live.runs != _run_key(extents):
            return None
        record = self._record_range(vol, fs, m.entry.entry)
        if record is None or record != live.record:
            return None
        ranges = [(e.volume_offset, e.length) for e in extents if e.volume_offset is not None]
        if not stream.unchanged(ranges):
            return None
        # The record's block may have been copied for a neighbour's sake: then compare
        # the record itself (1 KiB from each side; its LSN changes on every update).
        if not stream.unchanged([record]) and not stream.same_as_live(*record):
            return None
        return live

    def _record_range(self, vol: OpenVolume, fs: Filesystem, entry: int) -> tuple[int, int] | None:
        """Where MFT record ``entry`` lies on the volume, through this file system's $MFT."""
        if id(fs) not in self._mft:
            self._mft[id(fs)] = _mft_layout(vol, fs)
        layout = self._mft[id(fs)]
        if layout is None:
            return None
        extents, size = layout
        at = entry * size
        for ext in extents:
            if ext.volume_offset is not None and ext.logical_offset <= at < ext.logical_offset + (
                ext.length
            ):
                if at + size > ext.logical_offset + ext.length:
                    return None  # a record split over two runs: not worth the care
                return ext.volume_offset + at - ext.logical_offset, size
        return None

    def forget(self, vol: OpenVolume) -> None:
        """Drop the cached $MFT layout of a volume that is done."""
        if vol.filesystem is not None:
            self._mft.pop(id(vol.filesystem), None)


def _mft_layout(vol: OpenVolume, fs: Filesystem) -> tuple[tuple[Extent, ...], int] | None:
    """The $MFT's runs and the record size (NTFS boot sector), or None."""
    if vol.report.filesystem is None or vol.report.filesystem.type != "ntfs":
        return None
    stream = vol.stream or vol.raw
    boot = stream.read_at(0, 512)
    if len(boot) < 512:
        return None
    cluster = int.from_bytes(boot[11:13], "little") * boot[13]
    raw = int.from_bytes(boot[64:65], "little", signed=True)
    size = 1 << -raw if raw < 0 else raw * cluster
    if size <= 0:
        return None
    try:
        extents = fs.extents(fs.lookup("$MFT"))
    except (PathNotFoundError, SelectiveImagerError):
        return None
    return extents, size



def bytes_on_disk(extents: tuple[Extent, ...], size: int) -> int:
    """The bytes reading a stream takes: its allocated runs within its size (resident: size)."""
    if not extents:
        return size
    return sum(
        max(0, min(e.length, size - e.logical_offset))
        for e in extents
        if e.volume_offset is not None
    )

"""Re-read every collected item from the source and compare it with the manifest.

This is ``verify --source``: it answers "does the evidence still say what the
container says it said" — each item is looked up again by volume and path, hashed
with the algorithms the manifest recorded, and the whole disk is re-hashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.collect.hashing import MultiHasher, hash_source
from selective_imager.collect.outcome import CONTENT_OUTCOMES
from selective_imager.container.seal import MANIFEST_NAME
from selective_imager.errors import SelectiveImagerError

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    from selective_imager.discovery import Disk

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class SourceDifference:
    """One item (or the disk) whose source bytes no longer match the record."""

    what: str
    kind: str
    expected: str | None = None
    found: str | None = None
    detail: str = ""


def reverify_items(
    disk: Disk, records: Iterable[dict[str, Any]]
) -> tuple[int, list[SourceDifference]]:
    """Re-hash each manifest record's stream on ``disk``; returns (checked, differences)."""
    differences: list[SourceDifference] = []
    checked = 0
    for rec in records:
        if rec.get("outcome") not in CONTENT_OUTCOMES:
            continue
        label = f"{rec.get('volume_label', rec.get('volume'))}/{rec['path']}" + (
            f":{rec['stream']}" if rec.get("stream") else ""
        )
        expected: dict[str, str] = rec.get("hashes") or {}
        try:
            # A shadow-copy item is looked up in its store (the disk opened with --vss).
            key = rec["volume_label"] if rec.get("vss") else int(rec["volume"])
            vol = disk.volume(key)
        except (KeyError, ValueError):
            differences.append(SourceDifference(label, "missing", detail="volume not found"))
            continue
        fs = vol.filesystem
        if fs is None:
            differences.append(
                SourceDifference(label, "unreadable", detail=vol.report.error or "no file system")
            )
            continue
        try:
            entry = fs.lookup(rec["path"])
            stream = fs.open_stream(entry, rec.get("stream", ""))
            hasher = MultiHasher(tuple(expected) or ("sha256",))
            offset = 0
            while offset < stream.size:
                data = stream.read_at(offset, _CHUNK)
                if not data:
                    break
                hasher.update(data)
                offset += len(data)
        except SelectiveImagerError as exc:
            differences.append(SourceDifference(label, "unreadable", detail=str(exc)))
            continue
        checked += 1
        found = hasher.hexdigests()
        for alg, value in expected.items():
            if found.get(alg) != value:
                differences.append(SourceDifference(label, "modified", value, found.get(alg), alg))
    return checked, differences


def reverify_disk(disk: Disk, acquisition: dict[str, Any]) -> list[SourceDifference]:
    """Re-hash the whole source and compare with ``acquisition.json``'s disk hash."""
    recorded = acquisition.get("disk_hash") or {}
    digests: dict[str, str] = recorded.get("digests") or {}
    if not digests:
        return []
    result = hash_source(
        disk.source.stream,
        tuple(digests),
        piece_size=int(recorded.get("piece_size") or 0),
        sector_size=disk.source.info.sector_size,
    )
    differences: list[SourceDifference] = []
    found = result.digests.as_dict() if result.digests else {}
    for alg, value in digests.items():
        if found.get(alg) != value:
            differences.append(SourceDifference("disk", "modified", value, found.get(alg), alg))
    pieces = {p["index"]: p["sha256"] for p in recorded.get("pieces", [])}
    for piece in result.pieces:
        if piece.index in pieces and pieces[piece.index] != piece.sha256:
            differences.append(
                SourceDifference(
                    f"disk piece {piece.index} [{piece.offset}, {piece.offset + piece.length})",
                    "modified",
                    pieces[piece.index],
                    piece.sha256,
                    "sha256",
                )
            )
    return differences


def reverify_container(
    container: str | os.PathLike[str], disk: Disk, *, identities: list[Any] | None = None
) -> tuple[int, list[SourceDifference], list[SourceDifference]]:
    """Re-read every item of ``container``'s manifest and the disk hash from ``disk``.

    ``identities`` open an age-encrypted container.

    Returns:
        The number of items re-read, the item differences and the disk-hash differences.
    """
    import json

    from selective_imager.container.reader import open_container

    with open_container(container, identities) as box:
        records = [
            json.loads(line) for line in box.read(MANIFEST_NAME).decode("utf-8").splitlines() if line
        ]
        acquisition = box.acquisition() or {}
    checked, item_diffs = reverify_items(disk, records)
    return checked, item_diffs, reverify_disk(disk, acquisition)

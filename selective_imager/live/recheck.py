"""Did an item change while it was read? Its record read again from the device.

A mounted file system goes on changing while the collection reads its device. After
an item's copy, its record (entry number, sequence, size, the times that move on a
write) is read again through a file system freshly opened on the same device
stream, so no cache of the first opening (The Sleuth Kit's block cache, libfsntfs's
MFT cache) hides the change, and compared with the record the copy started from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.errors import PathNotFoundError, SelectiveImagerError
from selective_imager.filesystems.registry import open_filesystem

if TYPE_CHECKING:
    from selective_imager.discovery import OpenVolume
    from selective_imager.filesystems.base import Filesystem
    from selective_imager.models import FileEntry
    from selective_imager.selection.matcher import Match


@dataclass(slots=True)
class Change:
    """What changed, and the fresh file system and match to read the item again from.

    Attributes:
        differences: field -> ``[before, after]``.
        match: the item as the fresh record describes it (None: it is gone).
        filesystem: the fresh opening (close it when done).
    """

    differences: dict[str, list[Any]]
    match: Match | None
    filesystem: Filesystem | None

    def close(self) -> None:
        """Close the fresh file system."""
        if self.filesystem is not None:
            self.filesystem.close()
            self.filesystem = None


def record_fingerprint(entry: FileEntry, stream: str) -> dict[str, Any]:
    """The fields of a record that a write, truncation, rename or reuse changes."""
    si = entry.si or entry.times
    return {
        "entry": entry.entry,
        "sequence": entry.sequence,
        "size": entry.stream_size(stream) if stream else entry.size,
        "allocated_size": entry.allocated_size,
        "allocated": entry.allocated,
        "modified": si.modified.isoformat() if si and si.modified else None,
        "changed": si.changed.isoformat() if si and si.changed else None,
    }


class RecordRecheck:
    """The collector's re-check callback for items read from a live device."""

    def check(self, vol: OpenVolume, match: Match) -> Change | None:
        """None when the record reads as before, else what changed.

        A record that cannot be read again (the file was deleted, the volume no
        longer opens) is a change too.
        """
        stream = vol.stream if vol.stream is not None else vol.raw
        before = record_fingerprint(match.entry, match.stream)
        try:
            fs, _note = open_filesystem(stream)
        except SelectiveImagerError as exc:
            return Change({"reopen": [None, str(exc)]}, None, None)
        try:
            fresh = fs.lookup(match.entry.path)
            after = record_fingerprint(fresh, match.stream)
        except (PathNotFoundError, KeyError):
            fs.close()
            return Change({"path": [match.entry.path, None]}, None, None)
        except SelectiveImagerError as exc:
            fs.close()
            return Change({"lookup": [None, str(exc)]}, None, None)
        diff = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        if not diff:
            fs.close()
            return None
        # The matcher's extras (rules, targets) stay; the record is the fresh one.
        return Change(diff, dataclasses.replace(match, entry=fresh), fs)

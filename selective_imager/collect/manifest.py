"""The per-item manifest records and the run log, journaled as they happen.

A sequential ZIP cannot interleave members, so ``manifest.jsonl`` and ``log.jsonl``
are appended line by line to journal files beside the container while items complete
(flushed each line: a crash loses nothing already recorded). When the container is
finalised they are copied in as members and the journals removed.

While a run writes a journal it holds an exclusive ``flock`` on it (POSIX), so
``recover`` and ``--resume`` can tell a killed run from one still going.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager.errors import ContainerError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from selective_imager.discovery import VolumeReport
    from selective_imager.models import Extent
    from selective_imager.selection.matcher import Match


def utc_now() -> str:
    """Current time, ISO 8601 UTC with microseconds."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


MANIFEST_JOURNAL_SUFFIX = ".manifest.jsonl.part"
LOG_JOURNAL_SUFFIX = ".log.jsonl.part"


def journal_paths(output: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The manifest and log journals of a run writing ``output``."""
    out = Path(output)
    return (
        out.with_name(out.name + MANIFEST_JOURNAL_SUFFIX),
        out.with_name(out.name + LOG_JOURNAL_SUFFIX),
    )


def journal_in_use(path: Path) -> bool:
    """Whether a running collection holds ``path`` (its lock is taken)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


class Journal:
    """An append-only JSON-lines file, flushed after every record.

    Args:
        path: the journal file.
        append: continue an existing journal (``--resume``) instead of creating one.
    """

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        # Closed in close().
        self._file = open(path, "a" if append else "x", encoding="utf-8")  # noqa: SIM115
        if fcntl is not None:
            # Held until close: recover/--resume refuse a journal a live run writes.
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.count = 0

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line.

        Raises:
            ContainerError: the journal cannot be written (it lives beside the output).
        """
        try:
            self._file.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
            self._file.flush()
        except OSError as exc:
            raise ContainerError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.count += 1

    def sync(self) -> None:
        """Force what was written to stable storage.

        Raises:
            ContainerError: the journal cannot be written.
        """
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise ContainerError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Close the file (kept on disk)."""
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise ContainerError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        finally:
            # After a failed flush, closing fails the same way; the error above is the one.
            with contextlib.suppress(OSError):
                self._file.close()

    def remove(self) -> None:
        """Close and delete the journal (after it was copied into the container)."""
        self.close()
        self.path.unlink(missing_ok=True)


def data_runs(extents: tuple[Extent, ...], volume_offset: int | None) -> list[dict[str, Any]]:
    """Cluster runs as JSON: logical offset, volume offset, length, and disk offset.

    ``disk_offset`` (the byte offset in the source) is given when the volume is not
    encrypted; inside BitLocker the volume offset refers to the decrypted volume.
    """
    runs = []
    for ext in extents:
        run: dict[str, Any] = {
            "logical_offset": ext.logical_offset,
            "length": ext.length,
            "volume_offset": ext.volume_offset,
        }
        if ext.sparse:
            run["sparse"] = True
        if ext.compressed:
            run["compressed"] = True
        if volume_offset is not None and ext.volume_offset is not None:
            run["disk_offset"] = volume_offset + ext.volume_offset
        runs.append(run)
    return runs


def item_record(
    match: Match,
    volume: VolumeReport,
    *,
    container_path: str,
    outcome: str,
    error: str | None,
    hashes: dict[str, str] | None,
    runs: list[dict[str, Any]] | None,
    sparse: dict[str, Any] | None = None,
    unreadable: list[tuple[int, int]] | None = None,
    bytes_read: int | None = None,
    unchanged_from: str | None = None,
) -> dict[str, Any]:
    """One ``manifest.jsonl`` object for a collected (or failed) item.

    ``unchanged_from`` names the live volume when a shadow-copy item was recorded as
    the live file without being read (its blocks and MFT record are not in the store).
    """
    entry = match.entry
    record: dict[str, Any] = {
        "path": entry.path,
        "stream": match.stream,
        "volume": volume.volume.index,
        "volume_label": volume.label,
        "vss": vss_record(volume.snapshot),
        "container_path": container_path,
        "size": match.size,
        "allocated_size": entry.allocated_size if not match.stream else None,
        "hashes": hashes,
        "rules": list(match.rules),
        "targets": list(match.targets),
        "requested_rules": list(match.requested),
        "outcome": outcome,
        "error": error,
        "filesystem": volume.filesystem.type if volume.filesystem else None,
        "entry": entry.entry,
        "sequence": entry.sequence,
        "parent_entry": entry.parent_entry,
        "parent_sequence": entry.parent_sequence,
        "allocated": entry.allocated,
        "attributes": list(entry.attributes),
        "attribute_flags": entry.attribute_flags,
        "streams": [{"name": s.name, "size": s.size} for s in entry.streams],
        "resident": entry.resident if not match.stream else None,
        "data_runs": runs,
    }
    if entry.si is not None or entry.fn is not None:
        record["timestamps"] = {
            "si": entry.si.as_dict() if entry.si else None,
            "fn": entry.fn.as_dict() if entry.fn else None,
            "i30": entry.i30.as_dict() if entry.i30 else None,
        }
    else:
        record["timestamps"] = {"times": entry.times.as_dict("changed") if entry.times else None}
    if entry.links is not None:
        record["links"] = entry.links
    if entry.link_target:
        record["link_target"] = entry.link_target
    if entry.mode is not None:
        record["mode"] = entry.mode
        record["uid"] = entry.uid
        record["gid"] = entry.gid
    if sparse is not None:
        record["sparse"] = sparse
    if unreadable:
        record["unreadable"] = [[o, n] for o, n in unreadable]
    if bytes_read is not None:
        record["bytes_read"] = bytes_read
    if unchanged_from is not None:
        record["unchanged_from"] = unchanged_from
    return record


def vss_record(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where an item came from: None for the live volume, else its shadow-copy store."""
    if snapshot is None or snapshot.get("type") != "vss":
        return None
    return {
        "index": snapshot["index"],
        "identifier": snapshot["identifier"],
        "creation_time": snapshot["creation_time"],
    }

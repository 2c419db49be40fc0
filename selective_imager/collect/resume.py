"""What an output path may be used for, and continuing an unfinished collection.

Evidence is never destroyed: a partial container, or journals of a run that did not
finish, are never deleted or overwritten (``--force`` may replace only a finished,
sealed container). Such an output is either rebuilt with ``recover`` or continued
with ``collect --resume``.

Resuming checks that the source is the one the container was collected from (its
size, the SHA-256 of its first and last MiB, and the volume layout), verifies the
container, keeps every content member and the records of the items stored in them,
and hands the collector the rest: which items are done, which member holds which
content, and where in the file to continue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from selective_imager.collect.acquisition import sentinel
from selective_imager.collect.manifest import journal_paths
from selective_imager.collect.outcome import CONTENT_OUTCOMES
from selective_imager.container.names import FILES_PREFIX
from selective_imager.container.reader import ManifestItem, open_container, verify
from selective_imager.container.recover import (
    finished_status,
    needs_recovery,
    recover,
    scan_local_headers,
)
from selective_imager.container.seal import LOG_NAME
from selective_imager.container.zipwriter import MemberInfo
from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from pathlib import Path

    from selective_imager.discovery import Disk

# Items whose content is stored (intact, or as well as the source allowed): not redone.
_DONE = CONTENT_OUTCOMES


class NothingToResume(ContainerError):
    """The container is already complete."""


def source_fingerprint(disk: Disk, sentinel_value: str | None = None) -> dict[str, Any]:
    """What identifies the source for ``--resume``: size, sentinel, volume layout."""
    return {
        "size": disk.source.info.size,
        "sentinel_sha256": sentinel_value if sentinel_value is not None else sentinel(disk),
        "volumes": [
            [v.report.volume.index, v.report.volume.offset, v.report.volume.size]
            for v in disk.volumes
        ],
    }


def check_output(output: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse an output whose use would destroy evidence.

    Raises:
        ContainerError: journals of an unfinished run lie beside it (without
            ``resume``), or it exists and is not a finished container (``overwrite``),
            or it exists at all (neither).
    """
    if resume:
        return
    journals = [p for p in journal_paths(output) if p.exists()]
    if journals:
        names = ", ".join(p.name for p in journals)
        raise ContainerError(
            f"{output}: journals of an unfinished run lie beside it ({names}); nothing was "
            f"deleted: run `selective-imager recover {output}`, or collect again with --resume"
        )
    if not output.exists():
        return
    if not overwrite:
        raise ContainerError(f"{output}: exists (use --force to replace a finished container)")
    if finished_status(output) is None:
        raise ContainerError(
            f"{output}: not a finished container (a killed run's partial container?): it is "
            f"not replaced, even with --force; run `selective-imager recover {output}`, or "
            "collect again with --resume"
        )


@dataclass(slots=True)
class ResumeState:
    """What the collector continues from.

    Attributes:
        output: the container.
        end: offset where writing continues (after the last content member).
        members: the content members kept, as the ZIP writer records them.
        records: manifest records carried over (items stored intact).
        superseded: records of items that are collected again (failed, skipped).
        log: the earlier run's log records.
        acquisition: the earlier ``acquisition.json``.
        recovered: ``recover`` ran first (the run had been killed).
        done: ``(volume label, path, stream)`` of every item carried over.
    """

    output: Path
    end: int
    members: tuple[MemberInfo, ...]
    records: list[dict[str, Any]]
    superseded: list[dict[str, Any]]
    log: list[dict[str, Any]]
    acquisition: dict[str, Any]
    recovered: bool
    done: set[tuple[str, str, str]] = field(default_factory=set)


def item_key(record: dict[str, Any]) -> tuple[str, str, str]:
    """The identity of an item across runs: volume label (``p3``, ``p3/vss2``), path, stream."""
    return (
        str(record.get("volume_label") or record.get("volume", "")),
        str(record.get("path", "")),
        str(record.get("stream") or ""),
    )


def _same_source(recorded: Any, current: dict[str, Any]) -> str | None:
    """Why the source differs from the recorded one, or None when it is the same."""
    if not isinstance(recorded, dict):
        return "the container records no source fingerprint (made by an older version?)"
    if recorded.get("size") != current["size"]:
        return f"size {current['size']} bytes, the container's source had {recorded.get('size')}"
    if recorded.get("sentinel_sha256") != current["sentinel_sha256"]:
        return "its first or last MiB differ from the container's source"
    if [list(v) for v in recorded.get("volumes") or []] != current["volumes"]:
        return "its volume layout differs from the container's source"
    return None


def prepare_resume(disk: Disk, output: Path) -> ResumeState | None:
    """Make ``output`` ready to be continued; None when it does not exist (a new run).

    Raises:
        NothingToResume: the container is already complete.
        ContainerError: not a container of this tool, not intact, collected from
            another source, or laid out unlike this tool's containers.
    """
    recovered = False
    if needs_recovery(output):
        recover(output)
        recovered = True
    if not output.exists():
        return None
    status = finished_status(output)
    if status is None:
        raise ContainerError(f"{output}: not a selective-imager container: nothing to resume")
    if status == "complete":
        raise NothingToResume(f"{output} is already complete: nothing to resume")
    checked = verify(output)
    if not checked.intact:
        first = checked.differences[0]
        raise ContainerError(
            f"{output}: not resumed: it fails verify ({first.kind} {first.member}"
            + (f": {first.detail}" if first.detail else "")
            + ")"
        )
    with open_container(output) as box:
        acquisition = box.acquisition() or {}
        why = _same_source(acquisition.get("source_fingerprint"), source_fingerprint(disk))
        if why is not None:
            raise ContainerError(f"{output}: not resumed: not the same source: {why}")
        records = [e.raw for e in box.manifest() if isinstance(e, ManifestItem)]
        log = [json.loads(line) for line in box.read(LOG_NAME).splitlines() if line.strip()]
        seal = box.seal()
        central = {i.filename: i.header_offset for i in box.zip.infolist()}
    sealed = seal.members if seal is not None else {}
    members: list[MemberInfo] = []
    end = 0
    metadata_start: int | None = None
    for local in scan_local_headers(output).members:
        if central.get(local.name) != local.offset:
            continue
        if not local.name.startswith(FILES_PREFIX + "/"):
            metadata_start = local.offset if metadata_start is None else metadata_start
            continue
        if metadata_start is not None:
            raise ContainerError(f"{output}: not resumed: content after the metadata members")
        members.append(
            MemberInfo(
                name=local.name,
                offset=local.offset,
                size=local.size,
                compressed_size=local.compressed_size,
                crc32=local.crc32,
                method=local.method,
                mtime=local.mtime,
                sha256=sealed.get(local.name),
                descriptor=bool(local.flags & 0x0008),  # a streamed member (bit 3)
            )
        )
        end = max(end, local.end)
    kept = {m.name for m in members}
    carried: list[dict[str, Any]] = []
    superseded: list[dict[str, Any]] = []
    for record in records:
        outcome = record.get("outcome")
        if outcome in _DONE and record.get("container_path") in kept:
            carried.append(record)
        else:
            superseded.append(record)
    state = ResumeState(
        output=output,
        end=end,
        members=tuple(members),
        records=carried,
        superseded=superseded,
        log=[r for r in log if isinstance(r, dict)],
        acquisition=acquisition,
        recovered=recovered,
    )
    state.done = {item_key(r) for r in carried}
    return state


__all__ = [
    "NothingToResume",
    "ResumeState",
    "check_output",
    "item_key",
    "prepare_resume",
    "source_fingerprint",
]

"""``acquisition.json``: what was read, by whom, with what, and how it ended.

Built once at the end of a run from facts the run gathered; nothing here reads the
evidence except the live-change sentinel (the first and last MiB of a device).
"""

from __future__ import annotations

import getpass
import platform
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager import __version__
from selective_imager.errors import SelectiveImagerError

if TYPE_CHECKING:
    from selective_imager.collect.chainhash import ChainFileHash
    from selective_imager.collect.collector import CollectionReport, CollectOptions
    from selective_imager.collect.hashing import DiskHashResult
    from selective_imager.container.age import Recipient
    from selective_imager.discovery import Disk

_LIBRARIES = (
    "pytsk3",
    "pyfsntfs",
    "pybde",
    "pyewf",
    "pyvmdk",
    "pyvhdi",
    "pyqcow",
    "pyvshadow",
    "pyluksde",
    "pyfsapfs",
    "pyfsxfs",
)


@dataclass(frozen=True, slots=True)
class AcquisitionFacts:
    """Everything ``acquisition.json`` is made of (gathered by the run)."""

    disk: Disk
    options: CollectOptions
    report: CollectionReport
    algorithms: tuple[str, ...]
    requested_rules: tuple[str, ...]
    rules_used: tuple[dict[str, Any], ...]
    started: str
    ended: str
    sentinel_start: str


def acquisition_record(facts: AcquisitionFacts) -> dict[str, Any]:
    """The ``acquisition.json`` object."""
    disk, options, report = facts.disk, facts.options, facts.report
    is_device = disk.source.info.is_device
    described = disk.as_dict()
    return {
        "tool": "selective-imager",
        "version": __version__,
        "command_line": list(options.command_line),
        # The host name of the machine the tool ran on; a live run's host facts instead.
        "host": options.host if options.host is not None else socket.gethostname(),
        "user": _user(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": _library_versions(),
        "started": facts.started,
        "ended": facts.ended,
        "status": report.status,
        "case": {
            "case_number": options.case,
            "evidence_number": options.evidence,
            "examiner": options.examiner,
            "notes": options.notes,
        },
        "source": described["source"],
        "partition_table": described["partition_table"],
        "volumes": described["volumes"],
        "rules": {"requested": list(facts.requested_rules), "used": list(facts.rules_used)},
        "options": {
            "hashes": list(facts.algorithms),
            "disk_hash": list(options.disk_hash),
            "disk_hash_mode": options.disk_hash_mode,
            "compress": options.compress,
            "strategy": options.strategy,
            "listing": options.listing,
            "vss": {
                "requested": disk.options.vss,
                "select": list(disk.options.vss_select),
                "latest": disk.options.vss_latest,
                "since_ns": disk.options.vss_since_ns,
                "reuse_unchanged": options.vss_reuse,
            },
        },
        "counts": dict(report.counts),
        "bytes_collected": report.bytes_collected,
        "source_bytes_read": report.source_bytes_read,
        "shadow_copies": {
            "unchanged_not_read": report.vss_unchanged,
            "bytes_not_read": report.vss_bytes_not_read,
        },
        "volume_errors": list(report.volume_errors),
        "unreadable": report.unreadable,
        "disk_hash": disk_hash_record(
            report.disk_hash, options.piece_size, is_device, report.chain_hashes
        ),
        "image": report.image,
        "live_source": live_record(disk, facts.sentinel_start) if is_device else None,
        "encryption": encryption_record(options.encrypt_to),
        "listing": list(report.listings) if options.listing else None,
        "live": options.live,
        "changed_while_read": report.changed_while_read,
        "reread_after_change": report.reread_after_change,
    }


def encryption_record(recipients: tuple[Recipient, ...]) -> dict[str, Any] | None:
    """How the container is encrypted at rest (public keys only), or None."""
    if not recipients:
        return None
    return {
        "format": "age-encryption.org/v1",
        "recipients": [{"type": r.kind, "key": r.text} for r in recipients],
        # A file cannot hold its own hash: the encrypted file's SHA-256 is outside it.
        "encrypted_sha256": "in the collect summary and the <container>.sha256 sidecar",
    }


def disk_hash_record(
    result: DiskHashResult | None,
    piece_size: int,
    is_device: bool,
    chain: tuple[ChainFileHash, ...] = (),
) -> dict[str, Any] | None:
    """The ``disk_hash`` object, or None when no disk hash was run.

    For a virtual disk, ``chain_files`` holds the hash of each file as received (the
    digests above are of the virtual disk, what the guest saw).
    """
    if result is None:
        return None
    record: dict[str, Any] = {
        "algorithms": list(result.algorithms),
        "complete": result.complete,
        "digests": result.digests.as_dict() if result.digests else None,
        "bytes_hashed": result.bytes_hashed,
        "size": result.size,
        "piece_size": piece_size,
        "pieces": [
            {"index": p.index, "offset": p.offset, "length": p.length, "sha256": p.sha256}
            for p in result.pieces
        ],
        "unreadable": [[o, n] for o, n in result.unreadable],
        "seconds": round(result.seconds, 3),
    }
    if chain:
        record["chain_files"] = [c.as_dict() for c in chain]
    if is_device:
        record["live_source"] = (
            "the source is a device: if it was in use, it may have changed while it "
            "was read, and this hash then describes the bytes as read, not a fixed "
            "state of the disk"
        )
    return record


def live_record(disk: Disk, sentinel_start: str) -> dict[str, Any]:
    """Whether a device's first/last MiB changed between the start and the end of the run."""
    changed = sentinel_start != sentinel(disk)
    return {
        "is_device": True,
        "changed_during_read": changed,
        "statement": (
            "THE DISK CHANGED WHILE IT WAS READ: its first/last MiB differ between "
            "the start and the end of the run; the collected files and the disk "
            "hash may describe different states"
            if changed
            else "no change was seen in the first and last MiB between the start and "
            "the end of the run (a live disk may still have changed elsewhere)"
        ),
    }


def sentinel(disk: Disk) -> str:
    """SHA-256 of the first and last MiB of the source: cheap evidence of live change."""
    import hashlib

    stream = disk.source.stream
    h = hashlib.sha256()
    try:
        h.update(stream.read_at(0, 1 << 20))
        h.update(stream.read_at(max(0, stream.size - (1 << 20)), 1 << 20))
    except (OSError, SelectiveImagerError) as exc:
        return f"unreadable: {exc}"
    return h.hexdigest()


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _library_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for module in _LIBRARIES:
        try:
            mod = __import__(module)
            versions[module] = str(getattr(mod, "get_version", lambda: "?")())
        except ImportError:
            continue
    return versions

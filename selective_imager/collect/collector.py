"""Collect rule-matched streams into a sealed logical evidence container.

Every stream is read once: each chunk is hashed (MD5/SHA-1/SHA-256 by default) and
written to the ZIP member in the same pass. Identical content is stored once; when a
stream turns out to duplicate one already stored, its member is rolled back and a
``duplicate`` record points at the stored one. Sparse streams store only their
allocated ranges. One unreadable file or volume is recorded and skipped.

Order of the container: content members, then ``manifest.jsonl``, ``log.jsonl``, the
rule files, ``acquisition.json`` and last ``SEAL.json``. The full-disk hash runs after
the artifacts are safe (or alongside, with ``disk_hash_mode="concurrent"``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from selective_imager import __version__
from selective_imager.collect.acquisition import AcquisitionFacts, acquisition_record, sentinel
from selective_imager.collect.chainhash import ChainFileHash, chain_hasher
from selective_imager.collect.finishing import (
    read_journal,
    store_exports,
    store_journals,
    store_report,
    store_rule_files,
)
from selective_imager.collect.hashing import ALGORITHMS, MultiHasher, hash_source
from selective_imager.collect.manifest import (
    Journal,
    data_runs,
    item_record,
    journal_paths,
    utc_now,
)
from selective_imager.collect.outcome import STORED_OUTCOMES, Outcome
from selective_imager.collect.resume import (
    ResumeState,
    check_output,
    prepare_resume,
    source_fingerprint,
)
from selective_imager.collect.stored_hash import StoredHashCheck, compare_stored_hashes
from selective_imager.collect.unchanged import LiveIndex, bytes_on_disk
from selective_imager.container.names import (
    encode_member_path,
    sparse_map_name,
    sparse_member_name,
)
from selective_imager.container.seal import (
    ACQUISITION_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    write_seal,
)
from selective_imager.container.zipwriter import MemberWriter, ZipWriter
from selective_imager.errors import ContainerError, PathNotFoundError, SelectiveImagerError
from selective_imager.progress import NullProgress, ProgressSink
from selective_imager.selection.matcher import MatchError, match

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from selective_imager.collect.hashing import DiskHashResult
    from selective_imager.collect.listing import PendingListing
    from selective_imager.container.age import Recipient
    from selective_imager.container.zipwriter import StreamSink
    from selective_imager.discovery import Disk, OpenVolume, VolumeReport
    from selective_imager.filesystems.base import Filesystem
    from selective_imager.imaging.imager import ImageOptions, ImageTarget
    from selective_imager.live.recheck import Change
    from selective_imager.models import Extent
    from selective_imager.selection.matcher import Match
    from selective_imager.selection.rules import RuleSet
    from selective_imager.streams import ByteStream

CHUNK = 1 << 20
# Chunks at least this big are written by a thread behind the hashing (write() into the
# page cache costs ~1 ms per MiB, as much as SHA-1 + SHA-256 of it).
_WRITE_BEHIND_MIN = 256 << 10
# Matches counted before copying (for the progress total); more are streamed.
_PRECOUNT_MAX = 50_000
SECTOR = 512
TOOL = f"selective-imager {__version__}"


@dataclass(frozen=True, slots=True)
class CollectOptions:
    """Options of a collection run.

    Attributes:
        hashes: per-item algorithms (SHA-256 is always computed: dedup and the seal
            depend on it).
        disk_hash: whole-source algorithms; empty for none.
        disk_hash_mode: ``after`` (artifacts first) or ``concurrent``.
        piece_size: piece length of the piecewise disk SHA-256; 0 (default) for none:
            it is a fourth pass over the data and costs ~15% of the disk-hash speed.
        overwrite: replace an existing output file.
        compress: True deflate, False store, None decide per member.
        case, evidence, examiner, notes: case metadata for ``acquisition.json``.
        command_line: the command line, already redacted by the caller.
        strategy: matcher strategy (``auto``, ``walk``, ``scan``).
        vss_reuse: record a shadow-copy item whose blocks and MFT record no store
            changed as a duplicate of the live item, without reading it (False reads
            every store item).
        encrypt_to: age recipients: the container is written age-encrypted (its
            SHA-256, of the encrypted file, then also goes to ``<output>.sha256``).
        image: a physical image to write during the disk-hash pass, or None.
        image_output: where that image goes (``disk.E01``).
        listing: write ``listing/<volume>.jsonl.gz`` and ``.bodyfile`` of every entry
            of every volume searched (see :mod:`selective_imager.collect.listing`).
        stream: streaming output: called with (output, overwrite), it gives the sink
            the container goes to in order as it is written (an upload, with or
            without a local copy at ``output``); not with ``resume``.
        recheck: reads an item's record again after its copy (a live device; see
            :class:`~selective_imager.live.recheck.RecordRecheck`), or None.
        host: the ``host`` object of a live collection (else the host name is recorded).
        live: the ``live`` object of a live collection (device, stack, mounts).
        allow_output_on_source: do not refuse an output on the source device.
    """

    hashes: tuple[str, ...] = ALGORITHMS
    disk_hash: tuple[str, ...] = ALGORITHMS
    disk_hash_mode: str = "after"
    piece_size: int = 0
    overwrite: bool = False
    compress: bool | None = None
    case: str = ""
    evidence: str = ""
    examiner: str = ""
    notes: str = ""
    command_line: tuple[str, ...] = ()
    strategy: str = "auto"
    vss_reuse: bool = True
    encrypt_to: tuple[Recipient, ...] = ()
    image: ImageOptions | None = None
    image_output: Path | None = None
    resume: bool = False
    listing: bool = False
    stream: Callable[[Path, bool], StreamSink] | None = None
    recheck: ItemRecheck | None = None
    host: dict[str, Any] | None = None
    live: dict[str, Any] | None = None
    allow_output_on_source: bool = False


class ItemRecheck(Protocol):
    """Reads an item's record again after its copy; None when it reads as before."""

    def check(self, vol: OpenVolume, match: Match) -> Change | None:
        """What changed (with a fresh file system to read the item again from), or None."""


class _Changed(Exception):
    """The record changed during the first copy: read the item again."""

    def __init__(self, change: Change) -> None:
        super().__init__("changed while read")
        self.change = change


COMPLETE = "complete"
PARTIAL = "partial"
INCOMPLETE = "incomplete"


@dataclass(slots=True)
class CollectionReport:
    """The result of :func:`collect`.

    Attributes:
        output: the container path.
        status: ``complete`` (every volume opened, every matched item stored intact,
            the disk hash finished), ``partial`` (something failed: see
            ``status_reasons``) or ``incomplete`` (interrupted).
        counts: items by outcome.
        bytes_collected: logical bytes of collected items.
        container_sha256: SHA-256 of the finished container file.
        disk_hash: the full-disk hash result, or None when not run.
        image: the record of the physical image written with the disk hash, or None.
        volume_errors: volumes that could not be searched, with the reason.
        unreadable: directories and $MFT records that could not be read (each in the
            log), so that what a rule would have selected there may be missing.
        source_bytes_read: bytes read from the source while collecting (before the
            disk hash).
        vss_unchanged: shadow-copy items recorded as the live file without reading.
        vss_bytes_not_read: the bytes their content would have taken to read.
        chain_hashes: for a virtual disk, the hash of each of its files as received,
            taken during the disk-hash pass (empty without a disk hash).
        encrypted: the container is age-encrypted (``container_sha256`` is then the
            hash of the encrypted file, also written to ``<output>.sha256``).
        stored_hash: the image's stored media hash against the disk hash.
        status_reasons: why the status is not ``complete``.
        notes: facts worth saying that are not failures (nothing matched...).
        resumed: the run continued an unfinished container.
        interrupted: the run was interrupted (Ctrl-C).
        listings: the ``--listing`` record of each volume (members, hashes, counts).
        listing_errors: volumes whose listing could not be written, with the reason.
        changed_while_read: items whose record changed during their copy and again
            during the second one (stored as read the second time).
        reread_after_change: items whose record changed during the first copy and
            not during the second (the second copy is stored).
    """

    output: Path
    status: str = COMPLETE
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    bytes_collected: int = 0
    container_sha256: str = ""
    disk_hash: DiskHashResult | None = None
    volume_errors: list[str] = field(default_factory=list)
    unreadable: int = 0
    source_bytes_read: int = 0
    vss_unchanged: int = 0
    vss_bytes_not_read: int = 0
    chain_hashes: tuple[ChainFileHash, ...] = ()
    encrypted: bool = False
    image: dict[str, Any] | None = None
    stored_hash: StoredHashCheck | None = None
    status_reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resumed: bool = False
    interrupted: bool = False
    listings: list[dict[str, Any]] = field(default_factory=list)
    listing_errors: list[str] = field(default_factory=list)
    changed_while_read: int = 0
    reread_after_change: int = 0

    @property
    def exit_code(self) -> int:
        """0 complete, 1 otherwise."""
        return 0 if self.status == COMPLETE else 1

    def settle(self) -> None:
        """Decide :attr:`status` and its reasons from what happened (call once, last)."""
        reasons: list[str] = []
        disk = self.disk_hash
        if self.interrupted:
            reasons.append("interrupted: the container holds what was collected before")
        elif disk is not None and not disk.complete:
            reasons.append("the disk hash did not finish")
        for problem in self.volume_errors:
            reasons.append(f"not searched: {problem}")
        if self.counts[Outcome.FAILED]:
            reasons.append(f"{self.counts[Outcome.FAILED]} item(s) failed")
        if self.counts[Outcome.PARTIAL]:
            reasons.append(
                f"{self.counts[Outcome.PARTIAL]} item(s) partly unreadable (zero-filled)"
            )
        for problem in self.listing_errors:
            reasons.append(f"listing not written: {problem}")
        if self.changed_while_read:
            reasons.append(
                f"{self.changed_while_read} item(s) changed while read: stored as read (each "
                "hash is of the bytes stored, which may mix states of the file)"
            )
        if self.unreadable:
            reasons.append(
                f"{self.unreadable} director(y/ies) or $MFT record(s) unreadable while "
                "matching: items under them may be missing"
            )
        if disk is not None and disk.unreadable:
            reasons.append(
                f"{sum(n for _, n in disk.unreadable)} unreadable byte(s) in the disk hash"
            )
        if self.stored_hash is not None and self.stored_hash.mismatched:
            reasons.append(
                "the image's stored "
                + "/".join(self.stored_hash.mismatched)
                + " differs from the disk hash"
            )
        self.status_reasons = reasons
        if self.interrupted or (disk is not None and not disk.complete):
            self.status = INCOMPLETE
        elif reasons:
            self.status = PARTIAL
        else:
            self.status = COMPLETE
        if not sum(self.counts.values()):
            self.notes.append("nothing matched the rules: no item was collected")


def missing_volumes(disk: Disk, volumes: Sequence[int | str] | None) -> str:
    """Why ``volumes`` cannot be selected on ``disk`` ("" when each names a volume).

    Numbers and labels mean what :meth:`Disk.selected` makes of them.
    """
    if volumes is None:
        return ""
    missing = [str(key) for key in volumes if not disk.selected([key])]
    if not missing:
        return ""
    have = sorted({str(v.report.volume.index) for v in disk.volumes}, key=lambda k: int(k))
    labels = [v.report.label for v in disk.volumes]
    return (
        f"no volume {', '.join(missing)} on this disk "
        f"(volumes: {', '.join(have) or 'none'}; labels: {', '.join(labels) or 'none'})"
    )


def refuse_output_on_source(disk: Disk, output: Path) -> None:
    """Refuse an output path that is the source itself or lies on the source device.

    Raises:
        ContainerError: the output would write to the evidence.
    """
    out_dir = output.resolve().parent
    for segment in disk.source.info.segments:
        try:
            if Path(segment).resolve() == output.resolve():
                raise ContainerError(f"{output}: is the source itself")
        except OSError:
            continue
    if disk.source.info.is_device:
        try:
            out_dev = out_dir.stat().st_dev
            src = Path(disk.source.info.path).stat()
        except OSError:
            return
        devices = {src.st_rdev}
        name = Path(os.path.realpath(disk.source.info.path)).name
        sys_block = Path("/sys/class/block") / name
        for child in sys_block.glob(f"{name}*") if sys_block.exists() else []:
            try:
                major, minor = (child / "dev").read_text().strip().split(":")
                devices.add(os.makedev(int(major), int(minor)))
            except (OSError, ValueError):
                continue
        if out_dev in devices:
            raise ContainerError(f"{output}: lies on the source device {disk.source.info.path}")


class _WriteBehind:
    """Writes a member's big chunks in a thread while the next chunk is read and hashed.

    At most one write is in flight and it always finishes before the next one starts,
    so the member (and the ZIP writer behind it) is never used by two threads at once.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def write(self, member: MemberWriter, data: bytes) -> None:
        self.wait()
        if len(data) < _WRITE_BEHIND_MIN:
            member.write(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="zip-write")
        self._pending = self._pool.submit(member.write, data)

    def wait(self) -> None:
        """Wait for the write in flight; its error is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def settle(self) -> None:
        """Wait for the write in flight, ignoring its error (the member is discarded)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()

    def close(self) -> None:
        self.settle()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class _Run:
    """State of one collection run (kept out of module globals)."""

    def __init__(
        self,
        disk: Disk,
        ruleset: RuleSet,
        output: Path,
        options: CollectOptions,
        progress: ProgressSink,
        resume: ResumeState | None = None,
    ) -> None:
        self.disk = disk
        self.ruleset = ruleset
        self.output = output
        self.options = options
        self.progress = progress
        self.report = CollectionReport(output, resumed=resume is not None)
        self.algorithms = tuple(dict.fromkeys((*options.hashes, "sha256")))
        self.stored: dict[str, str] = {}  # sha256 -> member name
        self.started = utc_now()
        self.resume = resume
        self.done: set[tuple[str, str, str]] = set()
        self.sentinel_start = sentinel(disk)
        self.fingerprint = source_fingerprint(disk, self.sentinel_start)
        self.rules_meta: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.live = LiveIndex()
        manifest_path, log_path = journal_paths(output)
        try:
            # Journals first: from the moment the container is written to, a killed run
            # leaves them beside it (recover needs them; --force never removes them).
            self.manifest = Journal(manifest_path)
            self.log = Journal(log_path)
        except FileExistsError as exc:
            raise ContainerError(
                f"{exc.filename}: a journal of an unfinished run is in the way; nothing was "
                f"deleted: run `selective-imager recover {output}`, or collect with --resume"
            ) from exc
        try:
            if resume is None:
                self.writer = ZipWriter(
                    output,
                    overwrite=options.overwrite,
                    hash_output=True,
                    encrypt_to=options.encrypt_to or None,
                    sink=options.stream(output, options.overwrite) if options.stream else None,
                )
            elif options.stream is not None:
                raise ContainerError("a streamed container cannot be resumed")
            else:
                self._carry_over(resume)
                self.writer = ZipWriter(
                    output, append_at=resume.end, existing=resume.members, hash_output=True
                )
        except ContainerError:
            if resume is None:
                # Nothing was written: the new, empty journals would only be in the way.
                for journal in (self.manifest, self.log):
                    journal.remove()
            raise
        self.write_behind = _WriteBehind()

    def _carry_over(self, resume: ResumeState) -> None:
        """Journal what the earlier run stored, so it is safe before the file is cut."""
        for record in resume.log:
            self.log.append(record)
        for record in resume.records:
            self.manifest.append(record)
            outcome = str(record.get("outcome"))
            if outcome in self.report.counts:
                self.report.counts[outcome] += 1
            hashes = record.get("hashes") or {}
            if outcome == Outcome.COLLECTED and hashes.get("sha256"):
                self.stored.setdefault(hashes["sha256"], str(record["container_path"]))
            if outcome in STORED_OUTCOMES:
                self.report.bytes_collected += int(record.get("size") or 0)
        self.done = set(resume.done)
        self.event(
            "warning",
            "resumed",
            f"resumed ({'after recover' if resume.recovered else 'from an interrupted run'}): "
            f"{len(resume.records)} item(s) kept, {len(resume.superseded)} earlier record(s) "
            "of items collected again",
            superseded=resume.superseded,
        )
        self.manifest.sync()
        self.log.sync()

    def event(self, level: str, event: str, message: str, **extra: Any) -> None:
        self.log.append(
            {"time": utc_now(), "level": level, "event": event, "message": message, **extra}
        )

    # -- items -----------------------------------------------------------------
    def collect_volume(self, vol: OpenVolume) -> None:
        report = vol.report
        fs = vol.filesystem
        if fs is None:
            self.event(
                "warning",
                "volume-skipped",
                f"volume {report.volume.index}: {report.error}",
                volume=report.volume.index,
            )
            # A partition with no file system (an MSR, swap...) is skipped, not failed;
            # a locked or damaged volume is a failure to collect.
            unrecognised = report.encryption is None and report.error.startswith(
                "no supported file system"
            )
            if report.error and not unrecognised:
                self.report.volume_errors.append(f"volume {report.volume.index}: {report.error}")
            return
        if report.note.startswith("image truncated"):
            self.report.volume_errors.append(f"volume {report.volume.index}: {report.note}")
            self.event("error", "volume-truncated", report.note, volume=report.volume.index)
        self.event(
            "info",
            "volume",
            f"searching volume {report.label} ({fs.info.type})",
            volume=report.volume.index,
        )
        if report.snapshot is None:
            self._note_stores(report)
        enc = report.encryption
        if enc is not None and enc.decryptor:
            note = f": {enc.decryptor_note}" if enc.decryptor_note else ""
            self.event(
                "warning" if enc.decryptor_note else "info",
                "bitlocker-decryptor",
                f"volume {report.volume.index}: BitLocker decrypted with {enc.decryptor}{note}",
                volume=report.volume.index,
            )

        def on_error(err: MatchError) -> None:
            if err.entry is not None:
                # One damaged entry that no rule selected (a selected one is a failed item).
                # Without a name (a record the $MFT scan could not read) it may have been
                # one a rule wanted: the run cannot claim to be complete.
                if not err.entry.name:
                    self.report.unreadable += 1
                self.event(
                    "error",
                    "entry-damaged",
                    f"{err.path or err.entry.name or '?'}: {err.error}",
                    volume=report.volume.index,
                    path=err.path,
                    name=err.entry.name,
                    entry=err.entry.entry,
                    sequence=err.entry.sequence,
                    parent_entry=err.entry.parent_entry,
                )
                return
            self.report.unreadable += 1
            self.event(
                "error",
                "directory-unreadable",
                f"{err.path or '/'}: {err.error}",
                volume=report.volume.index,
                path=err.path,
            )

        # Matched first (a fraction of the copy's time) so the progress knows the total
        # and can show an ETA. A Match holds an entry's metadata (~1-2 KB): beyond
        # _PRECOUNT_MAX the rest is streamed and the total stays unknown. A live device
        # is always streamed: each item's metadata is then read just before its content.
        limit = 0 if self.disk.source.info.is_device else _PRECOUNT_MAX
        listing = self._start_listing(report, fs) if self.options.listing else None
        found = match(fs, self.ruleset, strategy=self.options.strategy, on_error=on_error)
        head = list(itertools.islice(found, limit))
        if len(head) < limit:
            total: int | None = sum(_match_size(m) for m in head)
            count: int | None = len(head)
        else:
            total = count = None
        self.progress.phase(f"collect {report.label}", total, count)
        try:
            for m in itertools.chain(head, found):
                self.collect_item(vol, fs, m)
            if listing is not None:
                self._store_listing(report, listing)
                listing = None
        finally:
            if listing is not None:
                listing.abort()
            self.progress.done()
            if report.snapshot is not None:
                # One store's file system at a time: hundreds of stores stay bounded.
                self.live.forget(vol)
                vol.close()

    def _start_listing(self, report: VolumeReport, fs: Filesystem) -> PendingListing | None:
        """Start the volume's listing (see :class:`PendingListing`); None when not wanted."""
        from selective_imager.collect.listing import LISTING_PREFIX, PendingListing

        if f"{LISTING_PREFIX}{report.label}.jsonl.gz" in self.writer:
            # Kept from the run this one resumes (members are never written twice).
            self.event("info", "listing-kept", f"volume {report.label}: listing kept")
            return None
        try:
            return PendingListing(report.label, fs, self.output.parent)
        except ContainerError:
            raise
        except SelectiveImagerError as exc:
            self._listing_failed(report, exc)
            return None

    def _store_listing(self, report: VolumeReport, listing: PendingListing) -> None:
        """Write the volume's listing; a file system that cannot be listed is recorded."""
        try:
            summary = listing.store(self.writer)
        except ContainerError:
            raise
        except SelectiveImagerError as exc:
            self._listing_failed(report, exc)
            return
        record = summary.as_dict()
        self.report.listings.append(record)
        self.event(
            "warning" if summary.damaged else "info",
            "listing",
            f"volume {report.label}: {summary.entries} entries listed ({summary.deleted} "
            f"deleted, {summary.damaged} damaged) from the {summary.source}",
            volume=report.volume.index,
            **{k: record[k] for k in ("entries", "deleted", "damaged", "orphans")},
        )

    def _listing_failed(self, report: VolumeReport, exc: SelectiveImagerError) -> None:
        self.report.listing_errors.append(f"volume {report.label}: {exc}")
        self.event("error", "listing-failed", f"volume {report.label}: {exc}")

    def _note_stores(self, report: VolumeReport) -> None:
        """Record the shadow copies asked for that could not be opened (the rest goes on)."""
        problem = report.details.get("shadow_copies_error")
        if problem and self.disk.options.vss:
            self.report.volume_errors.append(f"volume {report.label}: {problem}")
            self.event("error", "vss-unreadable", problem, volume=report.volume.index)
        for store in report.details.get("shadow_copies", ()):
            if store["selected"] and store["error"]:
                where = f"{report.label}/vss{store['index']}"
                self.report.volume_errors.append(f"volume {where}: {store['error']}")
                self.event("error", "vss-store-skipped", f"{where}: {store['error']}")

    def collect_item(self, vol: OpenVolume, fs: Filesystem, m: Match) -> None:
        report = vol.report
        entry = m.entry
        label = f"{report.label}/{entry.path}" + (f":{m.stream}" if m.stream else "")
        self.progress.item(label)
        if self.done and (report.label, entry.path, m.stream) in self.done:
            # Stored intact by the run this one resumes.
            self.progress.advance(_match_size(m), items=1)
            return
        name = encode_member_path(report.label, entry.path, m.stream)
        volume_offset = None if report.encryption is not None else report.volume.offset
        try:
            extents = fs.extents(entry, m.stream)
        except SelectiveImagerError as exc:
            extents = ()
            self.event("warning", "extents-unreadable", f"{label}: {exc}")
        runs = data_runs(extents, volume_offset)
        if report.snapshot is not None and self.options.vss_reuse:
            live = self.live.find(vol, m, extents)
            if live is not None:
                # Same record, same runs, no block changed by a store: the live bytes.
                self._record(
                    m, report, live.member, Outcome.DUPLICATE, None, live.hashes, runs,
                    unchanged_from=live.label,
                )
                self.report.vss_bytes_not_read += bytes_on_disk(extents, m.size)
                return
        try:
            try:
                stored = self._store(fs, m, report, label, name, extents, runs, vol=vol)
            except _Changed as changed:
                stored = self._store_again(vol, m, changed.change, label, name, volume_offset)
        except ContainerError as exc:
            # The output cannot take more (a full disk): the item is recorded as failed
            # if the journal still can be written, and the run ends (see collect()).
            with contextlib.suppress(ContainerError):
                self._record(m, report, "", Outcome.FAILED, str(exc), None, runs)
            raise
        if stored is not None:
            self.live.remember(vol, m, extents, *stored)

    def _store_again(
        self,
        vol: OpenVolume,
        m: Match,
        change: Change,
        label: str,
        name: str,
        volume_offset: int | None,
    ) -> tuple[str, dict[str, str]] | None:
        """The second copy of an item whose record changed during the first."""
        assert change.match is not None and change.filesystem is not None
        self.event(
            "warning",
            "changed-while-read",
            f"{label}: its record changed during the copy "
            f"({', '.join(change.differences)}): read again",
            path=m.entry.path,
            differences=change.differences,
        )
        fs, fresh = change.filesystem, change.match
        try:
            try:
                extents = fs.extents(fresh.entry, fresh.stream)
            except SelectiveImagerError:
                extents = ()
            runs = data_runs(extents, volume_offset)
            return self._store(
                fs, fresh, vol.report, label, name, extents, runs,
                vol=vol, changed_before=change.differences,
            )  # fmt: skip
        finally:
            change.close()

    def _store(
        self,
        fs: Filesystem,
        m: Match,
        report: VolumeReport,
        label: str,
        name: str,
        extents: tuple[Extent, ...],
        runs: list[dict[str, Any]],
        *,
        vol: OpenVolume | None = None,
        changed_before: dict[str, list[Any]] | None = None,
    ) -> tuple[str, dict[str, str]] | None:
        """Copy one matched stream into the container (hashing it as it streams).

        With a re-check (a live device), the record is read again after the copy: a
        first copy whose record changed is discarded (:class:`_Changed`); a second
        one is stored as read, with what changed (``changed_before``: the first
        copy's differences).

        Returns the member holding the content and its hashes, when it was read whole.
        """
        entry = m.entry
        try:
            stream = fs.open_stream(entry, m.stream)
        except PathNotFoundError as exc:
            # Nothing to read (no default data stream, or a TSK virtual file): skipped.
            self._record(m, report, "", Outcome.SKIPPED, str(exc), None, runs)
            self.event("warning", "item-skipped", f"{label}: {exc}", path=entry.path)
            return None
        except SelectiveImagerError as exc:
            self._record(m, report, "", Outcome.FAILED, str(exc), None, runs)
            self.event("error", "item-failed", f"{label}: {exc}", path=entry.path)
            return None
        mtime = None
        if entry.si and entry.si.modified:
            mtime = entry.si.modified.ns // 1_000_000_000
        elif entry.times and entry.times.modified:
            mtime = entry.times.modified.ns // 1_000_000_000
        ranges = _allocated_ranges(extents, stream.size)
        # The member holds only allocated ranges of a sparse stream, so its own
        # SHA-256 (for the seal) differs from the logical one and is computed inline;
        # it is named <name>.sparse so nobody takes it for the logical file.
        logical_name = name
        if ranges is not None:
            name = sparse_member_name(name)
        member = self.writer.begin(
            name, compress=self.options.compress, mtime=mtime, hash_content=ranges is not None
        )
        hasher = MultiHasher(self.algorithms)
        unreadable: list[tuple[int, int]] = []
        try:
            for offset, length, present in _plan(stream.size, ranges):
                if not present:
                    hasher.update_zeros(length)
                    self.progress.advance(length)
                    continue
                for data in _read_range(stream, offset, length, unreadable):
                    hasher.update(data)
                    self.write_behind.write(member, data)
                    self.progress.advance(len(data))
            self.write_behind.wait()
            check = self._check(vol, m, changed_before)
        except BaseException:
            self.write_behind.settle()
            member.discard()
            raise
        if stream.size != m.size:
            # The record changed between the match and the opening (a live device): the
            # manifest's size is that of the bytes stored; the record's is kept beside it.
            check = (check or {}) | {"size": stream.size, "record_size": m.size}
        digests = hasher.hexdigests()
        sha = digests["sha256"]
        hashes = {alg: digests[alg] for alg in self.algorithms}
        outcome = Outcome.PARTIAL if unreadable else Outcome.COLLECTED
        error = (
            f"{sum(n for _, n in unreadable)} unreadable bytes were zero-filled"
            if unreadable
            else None
        )
        sparse = None
        if ranges is not None:
            sparse = {
                "logical_size": stream.size,
                "ranges": [[o, n] for o, n in ranges],
                # ``hashes`` are the logical file's (holes as zeros); the member's own
                # SHA-256 (allocated ranges only, what the seal covers) is member_sha256.
                "hashes_of": "logical file",
            }
        if outcome == Outcome.COLLECTED and sha in self.stored:
            member.discard()
            self._record(
                m,
                report,
                self.stored[sha],
                Outcome.DUPLICATE,
                None,
                hashes,
                runs,
                sparse=sparse,
                check=check,
            )
            return self.stored[sha], hashes
        info = member.close(sha256=None if ranges is not None else sha)
        if sparse is not None:
            sparse["member_sha256"] = info.sha256
            map_name = sparse_map_name(logical_name)
            sparse["map"] = map_name
            self.writer.add_bytes(map_name, _sparse_map(sparse, hashes), compress=True)
        if outcome == Outcome.COLLECTED:
            self.stored[sha] = info.name
        else:
            self.event("error", "item-partial", f"{label}: {error}", ranges=unreadable)
        self.report.bytes_collected += stream.size
        self._record(
            m,
            report,
            info.name,
            outcome,
            error,
            hashes,
            runs,
            sparse=sparse,
            unreadable=unreadable,
            check=check,
        )
        return (info.name, hashes) if outcome == Outcome.COLLECTED else None

    def _check(
        self, vol: OpenVolume | None, m: Match, changed_before: dict[str, list[Any]] | None
    ) -> dict[str, Any] | None:
        """The item's re-check record (None without a re-check).

        Raises:
            _Changed: the first copy's record changed and the item can be read again.
        """
        recheck = self.options.recheck
        if recheck is None or vol is None:
            return None
        change = recheck.check(vol, m)
        if change is None:
            if changed_before is None:
                return {"changed_while_read": False}
            self.report.reread_after_change += 1
            return {"changed_while_read": False, "first_read_changed": changed_before}
        if changed_before is None and change.match is not None:
            raise _Changed(change)
        change.close()
        self.report.changed_while_read += 1
        self.event(
            "warning",
            "stored-as-read",
            f"{m.entry.path}: its record changed during the copy "
            + ("again: stored as read" if changed_before else "and cannot be read again")
            + f" ({', '.join(change.differences)})",
            path=m.entry.path,
            differences=change.differences,
        )
        return {
            "changed_while_read": True,
            "first_read_changed": changed_before or change.differences,
            "second_read_changed": change.differences if changed_before else None,
        }

    def _record(
        self,
        m: Match,
        report: Any,
        container_path: str,
        outcome: Outcome,
        error: str | None,
        hashes: dict[str, str] | None,
        runs: list[dict[str, Any]] | None,
        *,
        sparse: dict[str, Any] | None = None,
        unreadable: list[tuple[int, int]] | None = None,
        unchanged_from: str | None = None,
        check: dict[str, Any] | None = None,
    ) -> None:
        self.report.counts[outcome.value] += 1
        self.manifest.append(
            item_record(
                m,
                report,
                container_path=container_path,
                outcome=outcome.value,
                error=error,
                hashes=hashes,
                runs=runs,
                sparse=sparse,
                unreadable=unreadable,
                unchanged_from=unchanged_from,
            )
            | (check or {})
        )
        if unchanged_from is not None:
            self.report.vss_unchanged += 1
            self.progress.advance(m.size)
        self.progress.advance(items=1)

    # -- finish ----------------------------------------------------------------
    def finish(self) -> None:
        self.write_behind.close()
        self.manifest.close()
        self.log.close()
        store_journals(
            self.writer, ((self.manifest.path, MANIFEST_NAME), (self.log.path, LOG_NAME))
        )
        self.records = read_journal(self.manifest.path)
        store_exports(self.writer, self.records, utc_now())
        self.rules_meta = store_rule_files(self.writer, self.ruleset)

    def acquisition(self, ended: str | None) -> dict[str, Any]:
        """``acquisition.json`` (``ended=None``: the run's facts at its start)."""
        earlier = self.resume.acquisition if self.resume is not None else {}
        resumed = list(earlier.get("resumed") or [])
        if self.resume is not None:
            resumed.append(
                {
                    "time": self.started,
                    "from_status": earlier.get("status"),
                    "after_recover": self.resume.recovered,
                    "items_kept": len(self.resume.records),
                }
            )
        record = acquisition_record(
            AcquisitionFacts(
                disk=self.disk,
                options=self.options,
                report=self.report,
                algorithms=self.algorithms,
                requested_rules=tuple(self.ruleset.requested),
                rules_used=tuple(self.rules_meta),
                started=str(earlier.get("started") or self.started),
                ended=ended or "",
                sentinel_start=self.sentinel_start,
            )
        )
        stored = self.report.stored_hash
        record.update(
            ended=ended,
            status=self.report.status if ended is not None else INCOMPLETE,
            status_reasons=list(self.report.status_reasons)
            if ended is not None
            else ["the run has not finished"],
            notes=list(self.report.notes),
            resumed=resumed,
            source_fingerprint=self.fingerprint,
            stored_hash_check=stored.as_dict() if stored is not None else None,
        )
        if ended is None:
            record["live_source"] = None  # decided at the end of the run
        return record


def _sparse_map(sparse: dict[str, Any], hashes: dict[str, str]) -> bytes:
    """The range map stored beside a sparse member: enough to rebuild the logical file."""
    import json

    doc = {
        "about": "the .sparse member holds these ranges of the logical file back to back; "
        "every other byte is zero",
        "logical_size": sparse["logical_size"],
        "ranges": sparse["ranges"],
        "logical_hashes": hashes,
        "member_sha256": sparse.get("member_sha256"),
    }
    return json.dumps(doc, indent=1).encode("utf-8")


def _match_size(m: Match) -> int:
    """Logical size of the matched stream (what the copy will hash)."""
    if not m.stream:
        return m.entry.size
    return next((s.size for s in m.entry.streams if s.name == m.stream), 0)


def _allocated_ranges(extents: tuple[Extent, ...], size: int) -> list[tuple[int, int]] | None:
    """Allocated ``(offset, length)`` ranges of a sparse stream, or None if not sparse.

    Compressed NTFS streams also have sparse runs, inside compression units; their
    logical layout is not the run layout, so they are read whole.
    """
    if not any(e.sparse for e in extents) or any(e.compressed for e in extents):
        return None
    ranges: list[tuple[int, int]] = []
    for ext in extents:
        if ext.sparse or ext.logical_offset >= size:
            continue
        length = min(ext.length, size - ext.logical_offset)
        if ranges and ranges[-1][0] + ranges[-1][1] == ext.logical_offset:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + length)
        else:
            ranges.append((ext.logical_offset, length))
    return ranges


def _plan(size: int, ranges: list[tuple[int, int]] | None) -> Iterator[tuple[int, int, bool]]:
    """``(offset, length, present)`` spans covering ``[0, size)``."""
    if ranges is None:
        yield 0, size, True
        return
    pos = 0
    for offset, length in ranges:
        if offset > pos:
            yield pos, offset - pos, False
        yield offset, length, True
        pos = offset + length
    if pos < size:
        yield pos, size - pos, False


def _read_range(
    stream: ByteStream, offset: int, length: int, unreadable: list[tuple[int, int]]
) -> Iterator[bytes]:
    """Chunks of ``[offset, offset+length)``.

    A chunk that fails is retried once, then read sector by sector so only the
    sectors that still fail are zero-filled and recorded.
    """
    end = offset + length
    pos = offset
    while pos < end:
        n = min(CHUNK, end - pos)
        data = _try_read(stream, pos, n)
        if data is None:
            data = _try_read(stream, pos, n)
        if data is None:
            data = _read_sectors(stream, pos, n, unreadable)
        elif len(data) < n:
            # Short read inside the stream's size: the rest is missing on disk.
            unreadable.append((pos + len(data), n - len(data)))
            data = data + b"\0" * (n - len(data))
        yield data
        pos += n


def _try_read(stream: ByteStream, offset: int, size: int) -> bytes | None:
    try:
        return stream.read_at(offset, size)
    except (OSError, SelectiveImagerError):
        return None


def _read_sectors(
    stream: ByteStream, offset: int, size: int, unreadable: list[tuple[int, int]]
) -> bytes:
    out = bytearray()
    for start in range(offset, offset + size, SECTOR):
        n = min(SECTOR, offset + size - start)
        data = _try_read(stream, start, n)
        if data is None or len(data) < n:
            good = data or b""
            bad_at = start + len(good)
            if unreadable and sum(unreadable[-1]) == bad_at:
                unreadable[-1] = (unreadable[-1][0], unreadable[-1][1] + n - len(good))
            else:
                unreadable.append((bad_at, n - len(good)))
            data = good + b"\0" * (n - len(good))
        out += data
    return bytes(out)


def collect(
    disk: Disk,
    ruleset: RuleSet,
    output: Path,
    options: CollectOptions | None = None,
    progress: ProgressSink | None = None,
    volumes: Sequence[int | str] | None = None,
) -> CollectionReport:
    """Collect every match of ``ruleset`` on ``disk`` into the container ``output``.

    Ctrl-C (KeyboardInterrupt) finishes the container as ``incomplete`` with
    everything collected so far, then re-raises. With ``options.resume`` an
    unfinished container at ``output`` (killed: recovered first; or interrupted) is
    continued: items it holds intact are kept, the rest collected.

    Raises:
        ValueError: ``volumes`` names a volume the disk does not have.
        ContainerError: the output exists (without overwrite), is a partial container
            or has journals of an unfinished run beside it (without resume), lies on
            the source, cannot be written, or cannot be resumed.
    """
    options = options or CollectOptions()
    progress = progress or NullProgress()
    problem = missing_volumes(disk, volumes)
    if problem:
        raise ValueError(problem)
    if not options.allow_output_on_source:
        refuse_output_on_source(disk, output)
    check_output(output, overwrite=options.overwrite, resume=options.resume)
    resume = prepare_resume(disk, output) if options.resume else None
    run = _Run(disk, ruleset, output, options, progress, resume)
    interrupted: BaseException | None = None
    concurrent: tuple[threading.Thread, threading.Event, list[DiskHashResult]] | None = None
    try:
        run.event(
            "info",
            "start",
            f"{TOOL} collecting from {disk.source.info.path}",
            acquisition=run.acquisition(None),
        )
        for indexes, text in disk.table.problems if disk.table is not None else ():
            # A truncated image lacks part of the disk (even where no rule matched), and
            # logical volumes past its end cannot even be listed: never a complete run.
            if not indexes or text.startswith("image truncated"):
                run.report.volume_errors.append(text)
                run.event("error", "table-problem", text)
        image = _open_image(disk, options)
        algorithms = _pass_algorithms(options)
        if algorithms and options.disk_hash_mode == "concurrent":
            concurrent = _start_concurrent_hash(disk, options, run, image)
        read_before = disk.source.stream.bytes_read
        for vol in disk.selected(volumes):
            try:
                run.collect_volume(vol)
            except ContainerError:
                raise  # the output cannot be written (disk full): the run ends here
            except SelectiveImagerError as exc:
                # One unreadable volume is recorded and skipped, never the end of the run.
                run.report.volume_errors.append(f"volume {vol.report.volume.index}: {exc}")
                run.event("error", "volume-failed", str(exc), volume=vol.report.volume.index)
        run.report.source_bytes_read = disk.source.stream.bytes_read - read_before
        if algorithms and concurrent is None:
            progress.phase("disk-hash", disk.source.info.size, None)
            cancel = threading.Event()
            chain = chain_hasher(disk.source.info, options.disk_hash)
            try:
                run.report.disk_hash = hash_source(
                    disk.source.stream,
                    algorithms,
                    piece_size=options.piece_size,
                    sector_size=disk.source.info.sector_size,
                    progress=_delta(progress),
                    cancel=cancel,
                    sinks=(
                        *((chain,) if chain else ()),
                        *((image.write,) if image is not None else ()),
                    ),
                )
            finally:
                progress.done()
                if chain is not None:
                    run.report.chain_hashes = chain.results()
            if image is not None:
                run.report.image = image.finish(run.report.disk_hash)
                image = None
    except KeyboardInterrupt as exc:
        interrupted = exc
        run.report.interrupted = True
        run.event(
            "warning", "interrupted", "interrupted: the container holds what was collected so far"
        )
    finally:
        if concurrent is not None:
            thread, cancel, results = concurrent
            if interrupted is not None:
                cancel.set()
            thread.join()
            run.report.disk_hash = results[0] if results else None
            if image is not None and run.report.disk_hash is not None:
                run.report.image = image.finish(run.report.disk_hash)
                image = None
        if image is not None:
            image.abort()  # the pass never ran to its end: the image stays incomplete
        _settle(run)
        _finalise(run)
    if interrupted is not None:
        raise interrupted
    return run.report


def _settle(run: _Run) -> None:
    """Compare the image's stored hash, then decide the status."""
    report = run.report
    details = run.disk.source.info.details
    if any(key.startswith("stored_hash.") for key in details):
        computed = report.disk_hash.digests if report.disk_hash is not None else None
        report.stored_hash = compare_stored_hashes(details, computed)
        if report.stored_hash.mismatched:
            run.event(
                "error",
                "stored-hash-mismatch",
                "the image's stored "
                + "/".join(report.stored_hash.mismatched)
                + " differs from the disk hash computed now",
            )
    report.settle()


def _delta(progress: ProgressSink) -> Any:
    last = [0]

    def update(total: int) -> None:
        progress.advance(total - last[0])
        last[0] = total

    return update


def _pass_algorithms(options: CollectOptions) -> tuple[str, ...]:
    """The disk hash's algorithms, plus what the image needs (an E01 stores MD5, SHA-1)."""
    if options.image is None:
        return options.disk_hash
    from selective_imager.imaging.imager import hash_algorithms

    return hash_algorithms(options.image, options.disk_hash)


def _open_image(disk: Disk, options: CollectOptions) -> ImageTarget | None:
    """The physical image written during the disk-hash pass, or None."""
    if options.image is None or options.image_output is None:
        return None
    from selective_imager.imaging.imager import ImageTarget, refuse_image_on_source

    info = disk.source.info
    refuse_image_on_source(info.segments or (info.path,), options.image_output)
    return ImageTarget(
        options.image_output,
        info.size,
        info.sector_size,
        options.image,
        model=str(info.details.get("device.model", "")),
        serial=str(info.details.get("device.serial", "")),
    )


def _start_concurrent_hash(
    disk: Disk, options: CollectOptions, run: _Run, image: ImageTarget | None
) -> tuple[threading.Thread, threading.Event, list[DiskHashResult]]:
    from selective_imager.sources import SourceOptions, open_source

    cancel = threading.Event()
    results: list[DiskHashResult] = []
    # Its own handle on the source (stream objects are not shared between threads),
    # over the same files: the parents the first opening found.
    info = disk.source.info
    parents = tuple(c.path for c in info.chain if c.role == "parent")
    source = open_source(info.path, SourceOptions(parents=parents))
    chain = chain_hasher(source.info, options.disk_hash)

    def work() -> None:
        try:
            results.append(
                hash_source(
                    source.stream,
                    _pass_algorithms(options),
                    piece_size=options.piece_size,
                    sector_size=source.info.sector_size,
                    cancel=cancel,
                    sinks=(
                        *((chain,) if chain else ()),
                        *((image.write,) if image is not None else ()),
                    ),
                )
            )
        finally:
            if chain is not None:
                run.report.chain_hashes = chain.results()
            source.close()

    thread = threading.Thread(target=work, name="disk-hash", daemon=True)
    thread.start()
    return thread, cancel, results


def _finalise(run: _Run) -> None:
    """Write the metadata members and the seal; always leaves a valid ZIP."""
    import hashlib
    import json

    try:
        try:
            run.finish()
            ended = utc_now()
            acquisition = run.acquisition(ended)
            run.writer.add_bytes(
                ACQUISITION_NAME,
                json.dumps(acquisition, indent=2, ensure_ascii=False).encode("utf-8"),
                compress=True,
            )
            store_report(run.writer, acquisition, run.records)
            write_seal(run.writer, tool=TOOL)
        finally:
            run.writer.close()
    except ContainerError as exc:
        # The journals stay beside the output: they are the record of what was collected.
        for journal in (run.manifest, run.log):
            with contextlib.suppress(ContainerError):  # the error being raised says why
                journal.close()
        raise ContainerError(
            f"{exc}; the collection stopped: {run.writer.path} keeps the "
            f"{run.writer.kept_members} member(s) closed before, and {run.manifest.path.name} "
            f"and {run.log.path.name} beside it record the items"
        ) from exc
    run.manifest.remove()
    run.log.remove()
    digest = run.writer.sha256
    if digest is None:
        # No follower (encrypted output, no preadv) or it could not read: one more pass.
        h = hashlib.sha256()
        with open(run.output, "rb") as fh:
            while chunk := fh.read(4 << 20):
                h.update(chunk)
        digest = h.hexdigest()
    run.report.container_sha256 = digest
    if run.options.encrypt_to:
        run.report.encrypted = True
        _write_sidecar(run.output, digest)


def _write_sidecar(output: Path, digest: str) -> None:
    """``<output>.sha256`` in ``sha256sum`` format: the encrypted file cannot hold its hash."""
    sidecar = output.with_name(output.name + ".sha256")
    try:
        sidecar.write_text(f"{digest}  {output.name}\n", encoding="utf-8")
    except OSError as exc:
        raise ContainerError(f"cannot write {sidecar}: {exc.strerror or exc}") from exc

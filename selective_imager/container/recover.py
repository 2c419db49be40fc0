"""Rebuild a valid container from a collection that was killed (SIGKILL, power loss).

A killed run leaves the ZIP without its central directory (often with a torn last
member) and, beside it, the two journals ``<out>.manifest.jsonl.part`` and
``<out>.log.jsonl.part`` (see :mod:`selective_imager.collect.manifest`). The ZIP
writer (:mod:`~selective_imager.container.zipwriter`) rewrites each local header with
the final method, CRC-32 and sizes when a member closes, so the local headers alone
describe every complete member. A streamed container (the writer's streaming mode, an
upload) has data descriptors instead: the end of a deflated member is where its
deflate stream ends, the end of a stored one the first data-descriptor signature whose
compressed size equals its distance from the data (the CRC-32 check then confirms it).

:func:`recover` walks the local headers from offset 0 and keeps a ``files/`` member
only when it is complete (its data lies inside the file, inflates to the declared
size and CRC-32) and its hashes equal those of its journal line. Everything else is
dropped: a torn last member, a member closed just before the kill and never
journaled, and the metadata members of an interrupted finish (they are rewritten). A
sparse member's range map is kept with its member (it names the member's SHA-256).
The file is cut after the last kept member (the kept bytes are never rewritten),
then the manifest, the log (with an event for each dropped member), the exports
(CopyLog.csv, SkipLog.csv, bodyfile.txt), an ``acquisition.json`` with status
``incomplete``, report.html and the seal are appended, and the
journals removed. Running it again answers "nothing to recover". It never reads the
source.

References:
    PKWARE APPNOTE.TXT 6.3.x, 4.3.7 (local file header), 4.3.9 (data descriptor)
    and 4.5.3 (ZIP64 extra).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from selective_imager import __version__
from selective_imager.collect.finishing import store_exports, store_report
from selective_imager.collect.hashing import ALGORITHMS, MultiHasher
from selective_imager.collect.manifest import journal_in_use, journal_paths, utc_now
from selective_imager.collect.outcome import CONTENT_OUTCOMES, STORED_OUTCOMES, Outcome
from selective_imager.container.names import (
    FILES_PREFIX,
    SPARSE_MAP_SUFFIX,
    SPARSE_SUFFIX,
    sparse_role,
)
from selective_imager.container.reader import ManifestItem, _parse_item, _SparseFeeder
from selective_imager.container.seal import (
    ACQUISITION_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    SEAL_NAMES,
    write_seal,
)
from selective_imager.container.zipwriter import DEFLATED, STORED, MemberInfo, ZipWriter
from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from collections.abc import Iterator

TOOL = f"selective-imager {__version__}"
# A range map is a small JSON document (two integers per allocated range).
_MAP_LIMIT = 64 << 20
INCOMPLETE = "incomplete"

_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_EOCD_SIG = 0x06054B50
_EOCD64_SIG = 0x06064B50
_LOCAL_FMT = struct.Struct("<IHHHHHIIIHH")
_MAX32 = 0xFFFFFFFF
_FLAG_DESCRIPTOR = 0x0008
_DESCRIPTOR_SIG = 0x08074B50
_DESCRIPTOR = struct.Struct("<IIQQ")  # signature, CRC-32, compressed size, size (ZIP64)
_FLAG_ENCRYPTED = 0x0001
_FLAG_UTF8 = 0x0800
_CHUNK = 1 << 20
_CONTENT = CONTENT_OUTCOMES
_OWNERS = STORED_OUTCOMES


@dataclass(frozen=True, slots=True)
class LocalMember:
    """One member as its local header describes it.

    Attributes:
        name: member name.
        offset: offset of the local header.
        data_offset: offset of the (compressed) data.
        end: offset just after the data.
        method: 0 stored, 8 deflated (others are not ours).
        flags: general-purpose flags.
        crc32: CRC-32 of the uncompressed data, from the header.
        size: uncompressed size, from the header.
        compressed_size: stored data size, from the header.
        mtime: Unix time from the extended-timestamp extra (else the DOS fields, UTC).
    """

    name: str
    offset: int
    data_offset: int
    end: int
    method: int
    flags: int
    crc32: int
    size: int
    compressed_size: int
    mtime: int


@dataclass(frozen=True, slots=True)
class Scan:
    """What the local headers of a file describe.

    Attributes:
        members: the members whose header and data lie inside the file, in order.
        stop: offset where the walk stopped.
        reason: why it stopped (``central directory``, ``end of file``, or what was
            found instead of a header: a torn member).
    """

    members: tuple[LocalMember, ...]
    stop: int
    reason: str


@dataclass(frozen=True, slots=True)
class RecoverReport:
    """Result of :func:`recover`.

    Attributes:
        path: the container.
        recovered: False when there was nothing to recover.
        message: one line saying what happened.
        kept: content members kept.
        dropped: ``(member, reason)`` of every member left out.
        records: manifest records written.
        lost: records whose member was not kept (now ``failed``).
        counts: records by outcome.
    """

    path: str
    recovered: bool
    message: str
    kept: int = 0
    dropped: tuple[tuple[str, str], ...] = ()
    records: int = 0
    lost: int = 0
    counts: dict[str, int] | None = None


def _dos_to_unix(dos_time: int, dos_date: int) -> int:
    try:
        when = _dt.datetime(
            1980 + (dos_date >> 9),
            (dos_date >> 5) & 0xF,
            dos_date & 0x1F,
            dos_time >> 11,
            (dos_time >> 5) & 0x3F,
            (dos_time & 0x1F) * 2,
            tzinfo=_dt.UTC,
        )
    except ValueError:
        return 0
    return int(when.timestamp())


def _parse_extra(extra: bytes, size32: int, csize32: int) -> tuple[int, int, int | None]:
    """Sizes (ZIP64 extra where the 32-bit fields are 0xFFFFFFFF) and the exact mtime."""
    size, csize, mtime = size32, csize32, None
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            fields = [int.from_bytes(body[i : i + 8], "little") for i in range(0, len(body) - 7, 8)]
            if size32 == _MAX32 and fields:
                size = fields.pop(0)
            if csize32 == _MAX32 and fields:
                csize = fields.pop(0)
        elif tag == 0x5455 and length >= 5 and body[0] & 1:
            mtime = int.from_bytes(body[1:5], "little", signed=True)
        pos += 4 + length
    return size, csize, mtime


def scan_local_headers(path: str | os.PathLike[str]) -> Scan:
    """Walk the local headers of ``path`` from offset 0 (no central directory needed).

    Raises:
        ContainerError: the file cannot be read, or it does not start like a ZIP file.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ContainerError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        file_size = os.fstat(fh.fileno()).st_size
        members: list[LocalMember] = []
        pos = 0
        while True:
            fh.seek(pos)
            head = fh.read(_LOCAL_FMT.size)
            if len(head) < 4:
                reason = "end of file" if not head else "torn header at the end"
                return Scan(tuple(members), pos, reason)
            sig = int.from_bytes(head[:4], "little")
            if sig in (_CENTRAL_SIG, _EOCD_SIG, _EOCD64_SIG):
                return Scan(tuple(members), pos, "central directory")
            if sig != _LOCAL_SIG:
                if pos == 0:
                    raise ContainerError(f"{path}: not a ZIP file (no local header at offset 0)")
                return Scan(tuple(members), pos, "no member header here (a torn member)")
            if len(head) < _LOCAL_FMT.size:
                return Scan(tuple(members), pos, "torn header at the end")
            (_, _, flags, method, dos_time, dos_date, crc, csize32, size32, nlen, xlen) = (
                _LOCAL_FMT.unpack(head)
            )
            tail = fh.read(nlen + xlen)
            if len(tail) < nlen + xlen:
                return Scan(tuple(members), pos, "torn header at the end")
            if flags & _FLAG_ENCRYPTED:
                return Scan(tuple(members), pos, "encryption: not written by this tool")
            raw_name = tail[:nlen]
            name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", "replace")
            size, csize, mtime = _parse_extra(tail[nlen:], size32, csize32)
            data_offset = pos + _LOCAL_FMT.size + nlen + xlen
            end = data_offset + csize
            if flags & _FLAG_DESCRIPTOR:
                found = _descriptor(fh, method, data_offset, file_size)
                if found is None:
                    return Scan(tuple(members), pos, f"{name}: torn (no data descriptor after it)")
                crc, csize, size = found
                end = data_offset + csize + _DESCRIPTOR.size
            if end > file_size:
                return Scan(tuple(members), pos, f"{name}: torn (its data runs past the end)")
            members.append(
                LocalMember(
                    name=name,
                    offset=pos,
                    data_offset=data_offset,
                    end=end,
                    method=method,
                    flags=flags,
                    crc32=crc,
                    size=size,
                    compressed_size=csize,
                    mtime=mtime if mtime is not None else _dos_to_unix(dos_time, dos_date),
                )
            )
            pos = end


def _descriptor(
    fh: BinaryIO, method: int, data_offset: int, file_size: int
) -> tuple[int, int, int] | None:
    """(CRC-32, compressed size, size) from the ZIP64 data descriptor after a member's data.

    None when none is found inside the file (a torn member) or the method is not ours.
    """
    if method == DEFLATED:
        csize = _deflate_length(fh, data_offset)
    elif method == STORED:
        csize = _stored_length(fh, data_offset, file_size)
    else:
        return None
    if csize is None or data_offset + csize + _DESCRIPTOR.size > file_size:
        return None
    fh.seek(data_offset + csize)
    sig, crc, csize64, size = _DESCRIPTOR.unpack(fh.read(_DESCRIPTOR.size))
    if sig != _DESCRIPTOR_SIG or csize64 != csize:
        return None
    return crc, csize, size


def _deflate_length(fh: BinaryIO, data_offset: int) -> int | None:
    """Bytes of the deflate stream starting at ``data_offset`` (None: it never ends)."""
    fh.seek(data_offset)
    inflater = zlib.decompressobj(-15)
    fed = 0
    try:
        while not inflater.eof:
            data = fh.read(_CHUNK)
            if not data:
                return None
            fed += len(data)
            while data and not inflater.eof:
                inflater.decompress(data, _CHUNK)
                data = inflater.unconsumed_tail
    except zlib.error:
        return None
    # At the end, unused_data holds every byte after the stream (unconsumed_tail may
    # repeat them): they were fed but are not the member's.
    return fed - len(inflater.unused_data)


def _stored_length(fh: BinaryIO, data_offset: int, file_size: int) -> int | None:
    """Bytes of stored data before the first descriptor whose size field says so."""
    sig = struct.pack("<I", _DESCRIPTOR_SIG)
    pos = data_offset
    while pos + _DESCRIPTOR.size <= file_size:
        fh.seek(pos)
        window = fh.read(_CHUNK + _DESCRIPTOR.size)
        at = window.find(sig)
        while at >= 0 and at + _DESCRIPTOR.size <= len(window):
            csize = int.from_bytes(window[at + 8 : at + 16], "little")
            if csize == pos + at - data_offset:
                return csize
            at = window.find(sig, at + 1)
        pos += _CHUNK
    return None


def _member_chunks(fh: BinaryIO, member: LocalMember) -> Iterator[bytes]:
    """The uncompressed content, in bounded chunks.

    Raises:
        ValueError: the data does not inflate, or inflates past the declared size.
    """
    fh.seek(member.data_offset)
    left = member.compressed_size
    produced = 0
    inflater = zlib.decompressobj(-15) if member.method == DEFLATED else None
    while left:
        data = fh.read(min(_CHUNK, left))
        if not data:
            raise ValueError("short read")
        left -= len(data)
        if inflater is None:
            out = [data]
        else:
            out = []
            pending = data
            while pending:
                piece = inflater.decompress(pending, _CHUNK)
                out.append(piece)
                pending = inflater.unconsumed_tail
                produced_now = produced + sum(len(p) for p in out)
                if produced_now > member.size:
                    raise ValueError("inflates past its declared size")
        for piece in out:
            produced += len(piece)
            if produced > member.size:
                raise ValueError("longer than its declared size")
            if piece:
                yield piece
    if inflater is not None and not inflater.eof:
        raise ValueError("the deflate stream does not end")


def _check_member(
    fh: BinaryIO, member: LocalMember, item: ManifestItem
) -> tuple[str | None, str]:
    """``(problem or None, sha256 of the member content)``."""
    if member.method not in (STORED, DEFLATED):
        return f"compression method {member.method}", ""
    algorithms = tuple(a for a in ALGORITHMS if a in item.hashes)
    seal = MultiHasher(("sha256",))
    plain = MultiHasher(algorithms) if item.sparse_size is None else None
    feeder = _SparseFeeder(item, algorithms) if item.sparse_size is not None else None
    crc = 0
    size = 0
    try:
        for chunk in _member_chunks(fh, member):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            seal.update(chunk)
            if plain is not None:
                plain.update(chunk)
            if feeder is not None:
                feeder.feed(chunk)
    except (ValueError, zlib.error, OSError) as exc:
        return f"corrupt data: {exc}", ""
    if size != member.size or crc != member.crc32:
        return "size or CRC-32 differs from its header", ""
    if feeder is not None:
        digests, problem = feeder.finish()
        if problem:
            return problem, ""
    else:
        assert plain is not None
        digests = plain.hexdigests()
    for alg in algorithms:
        if digests[alg] != item.hashes[alg]:
            return f"its {alg} differs from its journal line", ""
    return None, seal.hexdigests()["sha256"]


def _check_map(
    fh: BinaryIO, member: LocalMember, owner_sha256: str | None
) -> tuple[str | None, str]:
    """``(problem or None, sha256)`` of a sparse range map beside a kept member."""
    if owner_sha256 is None:
        return "a sparse range map whose member was not kept", ""
    if member.method not in (STORED, DEFLATED) or member.size > _MAP_LIMIT:
        return "not a sparse range map of this tool", ""
    try:
        data = b"".join(_member_chunks(fh, member))
    except (ValueError, zlib.error, OSError) as exc:
        return f"corrupt data: {exc}", ""
    if len(data) != member.size or zlib.crc32(data) != member.crc32:
        return "size or CRC-32 differs from its header", ""
    try:
        doc = json.loads(data)
    except ValueError:
        return "a sparse range map that is not JSON", ""
    if not isinstance(doc, dict) or doc.get("member_sha256") != owner_sha256:
        return "a sparse range map that does not name its member's SHA-256", ""
    return None, hashlib.sha256(data).hexdigest()


def _read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """JSON objects of a journal, and how many lines were unreadable (a torn last line)."""
    records: list[dict[str, Any]] = []
    bad = 0
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except (ValueError, UnicodeDecodeError):
                    bad += 1
                    continue
                if isinstance(obj, dict):
                    records.append(obj)
                else:
                    bad += 1
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise ContainerError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return records, bad


def _finished_status(path: Path) -> str | None:
    """The status of a finished (sealed) container, or None when it is not one."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if not names & set(SEAL_NAMES) or ACQUISITION_NAME not in names:
                return None
            info = zf.getinfo(ACQUISITION_NAME)
            if info.file_size > 64 << 20:
                return None
            doc = json.loads(zf.read(ACQUISITION_NAME))
    except (OSError, zipfile.BadZipFile, zlib.error, ValueError, KeyError):
        return None
    if not isinstance(doc, dict):
        return None
    return str(doc.get("status") or "unknown")


def finished_status(path: str | os.PathLike[str]) -> str | None:
    """The recorded status of a finished (sealed) container; None for anything else."""
    return _finished_status(Path(path))


def needs_recovery(path: str | os.PathLike[str]) -> bool:
    """Whether journals of an unfinished run lie beside ``path``."""
    return any(p.exists() for p in journal_paths(path))


def _index_records(
    records: list[dict[str, Any]],
) -> tuple[list[ManifestItem | None], dict[str, ManifestItem]]:
    """Parsed records (None where unusable) and the record owning each member."""
    parsed: list[ManifestItem | None] = []
    owners: dict[str, ManifestItem] = {}
    for line_no, obj in enumerate(records, 1):
        try:
            item = _parse_item(line_no, obj)
        except (ValueError, KeyError, TypeError):
            parsed.append(None)
            continue
        parsed.append(item)
        if item.outcome in _OWNERS and item.container_path:
            owners.setdefault(item.container_path, item)
    return parsed, owners


def _select(
    path: Path, scan: Scan, owners: dict[str, ManifestItem]
) -> tuple[list[MemberInfo], list[tuple[str, str]]]:
    """Members to keep (as the writer's records) and ``(name, reason)`` of the others."""
    kept: list[MemberInfo] = []
    dropped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}  # kept member name -> its SHA-256
    with open(path, "rb") as fh:
        for member in scan.members:
            name = member.name
            if not name.startswith(FILES_PREFIX + "/"):
                if name not in (MANIFEST_NAME, LOG_NAME, ACQUISITION_NAME, *SEAL_NAMES):
                    dropped.append((name, "not collected content (rewritten or left out)"))
                continue
            if name in seen:
                dropped.append((name, "a second member of the same name"))
                continue
            item = owners.get(name)
            if item is None and sparse_role(name) == "map":
                # The range map written right after its sparse member: no journal line
                # of its own; kept when it names the kept member's SHA-256.
                owner = name[: -len(SPARSE_MAP_SUFFIX)] + SPARSE_SUFFIX
                problem, sha256 = _check_map(fh, member, seen.get(owner))
            elif item is None:
                dropped.append((name, "no journal line: the run stopped before recording it"))
                continue
            else:
                problem, sha256 = _check_member(fh, member, item)
            if problem is not None:
                dropped.append((name, problem))
                continue
            seen[name] = sha256
            kept.append(
                MemberInfo(
                    name=name,
                    offset=member.offset,
                    size=member.size,
                    compressed_size=member.compressed_size,
                    crc32=member.crc32,
                    method=member.method,
                    mtime=member.mtime,
                    sha256=sha256,
                    descriptor=bool(member.flags & _FLAG_DESCRIPTOR),
                )
            )
    if scan.reason not in ("central directory", "end of file"):
        dropped.append((f"@{scan.stop}", scan.reason))
    return kept, dropped


def _rebuild_records(
    records: list[dict[str, Any]], parsed: list[ManifestItem | None], kept: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Manifest records for the kept members, and the originals of the lost ones."""
    out: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    for obj, item in zip(records, parsed, strict=True):
        if item is None or not (item.outcome in _CONTENT and item.container_path):
            out.append(obj)
            continue
        if item.container_path in kept:
            out.append(obj)
            continue
        lost.append(obj)
        out.append(
            {
                **obj,
                "outcome": Outcome.FAILED.value,
                "container_path": "",
                "error": (
                    f"its member {item.container_path} was not intact in the interrupted "
                    "container (dropped by recover)"
                ),
            }
        )
    return out, lost


def _last_time(log: list[dict[str, Any]]) -> str | None:
    """The time of the last journaled event (about when the run was killed)."""
    return next((str(r["time"]) for r in reversed(log) if r.get("time")), None)


def _acquisition(
    log: list[dict[str, Any]], records: list[dict[str, Any]], dropped: int, lost: int
) -> dict[str, Any]:
    start = next((r for r in log if r.get("event") == "start"), None)
    base = start.get("acquisition") if start is not None else None
    doc: dict[str, Any] = dict(base) if isinstance(base, dict) else {"tool": "selective-imager"}
    counts = Counter(str(r.get("outcome", "")) for r in records)
    last = _last_time(log)
    doc.update(
        status=INCOMPLETE,
        ended=None,
        counts={o.value: counts.get(o.value, 0) for o in Outcome},
        bytes_collected=sum(
            int(r.get("size") or 0) for r in records if r.get("outcome") in _OWNERS
        ),
        disk_hash=None,
        status_reasons=[
            "interrupted: the run was killed before it finished; rebuilt by recover "
            "from the local headers and the journals"
        ],
        recovered={
            "time": utc_now(),
            "tool": TOOL,
            "last_journal_time": last,
            "members_dropped": dropped,
            "records_lost": lost,
        },
    )
    return doc


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def recover(path: str | os.PathLike[str]) -> RecoverReport:
    """Rebuild a sealed container (status ``incomplete``) from a killed run.

    Raises:
        ContainerError: a run is still writing it, it is not a ZIP file, it cannot be
            written, or there are no journals and it is not a finished container.
    """
    out = Path(path)
    manifest_journal, log_journal = journal_paths(out)
    if not manifest_journal.exists() and not log_journal.exists():
        if not out.exists():
            raise ContainerError(f"{out}: no such file")
        status = _finished_status(out)
        if status is None:
            raise ContainerError(
                f"{out}: not a selective-imager container, and no journals of an unfinished "
                "run lie beside it: nothing to recover"
            )
        return RecoverReport(
            str(out), False, f"nothing to recover: {out} is a finished container (status {status})"
        )
    if any(journal_in_use(p) for p in (manifest_journal, log_journal)):
        raise ContainerError(f"{out}: a collection is still writing it (its journal is locked)")
    if not out.exists():
        out.touch()
    scan = scan_local_headers(out)
    records, bad_manifest = _read_journal(manifest_journal)
    log, bad_log = _read_journal(log_journal)
    parsed, owners = _index_records(records)
    kept, dropped = _select(out, scan, owners)
    manifest, lost = _rebuild_records(records, parsed, {m.name for m in kept})
    now = utc_now()
    events: list[dict[str, Any]] = [
        {
            "time": now,
            "level": "warning",
            "event": "recovered",
            "message": (
                f"recover: {len(kept)} member(s) kept, {len(dropped)} dropped, "
                f"{len(lost)} record(s) lost their member; unreadable journal lines: "
                f"{bad_manifest} in the manifest, {bad_log} in the log"
            ),
        },
        *(
            {"time": now, "level": "warning", "event": "recover-dropped",
             "message": f"{name}: {why}", "member": name}
            for name, why in dropped
        ),
        *(
            {"time": now, "level": "error", "event": "recover-record-lost",
             "message": f"{r.get('container_path')}: member not intact", "record": r}
            for r in lost
        ),
    ]
    # Cut after the last kept member: a torn or dropped tail goes, kept bytes stay.
    ends = {m.offset: m.end for m in scan.members}
    end = max((ends[m.offset] for m in kept), default=0)
    writer = ZipWriter(out, append_at=end, existing=tuple(kept), hash_output=False)
    try:
        writer.add_bytes(MANIFEST_NAME, _jsonl(manifest), compress=True)
        writer.add_bytes(LOG_NAME, _jsonl(log + events), compress=True)
        # The same exports as a finished run, from the rebuilt manifest.
        store_exports(writer, manifest, _last_time(log) or now)
        doc = _acquisition(log, manifest, len(dropped), len(lost))
        writer.add_bytes(
            ACQUISITION_NAME,
            json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8"),
            compress=True,
        )
        store_report(writer, doc, manifest)
        write_seal(writer, tool=TOOL)
    finally:
        writer.close()
    for journal in (manifest_journal, log_journal):
        with contextlib.suppress(FileNotFoundError):
            journal.unlink()
    counts = dict(Counter(str(r.get("outcome", "")) for r in manifest))
    return RecoverReport(
        path=str(out),
        recovered=True,
        message=(
            f"recovered {out}: {len(kept)} member(s) kept, {len(dropped)} dropped, "
            f"{len(manifest)} record(s) ({len(lost)} lost their member); status incomplete"
        ),
        kept=len(kept),
        dropped=tuple(dropped),
        records=len(manifest),
        lost=len(lost),
        counts=counts,
    )


__all__ = [
    "LocalMember",
    "RecoverReport",
    "Scan",
    "finished_status",
    "needs_recovery",
    "recover",
    "scan_local_headers",
]

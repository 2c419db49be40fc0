"""Reading containers back: verify, extract, summarise.

Reading uses Python's :mod:`zipfile` (an independent implementation from our writer,
which is the point of a verification). Every check names what differs:

* ``modified``: a member's SHA-256 differs from the seal, or its data is corrupt
  (CRC-32 or deflate error);
* ``missing``: in the seal (or referenced by the manifest) but not in the ZIP;
* ``unexpected``: in the ZIP but not in the seal (or a duplicated member name);
* ``seal-missing``: there is no seal member;
* ``manifest-mismatch``: a manifest item's content does not hash to its recorded
  hashes, or the manifest cannot be parsed, or it points outside ``files/``;
* ``unsafe-name``: a member name that is absolute, has ``..`` or empty segments, a
  backslash or a drive letter (this tool never writes one; extraction never uses it);
* ``symlink``: a member marked as a symbolic link (never created on extraction);
* ``impossible-size``: a member declares more data than deflate can produce from its
  compressed size (it is not read);
* ``acquisition-mismatch``: the counts in ``acquisition.json`` disagree with the
  manifest.

Separately from those (which decide whether the container is *intact*), the report
says whether the acquisition is *complete*: the recorded status is ``complete``, no
item failed or was read only partly, and the disk hash (when asked for) finished.

Hostile input is bounded: metadata members are read only up to a size limit,
manifest lines up to :data:`MAX_LINE`, member data is streamed in 1 MiB pieces and
never beyond its declared size.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
import stat
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from selective_imager.collect.hashing import ALGORITHMS, MultiHasher
from selective_imager.collect.outcome import CONTENT_OUTCOMES, STORED_OUTCOMES, Outcome
from selective_imager.container.age import Identity, is_age_file, open_plaintext
from selective_imager.container.names import (
    FILES_PREFIX,
    IrreversibleNameError,
    decode_member_path,
    encode_segment,
    is_portable_segment,
    sparse_role,
    split_volume_label,
)
from selective_imager.container.seal import (
    ACQUISITION_NAME,
    MANIFEST_NAME,
    SEAL_NAMES,
    Seal,
    parse_seal,
)
from selective_imager.container.zipwriter import check_member_name
from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

_CHUNK = 1 << 20
_CONTENT_OUTCOMES = CONTENT_OUTCOMES
# Metadata members (seal, acquisition) are read whole: never more than this.
MAX_METADATA = 64 << 20
# One manifest line (one item) is never longer than this.
MAX_LINE = 16 << 20
# Deflate cannot expand data more than ~1032:1; a member declaring more lies.
_MAX_RATIO = 1100
# Sparse items are expanded with zeros up to at most this (or the source size).
_MAX_SPARSE = 64 << 30
COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Difference:
    """One thing that does not match.

    Attributes:
        member: the member name (or the manifest item's ``container_path``).
        kind: ``modified``, ``missing``, ``unexpected``, ``seal-missing`` or
            ``manifest-mismatch``.
        expected: the recorded value (hex digest), when there is one.
        found: the value found, when there is one.
        detail: a short explanation (which item, which algorithm).
    """

    member: str
    kind: str
    expected: str | None = None
    found: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of :func:`verify`.

    Attributes:
        path: the container.
        intact: no difference at all (every member and item hashes as recorded).
        differences: every difference found.
        seal_present: a seal member exists and parses.
        members_checked: members re-hashed.
        items_checked: manifest items whose content was re-hashed.
        bytes_hashed: uncompressed bytes read.
        seconds: wall time.
        complete: the acquisition it records is complete (see the module notes).
        status: the status recorded in ``acquisition.json`` (None when absent).
        not_complete: why it is not complete (empty when it is).
    """

    path: str
    intact: bool
    differences: tuple[Difference, ...]
    seal_present: bool
    members_checked: int
    items_checked: int
    bytes_hashed: int
    seconds: float
    complete: bool = False
    status: str | None = None
    not_complete: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Intact and complete: the only case ``verify`` calls OK."""
        return self.intact and self.complete


@dataclass(frozen=True, slots=True)
class ExtractReport:
    """Result of :func:`extract`.

    Attributes:
        dest: the destination directory.
        files: files written.
        bytes: logical bytes written (holes of sparse files included).
        written: ``(item path, file written)`` pairs.
        refused: ``(name, reason)`` of items not written because they were unsafe
            (outside the destination, through a symlink) or already existed.
        failed: ``(name, error)`` of items that could not be written or read.
    """

    dest: str
    files: int
    bytes: int
    written: tuple[tuple[str, str], ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing refused or failed."""
        return not self.refused and not self.failed


@dataclass(frozen=True, slots=True)
class ManifestItem:
    """The fields of a manifest line the reader needs (``raw`` has all of them)."""

    line: int
    path: str
    stream: str
    volume: str
    container_path: str
    outcome: str
    hashes: dict[str, str]
    sparse_size: int | None = None
    sparse_ranges: tuple[tuple[int, int], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_content(self) -> bool:
        """The item points at a member holding its content."""
        return self.outcome in _CONTENT_OUTCOMES and bool(self.container_path)

    @property
    def display(self) -> str:
        """``volume/path[:stream]`` for messages."""
        text = f"{self.volume}/{self.path}" if self.volume else self.path
        return f"{text}:{self.stream}" if self.stream else text


def _parse_item(line_no: int, obj: Any) -> ManifestItem:
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    hashes = obj.get("hashes") or {}
    if not isinstance(hashes, dict):
        raise ValueError("'hashes' is not an object")
    sparse = obj.get("sparse")
    sparse_size: int | None = None
    ranges: tuple[tuple[int, int], ...] = ()
    if sparse:
        sparse_size = int(sparse["logical_size"])
        ranges = tuple((int(off), int(length)) for off, length in sparse["ranges"])
        end = 0
        for off, length in ranges:
            if off < end or length < 0:
                raise ValueError("sparse ranges overlap or are out of order")
            end = off + length
        if end > sparse_size:
            raise ValueError("sparse ranges run past logical_size")
    return ManifestItem(
        line=line_no,
        path=str(obj.get("path", "")),
        stream=str(obj.get("stream") or ""),
        volume=str(obj.get("volume", "")) + _store_suffix(obj.get("vss")),
        container_path=str(obj.get("container_path") or ""),
        outcome=str(obj.get("outcome", "")),
        hashes={str(k).lower(): str(v).lower() for k, v in hashes.items() if v},
        sparse_size=sparse_size,
        sparse_ranges=ranges,
        raw=obj,
    )


class Container:
    """An open container (read-only). Use :func:`open_container`.

    Attributes:
        path: the ZIP file.
        zip: the underlying :class:`zipfile.ZipFile`.
    """

    def __init__(
        self, path: str | os.PathLike[str], identities: list[Identity] | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.encrypted = is_age_file(self.path)
        source: Any = self.path
        if self.encrypted:
            if not identities:
                raise ContainerError(
                    f"{self.path} is age-encrypted: give --identity KEYFILE to read it"
                )
            # Decrypted chunk by chunk in memory: no plaintext reaches the disk.
            source = open_plaintext(self.path, identities)
        try:
            self.zip = zipfile.ZipFile(source, "r")
        except (OSError, zipfile.BadZipFile) as exc:
            if source is not self.path:
                source.close()
            raise ContainerError(f"cannot open container {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the ZIP file."""
        self.zip.close()

    def __enter__(self) -> Container:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def names(self) -> list[str]:
        """Member names in file order."""
        return self.zip.namelist()

    def seal_name(self) -> str | None:
        """Name of the seal member, or None."""
        for name in SEAL_NAMES:
            if name in self.zip.NameToInfo:
                return name
        return None

    def seal(self) -> Seal | None:
        """The parsed seal, or None when there is none.

        Raises:
            ContainerError: the seal exists but cannot be read or parsed.
        """
        name = self.seal_name()
        if name is None:
            return None
        return parse_seal(self.read(name))

    def read(self, name: str, limit: int = MAX_METADATA) -> bytes:
        """A whole member (for small metadata members), at most ``limit`` bytes.

        Raises:
            ContainerError: missing, unreadable, or larger than ``limit``.
        """
        try:
            info = self.zip.getinfo(name)
            if info.file_size > limit:
                raise ContainerError(
                    f"{name!r} declares {info.file_size} bytes (more than {limit}): not read"
                )
            with self.zip.open(info, "r") as fh:
                data = fh.read(limit + 1)
        except (KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ContainerError(f"cannot read {name!r}: {exc}") from exc
        if len(data) > limit:
            raise ContainerError(f"{name!r} is larger than {limit} bytes: not read")
        return data

    def open(self, name: str) -> IO[bytes]:
        """A stream of a member's uncompressed content."""
        try:
            return self.zip.open(name, "r")
        except (KeyError, OSError, zipfile.BadZipFile) as exc:
            raise ContainerError(f"cannot open {name!r}: {exc}") from exc

    def acquisition(self) -> dict[str, Any] | None:
        """``acquisition.json``, or None when absent or unparsable."""
        if ACQUISITION_NAME not in self.zip.NameToInfo:
            return None
        try:
            doc = json.loads(self.read(ACQUISITION_NAME))
        except (ContainerError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def has_manifest(self) -> bool:
        """Whether ``manifest.jsonl`` exists."""
        return MANIFEST_NAME in self.zip.NameToInfo

    def manifest(self) -> Iterator[ManifestItem | ValueError]:
        """Manifest items in order; a line that does not parse yields a ValueError.

        Streams the member, so a manifest of millions of lines stays cheap.
        """
        if not self.has_manifest():
            return
        with self.open(MANIFEST_NAME) as raw:
            line_no = 0
            while True:
                try:
                    line = raw.readline(MAX_LINE + 1)
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                    yield ValueError(f"{MANIFEST_NAME}: unreadable after line {line_no}: {exc}")
                    return
                if not line:
                    return
                line_no += 1
                if len(line) > MAX_LINE:
                    yield ValueError(f"{MANIFEST_NAME} line {line_no}: longer than {MAX_LINE}")
                    if not _skip_line(raw):
                        return
                    continue
                if not line.strip():
                    continue
                try:
                    yield _parse_item(line_no, json.loads(line))
                except (ValueError, KeyError, TypeError, RecursionError) as exc:
                    yield ValueError(f"{MANIFEST_NAME} line {line_no}: {exc}")


def _skip_line(raw: IO[bytes]) -> bool:
    """Read past the rest of an over-long line; False at the end of the member."""
    try:
        while piece := raw.readline(_CHUNK):
            if piece.endswith(b"\n"):
                return True
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error):
        return False
    return False


def _content_items(box: Container) -> Iterator[ManifestItem | ValueError]:
    """Manifest items, with each duplicate given the layout of the member it uses.

    A duplicate's own ``sparse`` field describes its own file; the member it points at
    was written with the layout of the item that stored it (same logical content,
    possibly different sparse runs), so that layout is the one to decode it with.
    """
    owners: dict[str, tuple[int | None, tuple[tuple[int, int], ...]]] = {}
    has_duplicates = False
    for entry in box.manifest():
        if isinstance(entry, ValueError) or not entry.has_content:
            continue
        if entry.outcome == Outcome.DUPLICATE:
            has_duplicates = True
        else:
            owners.setdefault(entry.container_path, (entry.sparse_size, entry.sparse_ranges))
    for entry in box.manifest():
        if has_duplicates and isinstance(entry, ManifestItem) and entry.outcome == Outcome.DUPLICATE:
            layout = owners.get(entry.container_path)
            if layout is not None:
                entry = replace(entry, sparse_size=layout[0], sparse_ranges=layout[1])
        yield entry


def open_container(
    path: str | os.PathLike[str], identities: list[Identity] | None = None
) -> Container:
    """Open a container for reading (an age-encrypted one with ``identities``).

    Raises:
        ContainerError: not a readable ZIP file.
    """
    return Container(path, identities)


class _SparseFeeder:
    """Hashes the logical file of a sparse item while its member streams by."""

    def __init__(self, item: ManifestItem, algorithms: tuple[str, ...]) -> None:
        self.item = item
        self.hasher = MultiHasher(algorithms)
        self.ranges = list(item.sparse_ranges)
        self.index = 0
        self.used = 0  # bytes consumed of the current range
        self.logical = 0
        self.overflow = False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view.nbytes:
            if self.index >= len(self.ranges):
                self.overflow = True
                return
            off, length = self.ranges[self.index]
            if self.used == 0 and self.logical < off:
                self.hasher.update_zeros(off - self.logical)
                self.logical = off
            take = min(length - self.used, view.nbytes)
            self.hasher.update(view[:take])
            view = view[take:]
            self.used += take
            self.logical += take
            if self.used == length:
                self.index += 1
                self.used = 0

    def finish(self) -> tuple[dict[str, str], str]:
        problem = ""
        if self.overflow:
            problem = "member is longer than its sparse ranges"
        elif self.index < len(self.ranges) and any(ln for _, ln in self.ranges[self.index :]):
            problem = "member is shorter than its sparse ranges"
        size = self.item.sparse_size or 0
        if self.logical < size:
            self.hasher.update_zeros(size - self.logical)
        return self.hasher.hexdigests(), problem


def _item_algorithms(item: ManifestItem) -> tuple[str, ...]:
    return tuple(alg for alg in ALGORITHMS if alg in item.hashes)


def _structure(infos: list[zipfile.ZipInfo]) -> list[Difference]:
    """Findings about the member list itself: names, duplicates, links, sizes."""
    diffs: list[Difference] = []
    counts = Counter(info.filename for info in infos)
    for name, count in counts.items():
        if count > 1:
            diffs.append(Difference(name, "unexpected", detail=f"member appears {count} times"))
    for info in infos:
        name = info.filename
        try:
            check_member_name(name.rstrip("/") if info.is_dir() else name)
        except ContainerError as exc:
            diffs.append(Difference(name, "unsafe-name", detail=str(exc)))
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            diffs.append(Difference(name, "symlink", detail="a symbolic link entry"))
        if info.file_size > info.compress_size * _MAX_RATIO + 1024:
            diffs.append(
                Difference(
                    name,
                    "impossible-size",
                    detail=(
                        f"declares {info.file_size} bytes from {info.compress_size} "
                        "compressed: not read"
                    ),
                )
            )
    return diffs


def _completeness(
    acquisition: dict[str, Any] | None, outcomes: Counter[str]
) -> tuple[str | None, tuple[str, ...], list[Difference]]:
    """``(recorded status, why not complete, consistency findings)``."""
    if acquisition is None:
        return None, ("no readable acquisition.json: what the run achieved is unknown",), []
    status = str(acquisition.get("status") or "unknown")
    reasons: list[str] = []
    diffs: list[Difference] = []
    if status != COMPLETE:
        why = acquisition.get("status_reasons")
        detail = "; ".join(str(w) for w in why) if isinstance(why, list) and why else ""
        reasons.append(f"status {status}" + (f": {detail}" if detail else ""))
    # A status other than complete already says why; a "complete" that the rest of the
    # record contradicts is not believed.
    checks: list[str] = []
    for outcome in ("failed", "partial"):
        if outcomes.get(outcome):
            checks.append(f"{outcomes[outcome]} item(s) {outcome}")
    errors = acquisition.get("volume_errors")
    if isinstance(errors, list) and errors:
        checks.append(f"{len(errors)} volume(s) not searched: " + "; ".join(map(str, errors)))
    disk = acquisition.get("disk_hash")
    if isinstance(disk, dict) and not disk.get("complete"):
        checks.append("the disk hash did not finish")
    if status == COMPLETE:
        reasons += checks
    recorded = acquisition.get("counts")
    if isinstance(recorded, dict):
        for outcome, count in recorded.items():
            if isinstance(count, int) and count != outcomes.get(str(outcome), 0):
                diffs.append(
                    Difference(
                        ACQUISITION_NAME,
                        "acquisition-mismatch",
                        str(count),
                        str(outcomes.get(str(outcome), 0)),
                        f"{outcome} items recorded vs in the manifest",
                    )
                )
    if diffs and status == COMPLETE:
        reasons.append("acquisition.json disagrees with the manifest")
    return status, tuple(reasons), diffs


def _listing_members(
    acquisition: dict[str, Any] | None, sealed: dict[str, str], present: set[str]
) -> list[Difference]:
    """The ``--listing`` members acquisition.json names: present, and hashed as sealed.

    Their content is re-hashed against the seal like every member's.
    """
    listings = (acquisition or {}).get("listing")
    diffs: list[Difference] = []
    for record in listings if isinstance(listings, list) else ():
        for key in ("jsonl", "bodyfile"):
            member = record.get(key) if isinstance(record, dict) else None
            if not isinstance(member, dict) or not isinstance(member.get("member"), str):
                continue
            name, recorded = member["member"], str(member.get("sha256") or "")
            if name not in present:
                diffs.append(Difference(name, "missing", recorded, None, "listing member"))
            elif sealed and sealed.get(name) != recorded:
                diffs.append(
                    Difference(
                        name,
                        "acquisition-mismatch",
                        recorded,
                        sealed.get(name),
                        "listing member: acquisition.json vs the seal",
                    )
                )
    return diffs


def verify(
    path: str | os.PathLike[str],
    *,
    progress: Callable[[int], None] | None = None,
    identities: list[Identity] | None = None,
) -> VerifyReport:
    """Re-hash every member against the seal and every item against the manifest.

    Each member is read once: the seal's SHA-256 and the hashes of the items stored in
    it (sparse items expanded to their logical size) are computed in the same pass.
    Whether the container is intact and whether the acquisition is complete are two
    separate answers (:attr:`VerifyReport.intact`, :attr:`VerifyReport.complete`).

    Args:
        path: the container.
        progress: called with the total uncompressed bytes read so far.

    Raises:
        ContainerError: the file is not a readable ZIP file.
    """
    started = time.perf_counter()
    members_checked = items_checked = bytes_read = 0
    with open_container(path, identities) as box:
        infos = box.zip.infolist()
        diffs = _structure(infos)
        unreadable = {d.member for d in diffs if d.kind in ("impossible-size", "symlink")}

        seal: Seal | None = None
        seal_name = box.seal_name()
        if seal_name is None:
            diffs.append(Difference(SEAL_NAMES[0], "seal-missing", detail="no seal member"))
        else:
            try:
                seal = box.seal()
            except ContainerError as exc:
                diffs.append(Difference(seal_name, "seal-missing", detail=str(exc)))
        sealed = seal.members if seal is not None else {}

        acquisition = box.acquisition()
        source = (acquisition or {}).get("source")
        source_size = source.get("size") if isinstance(source, dict) else None
        sparse_cap = max(_MAX_SPARSE, source_size if isinstance(source_size, int) else 0)

        # Items grouped by the member holding their content.
        outcomes: Counter[str] = Counter()
        by_member: dict[str, list[ManifestItem]] = {}
        for entry in _content_items(box):
            if isinstance(entry, ValueError):
                diffs.append(Difference(MANIFEST_NAME, "manifest-mismatch", detail=str(entry)))
                continue
            outcomes[entry.outcome] += 1
            if not entry.has_content:
                continue
            if not entry.container_path.startswith(FILES_PREFIX + "/"):
                diffs.append(
                    Difference(
                        entry.container_path,
                        "manifest-mismatch",
                        detail=f"{entry.display} points outside {FILES_PREFIX}/",
                    )
                )
                continue
            if (entry.sparse_size or 0) > sparse_cap:
                diffs.append(
                    Difference(
                        entry.container_path,
                        "manifest-mismatch",
                        detail=f"{entry.display}: sparse size {entry.sparse_size} not credible",
                    )
                )
                continue
            if entry.hashes:
                by_member.setdefault(entry.container_path, []).append(entry)

        present = {info.filename for info in infos}
        diffs.extend(_listing_members(acquisition, sealed, present))
        for name in sealed:
            if name not in present:
                diffs.append(Difference(name, "missing", sealed[name], None, "sealed member"))
        for name, items in by_member.items():
            if name not in present:
                for item in items:
                    diffs.append(
                        Difference(name, "missing", None, None, f"manifest item {item.display}")
                    )

        seen: set[str] = set()
        for info in infos:
            name = info.filename
            if name in SEAL_NAMES or name in seen or info.is_dir():
                continue
            seen.add(name)
            if seal is not None and name not in sealed:
                diffs.append(Difference(name, "unexpected", None, None, "not in the seal"))
            if name in unreadable:
                continue
            items = by_member.get(name, [])
            plain_algs = {"sha256"} if name in sealed else set()
            feeders: list[_SparseFeeder] = []
            for item in items:
                if item.sparse_size is None:
                    plain_algs.update(_item_algorithms(item))
                    size = item.raw.get("size")
                    if isinstance(size, int) and size != info.file_size:
                        diffs.append(
                            Difference(
                                name,
                                "manifest-mismatch",
                                str(size),
                                str(info.file_size),
                                f"size of {item.display} vs the member",
                            )
                        )
                else:
                    feeders.append(_SparseFeeder(item, _item_algorithms(item)))
            if not plain_algs and not feeders:
                continue
            plain = MultiHasher(a for a in ALGORITHMS if a in plain_algs)
            try:
                with box.zip.open(info, "r") as stream:
                    while chunk := stream.read(_CHUNK):
                        plain.update(chunk)
                        for feeder in feeders:
                            feeder.feed(chunk)
                        bytes_read += len(chunk)
                        if progress is not None:
                            progress(bytes_read)
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
                diffs.append(
                    Difference(name, "modified", sealed.get(name), None, f"corrupt data: {exc}")
                )
                members_checked += 1
                continue
            members_checked += 1
            found = plain.hexdigests()
            if name in sealed and found["sha256"] != sealed[name]:
                diffs.append(Difference(name, "modified", sealed[name], found["sha256"]))
            for item in items:
                items_checked += 1
                if item.sparse_size is None:
                    digests, problem = found, ""
                else:
                    feeder = next(f for f in feeders if f.item is item)
                    digests, problem = feeder.finish()
                if problem:
                    diffs.append(
                        Difference(name, "manifest-mismatch", detail=f"{item.display}: {problem}")
                    )
                for alg in _item_algorithms(item):
                    if digests[alg] != item.hashes[alg]:
                        diffs.append(
                            Difference(
                                name,
                                "manifest-mismatch",
                                item.hashes[alg],
                                digests[alg],
                                f"{alg} of {item.display}",
                            )
                        )
        status, not_complete, acq_diffs = _completeness(acquisition, outcomes)
        diffs += acq_diffs
        if not box.has_manifest():
            not_complete = (*not_complete, "no manifest.jsonl")
        if diffs:
            not_complete = (
                "the container is not intact, so what it records cannot be trusted",
                *not_complete,
            )
    return VerifyReport(
        path=os.fspath(path),
        intact=not diffs,
        differences=tuple(diffs),
        seal_present=seal is not None,
        members_checked=members_checked,
        items_checked=items_checked,
        bytes_hashed=bytes_read,
        seconds=time.perf_counter() - started,
        complete=not not_complete,
        status=status,
        not_complete=not_complete,
    )


# -- extraction ------------------------------------------------------------------------


def _local_segment(segment: str) -> str:
    """``segment`` as a file name on this platform: as is when possible, else encoded."""
    if os.name == "nt":
        return segment if is_portable_segment(segment) else encode_segment(segment)
    ok = (
        segment not in ("", ".", "..")
        and "/" not in segment
        and "\0" not in segment
        and (os.altsep is None or os.altsep not in segment)
    )
    if ok:
        try:
            ok = len(os.fsencode(segment)) <= 255
        except UnicodeError:
            ok = False
    if ok:
        return segment
    encoded = encode_segment(segment)
    if len(encoded.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError("name segment too long for this file system")
    return encoded


def _store_suffix(vss: Any) -> str:
    """``/vss2`` for an item of shadow-copy store 2 (extracted beside the live volume)."""
    if isinstance(vss, dict) and isinstance(vss.get("index"), int):
        return f"/vss{vss['index']}"
    return ""


def _local_parts(volume: str, path: str, stream: str) -> list[str]:
    segments = path.split("/") if path else []
    if stream:
        # name:stream on POSIX; on Windows the encoded form avoids creating a real ADS.
        last = segments.pop() if segments else ""
        segments.append(f"{last}:{stream}" if os.name != "nt" else last + "%3A" + stream)
    # A shadow-copy store's volume (``0/vss2``) is a folder inside its live volume's.
    parts = [_local_segment(part) for part in split_volume_label(volume or "%")]
    parts += [_local_segment(seg) for seg in segments]
    return parts


# NTFS metadata streams KAPE saves as plain files beside their file (the SaveAsFileName of
# the KapeFiles targets $J, $SDS and $T): (path, stream) lower-cased -> the file's name.
_KAPE_STREAM_FILES = {
    ("$extend/$usnjrnl", "$j"): "$J",
    ("$extend/$usnjrnl", "$max"): "$Max",
    ("$secure", "$sds"): "$Secure_$SDS",
    ("$extend/$rmmetadata/$txflog/$tops", "$t"): "$T",
}
LAYOUTS = ("native", "kape")


def _kape_parts(letter: str | None, volume: str, path: str, stream: str) -> list[str]:
    """KAPE's target-output layout: ``C/Windows/...`` (a drive letter per volume)."""
    first, *nested = split_volume_label(volume or "%")
    top = letter or first
    saved_as = _KAPE_STREAM_FILES.get((path.lower(), stream.lower()))
    if saved_as is not None:
        folder = path.rpartition("/")[0]
        path, stream = f"{folder}/{saved_as}" if folder else saved_as, ""
    parts = _local_parts(volume, path, stream)
    return [_local_segment(top), *nested, *parts[1 + len(nested) :]]


def _parse_iso_ns(text: Any) -> int | None:
    """Nanoseconds since the epoch of ``2015-11-03T10:21:33.1234567Z``, else None."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    base, _, frac = text[:-1].partition(".")
    try:
        when = _dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    except ValueError:
        return None
    if frac and not frac.isdigit():
        return None
    seconds = (when - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)) // _dt.timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _zip_mtime_ns(info: zipfile.ZipInfo) -> int:
    extra = info.extra
    pos = 0
    while pos + 4 <= len(extra):
        tag = int.from_bytes(extra[pos : pos + 2], "little")
        size = int.from_bytes(extra[pos + 2 : pos + 4], "little")
        body = extra[pos + 4 : pos + 4 + size]
        if tag == 0x5455 and size >= 5 and body[0] & 1:
            return int.from_bytes(body[1:5], "little", signed=True) * 1_000_000_000
        pos += 4 + size
    # Our writer puts UTC in the DOS fields.
    when = _dt.datetime(*info.date_time, tzinfo=_dt.UTC)
    return int(when.timestamp()) * 1_000_000_000


def _item_mtime_ns(item: ManifestItem) -> int | None:
    times = item.raw.get("timestamps")
    if not isinstance(times, dict):
        return None
    for key in ("si", "times"):
        group = times.get(key)
        if isinstance(group, dict):
            value = _parse_iso_ns(group.get("modified"))
            if value is not None:
                return value
    return None


class _Extractor:
    def __init__(self, box: Container, dest: Path, *, overwrite: bool = False) -> None:
        self.box = box
        self.root = dest
        self.overwrite = overwrite
        self.written: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []
        self.bytes = 0

    def _make_parent(self, parts: list[str]) -> Path:
        """Create the directories under the root, never through a symlink."""
        current = self.root
        for part in parts:
            if part in ("", ".", "..") or os.sep in part or Path(part).is_absolute():
                raise PermissionError(f"unsafe path segment {part!r}")
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                current.mkdir()
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
                raise PermissionError(f"{current} is not a plain directory")
        return current

    def extract_one(
        self,
        label: str,
        parts: list[str],
        info: zipfile.ZipInfo,
        sparse: tuple[int | None, tuple[tuple[int, int], ...]],
        mtime_ns: int | None,
    ) -> None:
        try:
            parent = self._make_parent(parts[:-1])
            leaf = parts[-1]
            if leaf in ("", ".", "..") or os.sep in leaf:
                raise PermissionError(f"unsafe file name {leaf!r}")
            target = parent / leaf
            resolved_parent = Path(os.path.realpath(parent))
            if resolved_parent != self.root and self.root not in resolved_parent.parents:
                raise PermissionError("would land outside the destination")
        except PermissionError as exc:
            self.refused.append((label, str(exc)))
            return
        except ValueError as exc:
            self.refused.append((label, str(exc)))
            return
        except OSError as exc:
            self.failed.append((label, str(exc)))
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        flags |= getattr(os, "O_NOFOLLOW", 0)
        try:
            if self.overwrite and target.is_file() and not target.is_symlink():
                target.unlink()  # --force: a regular file is replaced, nothing else
            fd = os.open(target, flags, 0o644)
        except FileExistsError:
            self.refused.append((label, f"{target} already exists"))
            return
        except OSError as exc:
            self.failed.append((label, str(exc)))
            return
        try:
            logical = self._copy(fd, info, sparse)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
            os.close(fd)
            self.failed.append((label, f"{type(exc).__name__}: {exc}"))
            return
        os.close(fd)
        when = mtime_ns if mtime_ns is not None else _zip_mtime_ns(info)
        try:
            os.utime(target, ns=(when, when), follow_symlinks=False)
        except (OSError, NotImplementedError, OverflowError) as exc:
            self.failed.append((label, f"written, but the time was not set: {exc}"))
        self.bytes += logical
        self.written.append((label, str(target)))

    def _copy(
        self,
        fd: int,
        info: zipfile.ZipInfo,
        sparse: tuple[int | None, tuple[tuple[int, int], ...]],
    ) -> int:
        logical_size, ranges = sparse
        with self.box.zip.open(info, "r") as src:
            if logical_size is None:
                total = 0
                while chunk := src.read(_CHUNK):
                    _write_all(fd, chunk)
                    total += len(chunk)
                return total
            for offset, length in ranges:
                os.lseek(fd, offset, os.SEEK_SET)
                left = length
                while left:
                    chunk = src.read(min(_CHUNK, left))
                    if not chunk:
                        raise ValueError("member is shorter than its sparse ranges")
                    _write_all(fd, chunk)
                    left -= len(chunk)
            if src.read(1):
                raise ValueError("member is longer than its sparse ranges")
        # The rest stays a hole: truncate extends without writing.
        os.ftruncate(fd, logical_size)
        return logical_size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view.nbytes:
        done = os.write(fd, view)
        view = view[done:]


# File systems whose names are case-insensitive: ``--path`` matches them so too.
_CASELESS_FILESYSTEMS = frozenset({"ntfs", "fat", "fat12", "fat16", "fat32", "exfat"})


def _matches(
    pattern: str | None, volume: str, path: str, stream: str, filesystem: Any = None
) -> bool:
    if pattern is None:
        return True
    full = f"{path}:{stream}" if stream else path
    candidates: tuple[str, ...] = (path, full, f"{volume}/{path}", f"{volume}/{full}")
    if str(filesystem or "").lower() in _CASELESS_FILESYSTEMS:
        pattern = pattern.casefold()
        candidates = tuple(text.casefold() for text in candidates)
    return any(fnmatch.fnmatchcase(text, pattern) for text in candidates)


def check_layout(layout: str) -> None:
    """Refuse an unknown ``--layout`` before any work.

    Raises:
        ContainerError: ``layout`` is not one of :data:`LAYOUTS`.
    """
    if layout not in LAYOUTS:
        raise ContainerError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")


def check_destination(dest: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse a non-empty destination unless ``overwrite`` (said once, before any work).

    Raises:
        ContainerError: ``dest`` is a non-empty directory and ``overwrite`` is false.
    """
    root = Path(dest)
    if overwrite or not root.is_dir():
        return
    try:
        empty = not any(root.iterdir())
    except OSError as exc:
        raise ContainerError(f"cannot read {root}: {exc}") from exc
    if not empty:
        raise ContainerError(
            f"{root} is not empty: nothing extracted (--force writes into it, replacing files)"
        )


def extract(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    pattern: str | None = None,
    identities: list[Identity] | None = None,
    overwrite: bool = False,
    layout: str = "native",
) -> ExtractReport:
    """Restore collected files under ``dest/<volume>/<original path>``.

    Names are the originals where this platform can hold them, otherwise the
    portable encoded segment. A stream becomes ``name:stream`` on POSIX and
    ``name%3Astream`` on Windows. Sparse items get their logical size with holes,
    duplicates are restored from the member they point at, and times come from the
    manifest (``timestamps.si.modified``, else ``timestamps.times.modified``) or the
    member. Nothing is written outside ``dest`` and no symlink is followed; existing
    files are replaced only with ``overwrite`` (else reported as refused). Without a manifest,
    every ``files/`` member is restored from its decoded name.

    Args:
        path: the container.
        dest: destination directory (created when missing).
        pattern: a glob (``fnmatch``) on the original path; it may also match
            ``volume/path`` or ``path:stream``; case-insensitive for items of NTFS,
            FAT and exFAT volumes.
        layout: ``native`` (``dest/<volume>/<path>``) or ``kape`` (KAPE's target
            output: ``dest/C/Windows/...``, the system volume as ``C`` as in
            CopyLog.csv, other volumes by label, ``$J``/``$Max`` as files in ``$Extend``).
        overwrite: replace existing regular files (``--force``); otherwise a
            non-empty ``dest`` is refused before anything is written.

    Raises:
        ContainerError: the container cannot be opened, or ``dest`` is unusable.
    """
    check_layout(layout)
    root = Path(dest)
    check_destination(root, overwrite=overwrite)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContainerError(f"cannot create {root}: {exc}") from exc
    root = Path(os.path.realpath(root))
    with open_container(path, identities) as box:
        ex = _Extractor(box, root, overwrite=overwrite)
        if box.has_manifest():
            _extract_from_manifest(box, ex, pattern, layout)
        else:
            _extract_from_names(box, ex, pattern)
    return ExtractReport(
        dest=str(root),
        files=len(ex.written),
        bytes=ex.bytes,
        written=tuple(ex.written),
        refused=tuple(ex.refused),
        failed=tuple(ex.failed),
    )


def _extract_from_manifest(
    box: Container, ex: _Extractor, pattern: str | None, layout: str = "native"
) -> None:
    letters: dict[str, str] = {}
    if layout == "kape":
        from selective_imager.collect.exports import drive_letters

        letters = drive_letters(e.raw for e in box.manifest() if isinstance(e, ManifestItem))
    for entry in _content_items(box):
        if isinstance(entry, ValueError):
            ex.failed.append((MANIFEST_NAME, str(entry)))
            continue
        if not entry.has_content or not _matches(
            pattern, entry.volume, entry.path, entry.stream, entry.raw.get("filesystem")
        ):
            continue
        info = box.zip.NameToInfo.get(entry.container_path)
        if info is None:
            ex.failed.append((entry.display, f"member {entry.container_path!r} is missing"))
            continue
        try:
            if layout == "kape":
                letter = letters.get(str(entry.raw.get("volume_label")))
                parts = _kape_parts(letter, entry.volume, entry.path, entry.stream)
            else:
                parts = _local_parts(entry.volume, entry.path, entry.stream)
        except ValueError as exc:
            ex.refused.append((entry.display, str(exc)))
            continue
        ex.extract_one(
            entry.display,
            parts,
            info,
            (entry.sparse_size, entry.sparse_ranges),
            _item_mtime_ns(entry),
        )


def _extract_from_names(box: Container, ex: _Extractor, pattern: str | None) -> None:
    for info in box.zip.infolist():
        name = info.filename
        if not name.startswith(FILES_PREFIX + "/") or info.is_dir():
            continue
        if sparse_role(name):
            # Its bytes are not the logical file's; the manifest says how to expand it.
            ex.refused.append((name, "a sparse stream's member: restored only with the manifest"))
            continue
        try:
            volume, item_path, stream = decode_member_path(name)
        except IrreversibleNameError as exc:
            ex.failed.append((name, str(exc)))
            continue
        except ValueError as exc:
            ex.refused.append((name, str(exc)))
            continue
        if not _matches(pattern, volume, item_path, stream):
            continue
        try:
            parts = _local_parts(volume, item_path, stream)
        except ValueError as exc:
            ex.refused.append((name, str(exc)))
            continue
        ex.extract_one(name, parts, info, (None, ()), None)


def summary(
    path: str | os.PathLike[str], identities: list[Identity] | None = None
) -> dict[str, Any]:
    """What ``show`` prints: acquisition facts, counts by outcome, seal status.

    The seal status here is structural (present, parsable, covering exactly the other
    members); only :func:`verify` re-hashes content.
    """
    with open_container(path, identities) as box:
        infos = box.zip.infolist()
        outcomes: Counter[str] = Counter()
        by_volume: Counter[str] = Counter()
        bad_lines = 0
        collected_bytes = 0
        for entry in box.manifest():
            if isinstance(entry, ValueError):
                bad_lines += 1
                continue
            outcomes[entry.outcome] += 1
            by_volume[str(entry.raw.get("volume_label") or entry.raw.get("volume"))] += 1
            if entry.outcome in STORED_OUTCOMES:
                size = entry.raw.get("size")
                collected_bytes += size if isinstance(size, int) else 0
        seal_info: dict[str, Any] = {"present": False}
        seal_name = box.seal_name()
        if seal_name is not None:
            seal_info = {"present": True, "name": seal_name}
            try:
                seal = box.seal()
            except ContainerError as exc:
                seal_info["error"] = str(exc)
            else:
                assert seal is not None
                others = {i.filename for i in infos if i.filename not in SEAL_NAMES}
                seal_info.update(
                    created=seal.created,
                    tool=seal.tool,
                    members=len(seal.members),
                    covers_all=set(seal.members) == others,
                    unsealed=sorted(others - set(seal.members))[:20],
                    missing=sorted(set(seal.members) - others)[:20],
                )
        return {
            "path": box.path,
            "container_bytes": Path(box.path).stat().st_size,
            "encrypted": "age" if box.encrypted else None,
            "members": len(infos),
            "uncompressed_bytes": sum(i.file_size for i in infos),
            "compressed_bytes": sum(i.compress_size for i in infos),
            "acquisition": box.acquisition(),
            "items": sum(outcomes.values()),
            "outcomes": dict(outcomes),
            "items_by_volume": dict(by_volume),
            "collected_bytes": collected_bytes,
            "manifest_errors": bad_lines,
            "seal": seal_info,
        }


__all__ = [
    "Container",
    "Difference",
    "ExtractReport",
    "ManifestItem",
    "VerifyReport",
    "extract",
    "open_container",
    "summary",
    "verify",
]

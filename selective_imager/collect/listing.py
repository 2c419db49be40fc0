"""``--listing``: every entry of a volume as gzipped JSON Lines and as a TSK bodyfile.

On NTFS the listing comes from one sequential read of the $MFT through the project's own
record parser (:mod:`selective_imager.filesystems.ntfs_records`): every record with a
usable ``FILE`` header, deleted ones included, and the damaged ones by number. Other
file systems are walked (:meth:`Filesystem.walk`); the JSON schema is the same, with
``null`` where a field does not exist there.

Paths come from the ``$FILE_NAME`` parent references (a Win32 or POSIX name before the
DOS 8.3 one; every hard link is a path). A deleted entry lies under its directory when
that directory's record still carries the sequence number the entry names (or, for a
deleted directory, the one before it: NTFS counts a record's sequence up when it is
freed). An entry whose directory cannot be reached that way is an orphan, listed as
``$OrphanFiles/<name>``, and a record without a name as ``$OrphanFiles/OrphanFile-<N>``,
the names The Sleuth Kit gives them.

The bodyfile has the rows ``fls -r -m <label>/`` writes (The Sleuth Kit 3.x body
format, ``MD5|name|inode|mode|UID|GID|size|atime|mtime|ctime|crtime``, MD5 0): per name,
the ``($FILE_NAME)`` row with that name's times, and one row per ``$DATA`` stream and
``$INDEX_ROOT`` (``name:stream`` for a named one) with the ``$STANDARD_INFORMATION``
times; deleted entries end in `` (deleted)``. Known differences from ``fls``: the UID
column is the ``$STANDARD_INFORMATION`` owner id, 0 for its short 48-byte form (TSK
reads the 4 bytes past it); the root directory has its rows (``fls -m`` has none); the
``$OrphanFiles`` virtual directory and the ``dir/.:stream`` repeats of a directory's
streams are not written; an entry with more than one ``$FILE_NAME`` gets one
``($FILE_NAME)`` row per name (TSK writes one per attribute under the first name).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager.collect.exports import body_row
from selective_imager.errors import ContainerError, FilesystemError, SelectiveImagerError
from selective_imager.filesystems.ntfs_records import ATTR_INDEX_ROOT, NAMESPACE_DOS, iter_records
from selective_imager.models import attribute_names
from selective_imager.streams import ByteStream

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from selective_imager.container.zipwriter import ZipWriter
    from selective_imager.filesystems.base import Filesystem
    from selective_imager.filesystems.ntfs_records import FileName, MftRecord
    from selective_imager.models import FileEntry, Timestamp, TimestampSet

__all__ = [
    "BACKGROUND_MFT_LIMIT",
    "LISTING_PREFIX",
    "ListingSummary",
    "PendingListing",
    "write_listing",
]

LISTING_PREFIX = "listing/"
#: A $MFT up to this size is read whole and listed in a thread beside the collection.
BACKGROUND_MFT_LIMIT = 256 << 20
ORPHANS = "$OrphanFiles"
_ROOT = 5
_CHUNK = 1 << 20
_FILETIME_EPOCH = _dt.datetime(1601, 1, 1, tzinfo=_dt.UTC)
_UNIX_DELTA = 11_644_473_600
_READONLY = 0x1
_HIDDEN = 0x2
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


@dataclass(slots=True)
class ListingSummary:
    """What one volume's listing holds (for ``acquisition.json``).

    Attributes:
        volume: the volume label.
        source: ``mft`` (own $MFT parser) or ``walk`` (the file system's walk).
        jsonl: member name and SHA-256 of the JSON Lines (gzip) member.
        bodyfile: member name and SHA-256 of the bodyfile member.
        entries: JSON lines written (one per entry, damaged records included).
        deleted: entries not in use.
        damaged: records (or directories) that could not be read.
        orphans: entries whose directory could not be reached.
        problems: the first unreadable records or directories, one line each.
    """

    volume: str
    source: str
    jsonl: dict[str, str] = field(default_factory=dict)
    bodyfile: dict[str, str] = field(default_factory=dict)
    entries: int = 0
    deleted: int = 0
    damaged: int = 0
    orphans: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "volume": self.volume,
            "source": self.source,
            "jsonl": dict(self.jsonl),
            "bodyfile": dict(self.bodyfile),
            "entries": self.entries,
            "deleted": self.deleted,
            "damaged": self.damaged,
            "orphans": self.orphans,
            "problems": list(self.problems),
        }


# -- time formatting ----------------------------------------------------------------


class _Clock:
    """FILETIME -> ISO 8601 with 7 fraction digits (the second part memoised)."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}
        self._fragments: dict[tuple[int, int, int, int], str] = {}

    def iso(self, filetime: int) -> str | None:
        if not filetime:
            return None
        seconds, frac = divmod(filetime, 10_000_000)
        base = self._seconds.get(seconds)
        if base is None:
            try:
                when = _FILETIME_EPOCH + _dt.timedelta(seconds=seconds)
            except OverflowError:
                return f"out-of-range:{filetime}"
            if len(self._seconds) > 200_000:
                self._seconds.clear()
            base = self._seconds[seconds] = when.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{base}.{frac:07d}Z"

    def times(self, values: tuple[int, int, int, int] | None) -> dict[str, Any] | None:
        if values is None:
            return None
        c, m, ch, a = values
        iso = self.iso
        return {
            "created": iso(c),
            "modified": iso(m),
            "changed": iso(ch),
            "accessed": iso(a),
            "filetime": list(values),
        }

    def json(self, values: tuple[int, int, int, int] | None) -> str:
        """:meth:`times` as JSON text (memoised: files made together share their times)."""
        if values is None:
            return "null"
        text = self._fragments.get(values)
        if text is None:
            if len(self._fragments) > 100_000:
                self._fragments.clear()
            quoted = []
            seconds_cache = self._seconds
            for filetime in values:
                if not filetime:
                    quoted.append("null")
                    continue
                seconds, frac = divmod(filetime, 10_000_000)
                base = seconds_cache.get(seconds)
                if base is None:
                    quoted.append(_quoted(self.iso(filetime)))
                else:
                    quoted.append(f'"{base}.{frac:07d}Z"')
            c, m, ch, a = values
            text = self._fragments[values] = (
                f'{{"created":{quoted[0]},"modified":{quoted[1]},"changed":{quoted[2]},'
                f'"accessed":{quoted[3]},"filetime":[{c},{m},{ch},{a}]}}'
            )
        return text


def _quoted(text: str | None) -> str:
    return "null" if text is None else f'"{text}"'


def _unix(filetime: int) -> int:
    """Whole seconds since 1970 (negative before; 0 for a zero FILETIME, i.e. none)."""
    return filetime // 10_000_000 - _UNIX_DELTA if filetime else 0


def _perms(si_flags: int) -> str:
    """TSK's NTFS permission string: no r when read-only, no w when hidden."""
    r = "-" if si_flags & _READONLY else "r"
    w = "-" if si_flags & _HIDDEN else "w"
    return f"{r}{w}x" * 3


# -- NTFS: paths from parent references ------------------------------------------------


@dataclass(slots=True)
class _Dir:
    sequence: int
    in_use: bool
    parent: int
    parent_sequence: int
    name: str


class _Paths:
    """Directory paths from the records seen so far."""

    def __init__(self) -> None:
        self.dirs: dict[int, _Dir] = {}
        self.resolved: dict[int, str] = {_ROOT: ""}
        self.root_sequence: int | None = None

    def add(self, record: MftRecord, name: FileName | None) -> None:
        if record.entry == _ROOT:
            self.root_sequence = record.sequence
            return
        if name is not None:
            self.dirs[record.entry] = _Dir(
                record.sequence, record.in_use, name.parent_entry, name.parent_sequence, name.name
            )

    def path_of(self, parent: int, sequence: int) -> str | None:
        """The path of directory ``parent`` as a child naming ``sequence`` sees it.

        None while a directory on the way is unknown (not read yet, or never: then the
        child is an orphan), reused (another sequence number), or in a loop.
        """
        chain: list[tuple[int, str]] = []
        current, current_seq = parent, sequence
        while True:
            if current == _ROOT:
                if self.root_sequence is None or current_seq not in (self.root_sequence, 0):
                    return None
                base = ""
                break
            info = self.dirs.get(current)
            if info is None or len(chain) > 4096 or not _sequence_matches(info, current_seq):
                return None
            known = self.resolved.get(current)
            if known is not None:
                base = known
                break
            chain.append((current, info.name))
            current, current_seq = info.parent, info.parent_sequence
        for number, text in reversed(chain):
            base = f"{base}/{text}" if base else text
            self.resolved[number] = base
        return base


def _sequence_matches(info: _Dir, wanted: int) -> bool:
    """The directory record is the one a child names (a freed one counts one up)."""
    if wanted == 0 or info.sequence == wanted:
        return True
    return not info.in_use and info.sequence == (wanted + 1) & 0xFFFF


def _links(record: MftRecord) -> list[FileName]:
    """The names that are paths: every non-DOS name, each (parent, name) once."""
    seen: set[tuple[int, str]] = set()
    out: list[FileName] = []
    for name in record.names:
        if name.namespace == NAMESPACE_DOS:
            continue
        key = (name.parent_entry, name.name)
        if key not in seen:
            seen.add(key)
            out.append(name)
    if not out and record.names:
        out.append(record.names[0])  # only a DOS name: it is the name
    return out


# -- the writer ------------------------------------------------------------------------


class _Output:
    """The gzip JSON Lines and the bodyfile, spooled to temporary files beside the output.

    Spooled, so that the listing can be made while the collection writes its members
    (a ZIP writer takes one member at a time); :meth:`store` copies them in.
    """

    def __init__(self, label: str, workdir: Path) -> None:
        import zlib

        try:
            from zlib_ng import zlib_ng as _zlib

            self._gzip: Any = _zlib.compressobj(1, _zlib.DEFLATED, 31)
        except ImportError:  # pragma: no cover - zlib-ng is a dependency
            self._gzip = zlib.compressobj(1, zlib.DEFLATED, 31)
        self.jsonl_name = f"{LISTING_PREFIX}{label}.jsonl.gz"
        self.body_name = f"{LISTING_PREFIX}{label}.bodyfile"
        self._lines: list[str] = []
        self._body_lines: list[str] = []
        self._paths: list[Path] = []
        self._jsonl = self._spool(workdir, ".jsonl.gz")
        self._body = self._spool(workdir, ".body")

    def _spool(self, workdir: Path, suffix: str) -> Any:
        try:
            fd, name = tempfile.mkstemp(prefix=".listing-", suffix=suffix, dir=workdir)
        except OSError as exc:
            self._remove()
            raise ContainerError(f"cannot write the listing beside the output: {exc}") from exc
        self._paths.append(Path(name))
        return os.fdopen(fd, "wb")

    def line(self, obj: dict[str, Any]) -> None:
        self.raw_line(_encode(obj))

    def raw_line(self, text: str) -> None:
        self._lines.append(text)
        if len(self._lines) >= 2048:
            self._flush_lines()

    def body(self, row: str) -> None:
        self._body_lines.append(row)
        if len(self._body_lines) >= 4096:
            self._flush_body()

    def _flush_lines(self) -> None:
        if self._lines:
            data = ("\n".join(self._lines) + "\n").encode("ascii")
            self._lines.clear()
            self._jsonl.write(self._gzip.compress(data))

    def _flush_body(self) -> None:
        if self._body_lines:
            text = "\n".join(self._body_lines) + "\n"
            self._body_lines.clear()
            self._body.write(text.encode("utf-8", "surrogateescape"))

    def close(self) -> None:
        """Flush everything to the spool files (the listing is complete)."""
        try:
            self._flush_lines()
            self._jsonl.write(self._gzip.flush())
            self._flush_body()
            self._jsonl.close()
            self._body.close()
        except OSError as exc:
            raise ContainerError(f"cannot write the listing beside the output: {exc}") from exc

    def store(self, writer: ZipWriter, summary: ListingSummary) -> None:
        """Copy the spooled files into their members (hashed while written)."""
        for path, name, compress, key in (
            (self._paths[0], self.jsonl_name, False, "jsonl"),
            (self._paths[1], self.body_name, True, "bodyfile"),
        ):
            member = writer.begin(name, compress=compress)
            try:
                with path.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        member.write(chunk)
            except BaseException:
                member.discard()
                raise
            info = member.close()
            setattr(summary, key, {"member": info.name, "sha256": info.sha256 or ""})
        self._remove()

    def abort(self) -> None:
        for fh in (self._jsonl, self._body):
            with contextlib.suppress(OSError):
                fh.close()
        self._remove()

    def _remove(self) -> None:
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class PendingListing:
    """A volume's listing being made (in a thread when it can), stored by :meth:`store`.

    On NTFS whose $MFT is at most :data:`BACKGROUND_MFT_LIMIT`, the $MFT is read whole
    first (one sequential read), then parsed and written in a thread while the
    collection copies the volume's files: the copy's hashing, deflating and reading
    release the GIL, the listing's parsing uses it. A larger $MFT, or another file
    system, is listed by :meth:`store` itself (never two readers on one stream).
    """

    def __init__(
        self, label: str, fs: Filesystem, workdir: Path, *, background: bool = True
    ) -> None:
        from selective_imager.filesystems.ntfs import NtfsFilesystem

        self.label = label
        self._fs = fs
        self._workdir = workdir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._out: _Output | None = None
        self.summary = ListingSummary(label, "mft" if isinstance(fs, NtfsFilesystem) else "walk")
        image = None
        if background and isinstance(fs, NtfsFilesystem):
            image = fs.mft_image(BACKGROUND_MFT_LIMIT)
        if image is not None:
            record_size, data, in_use = image
            self._out = _Output(label, workdir)
            self._cancel = threading.Event()
            records = _until(iter_records(_Bytes(data), record_size, in_use=in_use), self._cancel)
            self._thread = threading.Thread(
                target=self._run, args=(records,), name=f"listing-{label}", daemon=True
            )
            self._thread.start()

    def _run(self, records: Iterator[MftRecord]) -> None:
        assert self._out is not None
        try:
            _ntfs_listing(records, self.label, self._out, self.summary)
            self._out.close()
        except Exception as exc:  # noqa: BLE001 - raised again by store(), in the collecting thread
            self._error = exc

    def store(self, writer: ZipWriter) -> ListingSummary:
        """Finish the listing (or make it now) and write its two members.

        Raises:
            ContainerError: the container (or the spool files) cannot be written.
            FilesystemError: the file system cannot be listed at all.
        """
        if self._thread is None:
            return self._inline(writer)
        self._thread.join()
        assert self._out is not None
        if self._error is not None:
            self._out.abort()
            if isinstance(self._error, SelectiveImagerError):
                raise self._error
            raise FilesystemError(f"cannot list the volume: {self._error}") from self._error
        try:
            self._out.store(writer, self.summary)
        except BaseException:
            self._out.abort()
            raise
        return self.summary

    def _inline(self, writer: ZipWriter) -> ListingSummary:
        from selective_imager.filesystems.ntfs import NtfsFilesystem

        out = _Output(self.label, self._workdir)
        try:
            if isinstance(self._fs, NtfsFilesystem):
                _ntfs_listing(self._fs.mft_records(), self.label, out, self.summary)
            else:
                _walk_listing(self._fs, self.label, out, self.summary)
            out.close()
            out.store(writer, self.summary)
        except BaseException:
            out.abort()
            raise
        return self.summary

    def abort(self) -> None:
        """Stop caring about the listing (the run is ending): its spool files go."""
        if self._thread is not None:
            self._cancel.set()
            self._thread.join()
            if self._out is not None:
                self._out.abort()


def _until(records: Iterator[MftRecord], cancel: threading.Event) -> Iterator[MftRecord]:
    """The records until ``cancel`` is set (checked every 4096)."""
    for count, record in enumerate(records):
        if not count % 4096 and cancel.is_set():
            raise FilesystemError("the listing was cancelled")
        yield record


class _Bytes(ByteStream):
    """The $MFT read whole, as a stream for :func:`iter_records`."""

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self._data = data

    def _read_at(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]


def write_listing(writer: ZipWriter, label: str, fs: Filesystem, workdir: Path) -> ListingSummary:
    """Write ``listing/<label>.jsonl.gz`` and ``listing/<label>.bodyfile`` for ``fs`` now.

    Args:
        writer: the container (no member may be open).
        label: the volume label (``p3``, ``p3/vss2``).
        fs: the open file system.
        workdir: where the two files are spooled before they are stored (beside the
            output).

    Raises:
        ContainerError: the container cannot be written.
        FilesystemError: the $MFT (or the root) cannot be read at all.
    """
    return PendingListing(label, fs, workdir, background=False).store(writer)


def _ntfs_listing(
    records: Iterable[MftRecord], label: str, out: _Output, summary: ListingSummary
) -> None:
    clock = _Clock()
    paths = _Paths()
    waiting: list[tuple[MftRecord, list[FileName]]] = []
    mount = f"{label}/"
    for record in records:
        if record.damage:
            summary.damaged += 1
            if len(summary.problems) < 20:
                summary.problems.append(f"MFT record {record.entry}: {record.damage}")
            out.raw_line(_damaged_line(record))
            continue
        links = _links(record)
        if record.is_directory:
            paths.add(record, links[0] if links else None)
        if not _emit(record, links, paths, clock, out, summary, mount, final=False):
            waiting.append((record, links))
    for record, links in waiting:
        _emit(record, links, paths, clock, out, summary, mount, final=True)


_J = json.encoder.encode_basestring_ascii
_ATTRIBUTES: dict[int, str] = {}  # flags -> the JSON list's items


def _emit(
    record: MftRecord,
    links: list[FileName],
    paths: _Paths,
    clock: _Clock,
    out: _Output,
    summary: ListingSummary,
    mount: str,
    *,
    final: bool,
) -> bool:
    """Write the record's line and rows; False when a directory is not known yet.

    The JSON line is formatted by hand (``json.dumps`` of a dict costs three times as
    much, and a volume has millions of entries); strings go through the json module's
    own escaping, ASCII-only so that a lone surrogate in a name stays valid JSON.
    """
    full: list[tuple[str, FileName | None]] = []
    orphan = False
    if record.entry == _ROOT:
        full.append(("", links[0] if links else None))
    elif not links:
        orphan = True
        full.append((f"{ORPHANS}/OrphanFile-{record.entry}", None))
    else:
        for name in links:
            base = paths.path_of(name.parent_entry, name.parent_sequence)
            if base is None:
                if not final:
                    return False
                orphan = True
                full.append((f"{ORPHANS}/{name.name}", name))
            else:
                full.append((f"{base}/{name.name}" if base else name.name, name))
    summary.entries += 1
    deleted = not record.in_use
    summary.deleted += deleted
    summary.orphans += orphan
    primary = full[0][1]
    default = None
    has_ads = False
    for stream in record.streams:
        if stream.name:
            has_ads = True
        elif default is None:
            default = stream
    flags = record.si_flags
    true, false, null = "true", "false", "null"
    if primary is not None:
        name_part = (
            f'"name":{_J(primary.name)},"entry":{record.entry},"sequence":{record.sequence},'
            f'"parent_entry":{primary.parent_entry},"parent_sequence":{primary.parent_sequence},'
        )
    else:
        name_part = (
            f'"name":null,"entry":{record.entry},"sequence":{record.sequence},'
            '"parent_entry":null,"parent_sequence":null,'
        )
    if default is not None:
        allocated = null if default.allocated is None else default.allocated
        size_part = (
            f'"size":{default.size},"allocated":{allocated},'
            f'"resident":{true if default.resident else false},'
        )
    else:
        size_part = '"size":null,"allocated":null,"resident":null,'
    extra = ""
    if len(record.names) > 1:
        extra = ",".join(
            f'{{"name":{_J(n.name)},"namespace":{n.namespace},"parent_entry":{n.parent_entry},'
            f'"parent_sequence":{n.parent_sequence},"fn":{clock.json(n.times)}}}'
            for n in record.names
            if n is not primary
        )
    dos = None
    for n in record.names:
        if n.namespace == NAMESPACE_DOS:
            dos = n.name
            break
    ads = (
        ""
        if not has_ads
        else ",".join(
            f'{{"name":{_J(s.name)},"size":{s.size},'
            f'"allocated":{null if s.allocated is None else s.allocated}}}'
            for s in record.streams
            if s.name
        )
    )
    attrs = _ATTRIBUTES.get(flags)
    if attrs is None:
        attrs = _ATTRIBUTES[flags] = ",".join(f'"{a}"' for a in attribute_names(flags))
    links_part = ",".join(_J(p) for p, _ in full[1:])
    out.raw_line(
        f'{{"path":{_J(full[0][0])},"links":[{links_part}],{name_part}'
        f'"in_use":{true if record.in_use else false},"deleted":{true if deleted else false},'
        f'"orphan":{true if orphan else false},'
        f'"directory":{true if record.is_directory else false},{size_part}'
        f'"flags":{flags if record.si is not None else null},"attributes":[{attrs}],'
        f'"si":{clock.json(record.si)},'
        f'"fn":{clock.json(primary.times) if primary is not None else null},'
        f'"dos_name":{_J(dos) if dos is not None else null},"names":[{extra}],"ads":[{ads}],'
        f'"reparse":{true if record.reparse else false},"link_count":{record.link_count},'
        '"damage":null}'
    )
    _ntfs_rows(record, full, out, mount)
    return True


def _ntfs_rows(
    record: MftRecord, full: list[tuple[str, FileName | None]], out: _Output, mount: str
) -> None:
    """The ``fls -m`` rows of one entry (see the module docstring)."""
    kind = "d" if record.is_directory else "r"
    perms = _perms(record.si_flags)
    suffix = " (deleted)" if not record.in_use else ""
    mode = f"{kind if record.in_use else '-'}/{kind}{perms}"
    uid = record.si_owner or 0
    c, m, ch, a = record.si or (0, 0, 0, 0)
    si = (_unix(a), _unix(m), _unix(ch), _unix(c))
    entry = record.entry
    for path, name in full:
        shown = mount + path
        if name is None:
            # As fls: a nameless record only when it is deleted and has times.
            if record.entry != _ROOT and not record.in_use and record.si is not None:
                out.body(body_row("0", shown + suffix, str(entry), f"-/r{perms}", uid, 0, 0, *si))
            if record.entry != _ROOT:
                continue
        else:
            fc, fm, fch, fa = name.times
            out.body(
                body_row(
                    "0",
                    f"{shown} ($FILE_NAME){suffix}",
                    f"{entry}-48-{name.attribute_id}",
                    mode,
                    uid,
                    0,
                    name.length,
                    _unix(fa),
                    _unix(fm),
                    _unix(fch),
                    _unix(fc),
                )
            )
        for stream in (*record.streams, *record.indexes):
            named = stream.name and not (stream.kind == ATTR_INDEX_ROOT and stream.name == "$I30")
            out.body(
                body_row(
                    "0",
                    f"{shown}:{stream.name}{suffix}" if named else shown + suffix,
                    f"{entry}-{stream.kind}-{stream.attribute_id}",
                    mode,
                    uid,
                    0,
                    stream.size,
                    *si,
                )
            )


def _damaged_line(record: MftRecord) -> str:
    return _encode(
        {
            "path": None,
            "links": [],
            "name": None,
            "entry": record.entry,
            "sequence": None,
            "parent_entry": None,
            "parent_sequence": None,
            "in_use": None,
            "deleted": None,
            "orphan": None,
            "directory": None,
            "size": None,
            "allocated": None,
            "resident": None,
            "flags": None,
            "attributes": [],
            "si": None,
            "fn": None,
            "dos_name": None,
            "names": [],
            "ads": [],
            "reparse": None,
            "link_count": None,
            "damage": record.damage,
        }
    )


# -- other file systems: the walk -------------------------------------------------------


def _walk_listing(fs: Filesystem, label: str, out: _Output, summary: ListingSummary) -> None:
    def on_error(directory: FileEntry, exc: SelectiveImagerError) -> None:
        summary.damaged += 1
        if len(summary.problems) < 20:
            summary.problems.append(f"{directory.path or '/'}: {exc}")

    mount = f"{label}/"
    for entry in _with_root(fs, on_error):
        summary.entries += 1
        summary.deleted += not entry.allocated
        if entry.damage:
            summary.damaged += 1
        out.line(_entry_line(entry))
        out.body(_entry_row(entry, mount))


def _with_root(fs: Filesystem, on_error: Any) -> Iterator[FileEntry]:
    root = fs.root()
    yield root
    yield from fs.walk(root, on_error=on_error)


def _iso_times(times: TimestampSet | None) -> dict[str, Any] | None:
    if times is None:
        return None

    def one(t: Timestamp | None) -> str | None:
        return t.isoformat() if t is not None else None

    return {
        "created": one(times.created),
        "modified": one(times.modified),
        "changed": one(times.changed),
        "accessed": one(times.accessed),
        "filetime": [
            t.raw if t is not None and t.raw is not None else None
            for t in (times.created, times.modified, times.changed, times.accessed)
        ],
    }


def _entry_line(entry: FileEntry) -> dict[str, Any]:
    """The JSON line of a walked entry (fields the file system lacks are null)."""
    ntfs = entry.si is not None or entry.fn is not None
    return {
        "path": entry.path,
        "links": [],
        "name": entry.name,
        "entry": entry.entry,
        "sequence": entry.sequence,
        "parent_entry": entry.parent_entry,
        "parent_sequence": entry.parent_sequence,
        "in_use": entry.allocated,
        "deleted": not entry.allocated,
        "orphan": False,
        "directory": entry.is_directory,
        "size": entry.size,
        "allocated": entry.allocated_size if not entry.is_directory else None,
        "resident": entry.resident,
        "flags": entry.attribute_flags if ntfs else None,
        "attributes": list(entry.attributes),
        "si": _iso_times(entry.si),
        "fn": _iso_times(entry.fn),
        "times": _iso_times(entry.times),
        "dos_name": None,
        "names": [],
        "ads": [{"name": s.name, "size": s.size, "allocated": None} for s in entry.streams],
        "reparse": None,
        "link_count": entry.links,
        "mode": entry.mode,
        "uid": entry.uid,
        "gid": entry.gid,
        "link_target": entry.link_target or None,
        "damage": entry.damage or None,
    }


def _seconds(t: Timestamp | None) -> int:
    return t.ns // 1_000_000_000 if t is not None else 0


def _entry_row(entry: FileEntry, mount: str) -> str:
    """The bodyfile row of a walked entry (its own times, mode bits when it has them)."""
    times = entry.times or entry.si
    kind = "d" if entry.is_directory else ("l" if entry.link_target else "r")
    if entry.mode is not None:
        bits = "".join(
            ch if entry.mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx")
        )
    else:
        bits = _perms(entry.attribute_flags)
    suffix = "" if entry.allocated else " (deleted)"
    stamps = (0, 0, 0, 0)
    if times is not None:
        stamps = (
            _seconds(times.accessed),
            _seconds(times.modified),
            _seconds(times.changed),
            _seconds(times.created),
        )
    return body_row(
        "0", mount + entry.path + suffix, str(entry.entry if entry.entry is not None else 0),
        f"{kind if entry.allocated else '-'}/{kind}{bits}", entry.uid or 0, entry.gid or 0,
        entry.size, *stamps,
    )  # fmt: skip

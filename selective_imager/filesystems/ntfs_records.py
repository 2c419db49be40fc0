"""The project's own parser of NTFS MFT records (FILE records) for whole-$MFT listings.

pyfsntfs costs ~30 µs per entry, which makes a listing of every entry of a large volume
slow; this module reads the $MFT in big sequential pieces and parses each record with
``struct`` (update-sequence fixups for a whole piece at once with numpy). It reads only
what a listing needs: the record header, ``$STANDARD_INFORMATION``, every
``$FILE_NAME``, ``$DATA`` streams, ``$INDEX_ROOT``, ``$REPARSE_POINT`` presence and
``$ATTRIBUTE_LIST`` (attributes held by extension records are taken from those records,
read in the same pass). Times stay the raw FILETIME integers. The records are named
tuples, immutable like the frozen dataclasses elsewhere but three times cheaper to build:
a volume has millions of them.

A record whose update-sequence check fails, or that has no ``FILE`` signature where the
$MFT bitmap says it is in use, is reported as damaged, never used. Checked against
pyfsntfs and The Sleuth Kit on every NTFS fixture and reference image
(tests/test_ntfs_records.py).

References:
    - Joachim Metz, libfsntfs: "New Technologies File System (NTFS)" format
      documentation (MFT entry header, fix-up values, attribute header, standard
      information, file name, attribute list and index root attributes).
    - Microsoft, "File Record Segment Header", "Attribute Record Header",
      "Standard Information", "File Name" on-disk structures (Windows Driver Kit
      documentation of NTFS metadata).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from selective_imager.streams import ByteStream

__all__ = [
    "ATTR_DATA",
    "ATTR_INDEX_ROOT",
    "NAMESPACE_DOS",
    "DataStream",
    "FileName",
    "MftRecord",
    "decode_runs",
    "iter_records",
    "parse_record",
]

ATTR_SI = 0x10
ATTR_LIST = 0x20
ATTR_FN = 0x30
ATTR_DATA = 0x80
ATTR_INDEX_ROOT = 0x90
ATTR_REPARSE = 0xC0
_END = 0xFFFFFFFF

NAMESPACE_POSIX = 0
NAMESPACE_WIN32 = 1
NAMESPACE_DOS = 2
NAMESPACE_WIN32_DOS = 3

_REF_MASK = 0xFFFFFFFFFFFF
_FLAG_IN_USE = 0x0001
_FLAG_DIRECTORY = 0x0002
_FIXUP_STRIDE = 512  # update sequence entries protect every 512 bytes, whatever the sector

_HEADER = struct.Struct("<4sHHQHHHHIIQH")  # through the next-attribute id (0x2A bytes)
_ATTR = struct.Struct("<IIBBHHH")  # type, length, non-resident, name length/offset, flags, id
_RESIDENT = struct.Struct("<IH")  # value length, value offset (at 0x10)
_NONRESIDENT = struct.Struct("<QQH6xQQQ")  # first/last VCN, runs offset, alloc/data/valid size
_SI_TIMES = struct.Struct("<QQQQI")  # created, modified, MFT changed, accessed, flags
_FN = struct.Struct("<QQQQQQQIIBB")  # parent ref, 4 times, alloc, size, flags, reparse, len, ns
_LIST_ENTRY = struct.Struct("<IHBBQQH")  # type, length, name len/off, start VCN, ref, id
_U32 = struct.Struct("<I")


class FileName(NamedTuple):
    """One ``$FILE_NAME`` attribute.

    Attributes:
        name: the name as stored.
        namespace: 0 POSIX, 1 Win32, 2 DOS (8.3), 3 Win32 and DOS.
        parent_entry: MFT entry of the parent directory.
        parent_sequence: its sequence number as recorded here.
        times: created, modified, MFT-changed, accessed as raw FILETIME integers.
        attribute_id: the attribute's id within its record.
        length: the attribute content's length (66 bytes + the UTF-16 name).
        flags: the file attribute flags this copy records.
    """

    name: str
    namespace: int
    parent_entry: int
    parent_sequence: int
    times: tuple[int, int, int, int]
    attribute_id: int
    length: int
    flags: int


class DataStream(NamedTuple):
    """A ``$DATA`` attribute (``kind`` 0x80) or an ``$INDEX_ROOT`` (0x90).

    Attributes:
        name: "" for the unnamed (default) data stream; ``$I30`` for a directory index.
        size: logical size: the resident value length or the non-resident data size.
        allocated: allocated bytes of a non-resident stream (None when resident).
        resident: the value lives in the record.
        attribute_id: the attribute's id (of the first segment for a split stream).
        kind: the attribute type.
    """

    name: str
    size: int
    allocated: int | None
    resident: bool
    attribute_id: int
    kind: int = ATTR_DATA


class MftRecord(NamedTuple):
    """What one MFT entry says of itself (extension records already merged in).

    Attributes:
        entry: MFT entry number.
        sequence: its sequence number.
        in_use: the header's in-use flag (not in use but parsable: a deleted entry).
        directory: the header's directory flag.
        base_entry: the base record of an extension record (0 for a base record).
        link_count: hard links the header counts.
        si: ``$STANDARD_INFORMATION`` times (created, modified, MFT changed, accessed)
            as raw FILETIME integers, or None when absent.
        si_flags: the file attribute flags of ``$STANDARD_INFORMATION``.
        si_owner: its owner id (None for the short 48-byte form that has none).
        names: every ``$FILE_NAME``, in record order.
        streams: every ``$DATA`` stream, in record order.
        indexes: every ``$INDEX_ROOT`` (``$I30`` for a directory).
        reparse: a ``$REPARSE_POINT`` attribute is present.
        extensions: entry numbers an ``$ATTRIBUTE_LIST`` names besides this one.
        damage: why the record cannot be used ("" when it can); a damaged record
            carries nothing but its number.
    """

    entry: int
    sequence: int = 0
    in_use: bool = False
    directory: bool = False
    base_entry: int = 0
    link_count: int = 0
    si: tuple[int, int, int, int] | None = None
    si_flags: int = 0
    si_owner: int | None = None
    names: tuple[FileName, ...] = ()
    streams: tuple[DataStream, ...] = ()
    indexes: tuple[DataStream, ...] = ()
    reparse: bool = False
    extensions: tuple[int, ...] = ()
    damage: str = ""

    @property
    def is_directory(self) -> bool:
        """A directory: the header flag or an ``$I30`` index root."""
        return self.directory or any(i.name == "$I30" for i in self.indexes)


def decode_runs(data: bytes | memoryview) -> list[tuple[int | None, int]]:
    """NTFS mapping pairs: (first cluster, or None for a sparse run; cluster count)."""
    runs: list[tuple[int | None, int]] = []
    pos, lcn = 0, 0
    end = len(data)
    while pos < end and data[pos]:
        header = data[pos]
        n_len, n_off = header & 0x0F, header >> 4
        if pos + 1 + n_len + n_off > end:
            break
        count = int.from_bytes(data[pos + 1 : pos + 1 + n_len], "little")
        if n_off:
            lcn += int.from_bytes(
                data[pos + 1 + n_len : pos + 1 + n_len + n_off], "little", signed=True
            )
            runs.append((lcn, count))
        else:
            runs.append((None, count))
        pos += 1 + n_len + n_off
    return runs


def _fixup_one(raw: bytes) -> tuple[bytes, str]:
    """One record with its update sequence applied, or why the check fails."""
    usa, count = struct.unpack_from("<HH", raw, 4)
    if count < 2 or usa + 2 * count > len(raw) or (count - 1) * _FIXUP_STRIDE > len(raw):
        return raw, f"update sequence array out of bounds (offset {usa}, {count} entries)"
    out = bytearray(raw)
    usn = raw[usa : usa + 2]
    for i in range(1, count):
        end = i * _FIXUP_STRIDE
        if raw[end - 2 : end] != usn:
            return raw, f"update sequence check failed in block {i - 1}"
        out[end - 2 : end] = raw[usa + 2 * i : usa + 2 * i + 2]
    return bytes(out), ""


def apply_fixups(chunk: bytes, record_size: int) -> tuple[bytes, list[str]]:
    """Every record of ``chunk`` with its update sequence applied (numpy, one pass).

    Returns the fixed bytes and, per record, "" or why its check failed (a record
    without the ``FILE`` signature is left as it is and gets "").
    """
    count = len(chunk) // record_size
    arr = np.frombuffer(chunk, dtype=np.uint8, count=count * record_size).reshape(
        count, record_size
    )
    is_file = arr[:, :4].copy().view("<u4")[:, 0] == 0x454C4946  # b"FILE"
    problems = [""] * count
    if not is_file.any():
        return chunk[: count * record_size], problems
    usa = arr[:, 4].astype(np.int64) | (arr[:, 5].astype(np.int64) << 8)
    entries = arr[:, 6].astype(np.int64) | (arr[:, 7].astype(np.int64) << 8)
    files = np.flatnonzero(is_file)
    fixed = arr.copy()
    common_usa, common_count = int(usa[files[0]]), int(entries[files[0]])
    uniform = bool(
        (usa[files] == common_usa).all()
        and (entries[files] == common_count).all()
        and common_count >= 2
        and common_usa + 2 * common_count <= record_size
        and (common_count - 1) * _FIXUP_STRIDE <= record_size
    )
    if uniform:
        rows = fixed[files]
        usn = rows[:, common_usa : common_usa + 2]
        bad = np.zeros(len(files), dtype=bool)
        for i in range(1, common_count):
            end = i * _FIXUP_STRIDE
            bad |= (rows[:, end - 2 : end] != usn).any(axis=1)
            rows[:, end - 2 : end] = rows[:, common_usa + 2 * i : common_usa + 2 * i + 2]
        fixed[files] = rows
        for k in np.flatnonzero(bad):
            index = int(files[k])
            fixed[index] = arr[index]
            problems[index] = _fixup_one(bytes(arr[index]))[1] or "update sequence check failed"
    else:
        for index in files.tolist():
            raw = bytes(arr[index])
            out, problem = _fixup_one(raw)
            problems[index] = problem
            fixed[index] = np.frombuffer(out, dtype=np.uint8)
    return fixed.tobytes(), problems


@dataclass(slots=True)
class _Parsed:
    """A record being parsed (mutable), before extension records are merged in."""

    entry: int
    sequence: int
    in_use: bool
    directory: bool
    base_entry: int
    base_sequence: int
    link_count: int
    si: tuple[int, int, int, int] | None
    si_flags: int
    si_owner: int | None
    names: list[FileName]
    streams: list[tuple[int, str, int, DataStream]]  # (kind, name, first VCN, stream)
    reparse: bool
    listed: list[tuple[int, str, int, int, int]]  # a resident attribute list's entries
    list_runs: bytes | None  # mapping pairs of a non-resident attribute list
    list_size: int


def parse_record(buf: bytes, offset: int, size: int, number: int) -> _Parsed | str:
    """Parse the fixed-up record at ``buf[offset:offset+size]``; a string says why not."""
    (sig, _usa, _count, _lsn, sequence, links, first, flags, used, _alloc, base, _next_id) = (
        _HEADER.unpack_from(buf, offset)
    )
    if sig != b"FILE":
        return f"no FILE signature ({sig!r})"
    limit = offset + min(used, size) if 0x18 <= used <= size else offset + size
    parsed = _Parsed(
        number, sequence, bool(flags & _FLAG_IN_USE), bool(flags & _FLAG_DIRECTORY),
        base & _REF_MASK, base >> 48, links, None, 0, None, [], [], False, [], None, 0,
    )  # fmt: skip
    pos = offset + first
    unpack_attr = _ATTR.unpack_from
    while True:
        if pos + 8 > limit:
            return f"attributes run past the record (offset {pos - offset})"
        kind = _U32.unpack_from(buf, pos)[0]
        if kind == _END:
            return parsed
        kind, length, nonres, name_len, name_off, _aflags, attr_id = unpack_attr(buf, pos)
        if length < 0x18 or pos + length > limit or kind % 0x10:
            return f"invalid attribute at offset {pos - offset} (type 0x{kind:x}, length {length})"
        name = ""
        if name_len:
            start = pos + name_off
            name = buf[start : start + 2 * name_len].decode("utf-16-le", "surrogatepass")
        if nonres:
            if length < 0x40:
                return f"non-resident attribute too short at offset {pos - offset}"
            vcn, _last, runs_off, alloc, data_size, _valid = _NONRESIDENT.unpack_from(
                buf, pos + 0x10
            )
            if kind in (ATTR_DATA, ATTR_INDEX_ROOT):
                parsed.streams.append(
                    (kind, name, vcn, DataStream(name, data_size, alloc, False, attr_id, kind))
                )
            elif kind == ATTR_LIST:
                parsed.list_runs = bytes(buf[pos + runs_off : pos + length])
                parsed.list_size = data_size
            elif kind == ATTR_REPARSE:
                parsed.reparse = True
        else:
            value_len, value_off = _RESIDENT.unpack_from(buf, pos + 0x10)
            value = pos + value_off
            if value_off + value_len > length:
                return f"resident value past its attribute at offset {pos - offset}"
            if kind == ATTR_SI:
                if value_len >= 36:
                    c, m, ch, a, si_flags = _SI_TIMES.unpack_from(buf, value)
                    parsed.si = (c, m, ch, a)
                    parsed.si_flags = si_flags
                    if value_len >= 52:
                        parsed.si_owner = _U32.unpack_from(buf, value + 48)[0]
            elif kind == ATTR_FN:
                if value_len < 66:
                    return f"$FILE_NAME too short at offset {pos - offset}"
                parent, c, m, ch, a, _fa, _fs, fn_flags, _rp, chars, space = _FN.unpack_from(
                    buf, value
                )
                if 66 + 2 * chars > value_len:
                    return f"$FILE_NAME name past its value at offset {pos - offset}"
                text = buf[value + 66 : value + 66 + 2 * chars].decode("utf-16-le", "surrogatepass")
                parsed.names.append(
                    FileName(
                        text,
                        space,
                        parent & _REF_MASK,
                        parent >> 48,
                        (c, m, ch, a),
                        attr_id,
                        value_len,
                        fn_flags,
                    )
                )
            elif kind in (ATTR_DATA, ATTR_INDEX_ROOT):
                parsed.streams.append(
                    (kind, name, 0, DataStream(name, value_len, None, True, attr_id, kind))
                )
            elif kind == ATTR_LIST:
                parsed.listed = _list_entries(buf[value : value + value_len])
            elif kind == ATTR_REPARSE:
                parsed.reparse = True
        pos += length


def _list_entries(data: bytes | memoryview) -> list[tuple[int, str, int, int, int]]:
    """``(type, name, first VCN, MFT entry, attribute id)`` of each ``$ATTRIBUTE_LIST`` entry."""
    out: list[tuple[int, str, int, int, int]] = []
    pos = 0
    while pos + 0x1A <= len(data):
        kind, length, name_len, name_off, vcn, ref, attr_id = _LIST_ENTRY.unpack_from(data, pos)
        if length < 0x1A or pos + length > len(data):
            break
        name = bytes(data[pos + name_off : pos + name_off + 2 * name_len]).decode(
            "utf-16-le", "surrogatepass"
        )
        out.append((kind, name, vcn, ref & _REF_MASK, attr_id))
        pos += length
    return out


def _list_records(entries: list[tuple[int, str, int, int, int]]) -> list[int]:
    """The MFT entries an attribute list names, in order, each once."""
    return list(dict.fromkeys(e[3] for e in entries))


def _finish(
    base: _Parsed,
    extensions: list[_Parsed],
    problem: str = "",
    *,
    listed: list[tuple[int, str, int, int, int]] | None = None,
) -> MftRecord:
    """The record with its extension records' attributes merged in.

    With an attribute list, each attribute's id is the one the list gives it (the
    ids within an extension record are that record's own).
    """
    ids: dict[tuple[int, str, int, int], list[int]] = {}
    for kind, name, vcn, number, attr_id in listed or ():
        ids.setdefault((kind, name, vcn, number), []).append(attr_id)

    def listed_id(kind: int, name: str, vcn: int, number: int, own: int) -> int:
        queue = ids.get((kind, name, vcn, number))
        return queue.pop(0) if queue else own

    names: list[FileName] = []
    segments: list[tuple[int, str, int, DataStream]] = []
    reparse = base.reparse
    for part in (base, *extensions):
        for fn in part.names:
            new_id = listed_id(ATTR_FN, "", 0, part.entry, fn.attribute_id)
            names.append(fn if new_id == fn.attribute_id else fn._replace(attribute_id=new_id))
        for kind, name, vcn, stream in part.streams:
            new_id = listed_id(kind, name, vcn, part.entry, stream.attribute_id)
            if new_id != stream.attribute_id:
                stream = stream._replace(attribute_id=new_id)
            segments.append((kind, name, vcn, stream))
        reparse = reparse or part.reparse
    # A stream split over records: the segment starting at VCN 0 holds the sizes.
    streams: dict[tuple[int, str], DataStream] = {}
    for kind, name, vcn, stream in segments:
        if vcn == 0 and (kind, name) not in streams:
            streams[(kind, name)] = stream
    data = tuple(s for (k, _), s in streams.items() if k == ATTR_DATA)
    indexes = tuple(s for (k, _), s in streams.items() if k == ATTR_INDEX_ROOT)
    si = base.si
    si_flags, si_owner = base.si_flags, base.si_owner
    for ext in extensions:
        if si is None and ext.si is not None:
            si, si_flags, si_owner = ext.si, ext.si_flags, ext.si_owner
    return MftRecord(
        entry=base.entry,
        sequence=base.sequence,
        in_use=base.in_use,
        directory=base.directory,
        base_entry=base.base_entry,
        link_count=base.link_count,
        si=si,
        si_flags=si_flags,
        si_owner=si_owner,
        names=tuple(names),
        streams=data,
        indexes=indexes,
        reparse=reparse,
        extensions=tuple(e.entry for e in extensions),
        damage=problem,
    )


def _plain(parsed: _Parsed) -> MftRecord:
    """A record without extension records (the common case: no merging, no re-ids)."""
    data: list[DataStream] = []
    indexes: list[DataStream] = []
    seen: set[tuple[int, str]] = set()
    for kind, name, vcn, stream in parsed.streams:
        if vcn or (kind, name) in seen:
            continue  # a later segment of a stream split within the record
        seen.add((kind, name))
        (data if kind == ATTR_DATA else indexes).append(stream)
    return MftRecord(
        parsed.entry, parsed.sequence, parsed.in_use, parsed.directory, parsed.base_entry,
        parsed.link_count, parsed.si, parsed.si_flags, parsed.si_owner, tuple(parsed.names),
        tuple(data), tuple(indexes), parsed.reparse,
    )  # fmt: skip


def iter_records(
    mft: ByteStream,
    record_size: int,
    *,
    in_use: Callable[[int], bool | None] | None = None,
    read_runs: Callable[[bytes, int], bytes] | None = None,
    chunk_size: int = 4 << 20,
) -> Iterator[MftRecord]:
    """Every used MFT record of ``mft`` (the $MFT's content), in entry order.

    All-zero records (never used) are skipped. A record without the ``FILE``
    signature is damaged when ``in_use(entry)`` (the $MFT bitmap) says it is in use
    or does not know, else skipped; an all-zero one only when the bitmap says so. Extension records are not yielded: their
    attributes go to their base record, which is yielded (out of order) once the
    pass is over when its ``$ATTRIBUTE_LIST`` names records after it.

    Args:
        mft: the $MFT content (entry 0's unnamed data stream).
        record_size: bytes per record (from the boot sector).
        in_use: the $MFT bitmap's answer for an entry, or None when unknown.
        read_runs: reads a non-resident value (mapping pairs, size) from the volume;
            without it such an attribute list is taken from the extension records'
            own base references.
        chunk_size: bytes per sequential read.
    """
    per_chunk = max(1, chunk_size // record_size)
    total = mft.size // record_size
    waiting: dict[int, _Parsed] = {}  # base records whose extensions are not all read
    extensions: dict[int, list[_Parsed]] = {}  # base entry -> its extension records
    for first in range(0, total, per_chunk):
        n = min(per_chunk, total - first)
        raw = mft.read_at(first * record_size, n * record_size)
        n = len(raw) // record_size
        if not n:
            break
        fixed, problems = apply_fixups(raw, record_size)
        for i in range(n):
            number = first + i
            offset = i * record_size
            if problems[i]:
                yield MftRecord(number, damage=problems[i])
                continue
            if fixed[offset : offset + 4] != b"FILE":
                head = fixed[offset : offset + record_size]
                used = in_use(number) if in_use is not None else None
                if head.count(0) == record_size:
                    # Free records read as zeros on Windows-made volumes: only one the
                    # bitmap marks in use is damaged.
                    if used:
                        yield MftRecord(number, damage="all zeros")
                    continue
                if used is False:
                    continue
                kind = (
                    "marked BAAD (a torn write)"
                    if head[:4] == b"BAAD"
                    else (f"no FILE signature ({head[:4]!r})")
                )
                yield MftRecord(number, damage=kind)
                continue
            parsed = parse_record(fixed, offset, record_size, number)
            if isinstance(parsed, str):
                yield MftRecord(number, damage=parsed)
                continue
            if parsed.base_entry and parsed.base_entry != number:
                extensions.setdefault(parsed.base_entry, []).append(parsed)
                base = waiting.get(parsed.base_entry)
                if base is not None and _ready(base, extensions, read_runs):
                    del waiting[parsed.base_entry]
                    yield _merged(base, extensions, read_runs)
                continue
            if parsed.listed or parsed.list_runs is not None:
                if not _ready(parsed, extensions, read_runs):
                    waiting[number] = parsed
                    continue
                yield _merged(parsed, extensions, read_runs)
                continue
            yield _plain(parsed)
    for number in sorted(waiting):
        base = waiting[number]
        listed = _listed(base, read_runs)
        have = _ext_numbers(extensions, number)
        missing = [n for n in _list_records(listed) if n != number and n not in have]
        if missing:
            problem = (
                "its attribute list names MFT record(s) "
                + ", ".join(map(str, missing))
                + " that are not its readable extension records"
            )
            yield _finish(base, _extensions_of(base, extensions), problem, listed=listed)
        else:
            yield _merged(base, extensions, read_runs)


def _ext_numbers(extensions: dict[int, list[_Parsed]], base: int) -> set[int]:
    return {e.entry for e in extensions.get(base, ())}


def _extensions_of(base: _Parsed, extensions: dict[int, list[_Parsed]]) -> list[_Parsed]:
    """The extension records naming ``base`` as theirs, with its sequence number."""
    return [e for e in extensions.get(base.entry, ()) if e.base_sequence in (base.sequence, 0)]


def _listed(
    base: _Parsed, read_runs: Callable[[bytes, int], bytes] | None
) -> list[tuple[int, str, int, int, int]]:
    if base.list_runs is not None:
        if read_runs is None:
            return []
        return _list_entries(read_runs(base.list_runs, base.list_size))
    return base.listed


def _ready(
    base: _Parsed,
    extensions: dict[int, list[_Parsed]],
    read_runs: Callable[[bytes, int], bytes] | None,
) -> bool:
    if base.list_runs is not None and read_runs is None:
        return False  # which records it names is unknown until the pass is over
    have = _ext_numbers(extensions, base.entry)
    return all(n == base.entry or n in have for n in _list_records(_listed(base, read_runs)))


def _merged(
    base: _Parsed,
    extensions: dict[int, list[_Parsed]],
    read_runs: Callable[[bytes, int], bytes] | None,
) -> MftRecord:
    listed = _listed(base, read_runs)
    wanted = set(_list_records(listed))
    mine = [e for e in _extensions_of(base, extensions) if e.entry in wanted or not wanted]
    extensions.pop(base.entry, None)
    return _finish(base, mine, listed=listed)


def filetime_seconds(filetime: int) -> int:
    """Whole seconds since 1970 (floor), 0 for times before 1970 (as ``fls -m``)."""
    seconds = filetime // 10_000_000 - 11_644_473_600
    return seconds if seconds > 0 else 0

"""KAPE-style copy logs and a TSK bodyfile, generated from the manifest records.

References: KAPE's ``*_CopyLog.csv`` / ``*_SkipLog.csv`` column sets (KAPE documentation,
"Target output"); The Sleuth Kit body file format 3.x
(https://wiki.sleuthkit.org/index.php?title=Body_file): ``MD5|name|inode|mode_as_string|
UID|GID|size|atime|mtime|ctime|crtime``, times in whole seconds since 1970 UTC, and the
``name ($FILE_NAME)`` rows ``fls -m`` writes for an NTFS file's ``$FILE_NAME`` times.

Source paths are written as the examiner knows them: ``C:\\Windows\\...`` when the
volume's drive letter is known, else ``p3\\Windows\\...`` (the volume label). The drive
letter is a documented heuristic: the live volume holding ``Windows/System32`` items is
``C:`` (the system volume); no other volume gets a letter.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from typing import TYPE_CHECKING, Any

from selective_imager.collect.outcome import STORED_OUTCOMES
from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

COPYLOG_NAME = "CopyLog.csv"
SKIPLOG_NAME = "SkipLog.csv"
BODYFILE_NAME = "bodyfile.txt"
EXPORT_NAMES = (COPYLOG_NAME, SKIPLOG_NAME, BODYFILE_NAME)

COPYLOG_COLUMNS = (
    "CopiedTimestamp",
    "SourceFile",
    "DestinationFile",
    "FileSize",
    "SourceFileSha1",
    "DeferredCopy",
    "CreatedOnUtc",
    "ModifiedOnUtc",
    "LastAccessedOnUtc",
    "CopyDuration",
)
SKIPLOG_COLUMNS = ("SourceFile", "SourceFileSha1", "Reason")

# Size of a $FILE_NAME attribute's content: 66 fixed bytes and the UTF-16 name.
_FN_FIXED = 66
_ATTRIBUTE_READONLY = 0x1


def drive_letters(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Volume label -> drive letter, by the system-volume heuristic of the module doc."""
    letters: dict[str, str] = {}
    for rec in records:
        if rec.get("vss") is None and str(rec.get("path", "")).lower().startswith(
            "windows/system32/"
        ):
            letters.setdefault(str(rec.get("volume_label")), "C")
            break
    return letters


def source_file(rec: dict[str, Any], letters: dict[str, str]) -> str:
    """``C:\\Windows\\...`` (or ``p3\\Windows\\...``) with ``:stream`` for an ADS."""
    label = str(rec.get("volume_label") or rec.get("volume") or "")
    path = str(rec.get("path", "")).replace("/", "\\")
    letter = letters.get(label) if rec.get("vss") is None else None
    text = f"{letter}:\\{path}" if letter else f"{label}\\{path}"
    stream = rec.get("stream") or ""
    return f"{text}:{stream}" if stream else text


def _times(rec: dict[str, Any], key: str) -> dict[str, Any]:
    stamps = rec.get("timestamps") or {}
    return stamps.get(key) or {}


def _primary_times(rec: dict[str, Any]) -> dict[str, Any]:
    """$STANDARD_INFORMATION times on NTFS, the inode times elsewhere (``changed``)."""
    si = _times(rec, "si")
    if si:
        return si
    times = _times(rec, "times")
    return {**times, "mft_modified": times.get("changed")}


def copylog(records: Iterable[dict[str, Any]], letters: dict[str, str], copied: str) -> str:
    """``CopyLog.csv``: one row per item whose own member holds its content.

    ``CopiedTimestamp`` is the end of the collection (the manifest keeps no per-item
    time); ``DeferredCopy`` is False (every file is read from the raw file system, none
    is deferred); ``CopyDuration`` is empty (not measured per item).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(COPYLOG_COLUMNS)
    for rec in records:
        if rec.get("outcome") not in STORED_OUTCOMES:
            continue
        t = _primary_times(rec)
        w.writerow(
            (
                copied,
                source_file(rec, letters),
                rec.get("container_path", ""),
                rec.get("size", ""),
                (rec.get("hashes") or {}).get("sha1", ""),
                "False",
                t.get("created") or "",
                t.get("modified") or "",
                t.get("accessed") or "",
                "",
            )
        )
    return buf.getvalue()


def skip_reason(rec: dict[str, Any]) -> str | None:
    """Why an item has no member of its own (None when it has one)."""
    outcome = rec.get("outcome")
    if outcome in STORED_OUTCOMES:
        return None
    if outcome == "duplicate":
        return f"Duplicate of {rec.get('container_path')} (same SHA-256)"
    return f"{str(outcome).capitalize()}: {rec.get('error') or 'no reason recorded'}"


def skiplog(records: Iterable[dict[str, Any]], letters: dict[str, str]) -> str:
    """``SkipLog.csv``: duplicates, skipped and failed items with their reason."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(SKIPLOG_COLUMNS)
    for rec in records:
        reason = skip_reason(rec)
        if reason is None:
            continue
        w.writerow((source_file(rec, letters), (rec.get("hashes") or {}).get("sha1", ""), reason))
    return buf.getvalue()


def epoch_seconds(text: Any) -> int:
    """ISO 8601 UTC (any fraction) -> whole seconds since 1970 (0 when absent)."""
    if not text:
        return 0
    stamp = _dt.datetime.strptime(str(text)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.UTC)
    return int(stamp.timestamp())


def _body_name(rec: dict[str, Any], letters: dict[str, str]) -> str:
    label = str(rec.get("volume_label") or rec.get("volume") or "")
    letter = letters.get(label) if rec.get("vss") is None else None
    prefix = f"{letter}:" if letter else label
    name = f"{prefix}/{rec.get('path', '')}"
    return f"{name}:{rec['stream']}" if rec.get("stream") else name


def _mode(rec: dict[str, Any]) -> str:
    if rec.get("mode") is not None:
        # POSIX file systems: the type letter and the permission bits as found.
        mode = int(rec["mode"])
        bits = "".join(ch if mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx"))
        kind = "l" if rec.get("link_target") else "r"
        return f"{kind}/{kind}{bits}"
    readonly = int(rec.get("attribute_flags") or 0) & _ATTRIBUTE_READONLY
    return "r/rr-xr-xr-x" if readonly else "r/rrwxrwxrwx"


def body_row(
    md5: str,
    name: str,
    inode: str,
    mode: str,
    uid: int,
    gid: int,
    size: int,
    atime: int,
    mtime: int,
    ctime: int,
    crtime: int,
) -> str:
    """One TSK 3.x body line (no newline), times in whole seconds; ``|`` in the name as ``\\|``."""
    shown = name.replace("|", "\\|")
    return f"{md5}|{shown}|{inode}|{mode}|{uid}|{gid}|{size}|{atime}|{mtime}|{ctime}|{crtime}"


def _row(
    md5: str, name: str, inode: str, mode: str, rec: dict[str, Any], size: int, t: dict[str, Any]
) -> str:
    return body_row(
        md5,
        name,
        inode,
        mode,
        rec.get("uid") or 0,
        rec.get("gid") or 0,
        size,
        epoch_seconds(t.get("accessed")),
        epoch_seconds(t.get("modified")),
        epoch_seconds(t.get("mft_modified")),
        epoch_seconds(t.get("created")),
    )


def bodyfile(records: Iterable[dict[str, Any]], letters: dict[str, str]) -> str:
    """TSK 3.x bodyfile rows for every collected item and stream.

    The inode column is the entry number (``icat`` takes it as written); deleted
    entries get `` (deleted)`` like ``fls``. A file's default stream also gets the
    ``($FILE_NAME)`` row with its $FN times, sized as the attribute (66 + 2 x name).
    """
    lines = []
    for rec in records:
        if rec.get("entry") is None:
            continue
        md5 = (rec.get("hashes") or {}).get("md5") or "0"
        name = _body_name(rec, letters)
        suffix = "" if rec.get("allocated", True) else " (deleted)"
        inode = str(rec["entry"])
        mode = _mode(rec)
        fn = _times(rec, "fn")
        if fn and not rec.get("stream"):
            basename = str(rec.get("path", "")).rsplit("/", 1)[-1]
            fn_size = _FN_FIXED + len(basename.encode("utf-16-le"))
            lines.append(_row("0", f"{name} ($FILE_NAME){suffix}", inode, mode, rec, fn_size, fn))
        lines.append(
            _row(
                md5,
                f"{name}{suffix}",
                inode,
                mode,
                rec,
                int(rec.get("size") or 0),
                _primary_times(rec),
            )
        )
    return "".join(line + "\n" for line in lines)


def render_exports(records: list[dict[str, Any]], copied: str) -> dict[str, bytes]:
    """Member name -> content of the three exports (UTF-8)."""
    letters = drive_letters(records)
    return {
        COPYLOG_NAME: copylog(records, letters, copied).encode("utf-8"),
        SKIPLOG_NAME: skiplog(records, letters).encode("utf-8"),
        BODYFILE_NAME: bodyfile(records, letters).encode("utf-8"),
    }


def write_export_files(
    records: list[dict[str, Any]], copied: str, dest: Path, extra: dict[str, bytes] | None = None
) -> list[Path]:
    """Write the three exports (and ``extra`` files) into ``dest``; never overwrites a file.

    Raises:
        ContainerError: ``dest`` cannot be written or already holds one of the files.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in {**render_exports(records, copied), **(extra or {})}.items():
            target = dest / name
            with target.open("xb") as fh:
                fh.write(data)
            written.append(target)
    except FileExistsError as exc:
        raise ContainerError(f"{exc.filename} already exists: not overwritten") from exc
    except OSError as exc:
        raise ContainerError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return written

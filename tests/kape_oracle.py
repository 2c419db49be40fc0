"""A small, independent reading of KAPE targets (``.tkape``), for tests only.

Written from the KapeFiles guides (``Targets/TargetGuide.guide`` and
``CompoundTargetGuide.guide``) and the KAPE documentation's description of targets, not
from the project's importer: a compound target's entries name other ``.tkape`` files
(looked up by file name anywhere under the Targets folder); a file entry's ``Path`` is a
folder on the system drive (``C:\\``, ``%user%`` standing for every folder under
``Users``, ``*`` a wildcard within one folder name), ``FileMask`` a wildcard on the file
name (``name:stream`` for an alternate data stream; every file when absent) and
``Recursive`` whether files in subfolders count too. Matching is case-insensitive, as on
Windows. It is applied to TSK's ``fls -r -p`` listing of a volume.
"""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Entry:
    """One file entry of a target (the folder as segments, lower case)."""

    target: str
    folder: tuple[str, ...]
    mask: str | None
    recursive: bool


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}


def entries(targets: Path, name: str) -> tuple[list[Entry], list[str]]:
    """Every file entry ``name`` reaches through its compounds, and the entries skipped
    (regular-expression masks: not evaluated here)."""
    by_file = {p.name.lower(): p for p in targets.rglob("*.tkape")}
    seen: set[Path] = set()
    out: list[Entry] = []
    skipped: list[str] = []

    def walk(file_name: str) -> None:
        path = by_file[file_name.lower()]
        if path in seen:
            return
        seen.add(path)
        for t in _load(path).get("Targets") or []:
            where = str(t.get("Path") or "")
            if where.lower().endswith(".tkape"):
                walk(where.replace("\\", "/").rsplit("/", 1)[-1])
                continue
            mask = t.get("FileMask")
            if mask is not None and str(mask).lower().startswith("regex:"):
                skipped.append(f"{path.name}: {where} {mask}")
                continue
            parts = [p for p in where.replace("/", "\\").split("\\") if p]
            if not parts or parts[0].lower() != "c:":
                skipped.append(f"{path.name}: {where} (not on C:)")
                continue
            folder = tuple("*" if p.lower() == "%user%" else p.lower() for p in parts[1:])
            out.append(Entry(path.name, folder, None if mask is None else str(mask).lower(),
                             bool(t.get("Recursive"))))

    walk(name if name.lower().endswith(".tkape") else f"{name}.tkape")
    return out, skipped


def fls_files(image: Path, offset_sectors: int) -> set[str]:
    """Allocated regular files and their named streams (``path:stream``) per ``fls -r -p``."""
    done = subprocess.run(
        ["fls", "-r", "-p", "-o", str(offset_sectors), str(image)],
        check=True, capture_output=True,
    )
    files = set()
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        head, sep, path = line.partition(":\t")
        if not sep or "*" in head or not head.startswith("r/r"):
            continue
        files.add(path)
    return files


def _matches(entry: Entry, path: str) -> bool:
    file_part, _, stream = path.partition(":")
    segments = file_part.lower().split("/")
    folder, leaf = segments[:-1], segments[-1]
    n = len(entry.folder)
    if len(folder) < n or (not entry.recursive and len(folder) != n):
        return False
    if not all(fnmatch.fnmatchcase(s, p) for s, p in zip(folder, entry.folder, strict=False)):
        return False
    if entry.mask is None:
        return not stream
    mask_file, has_stream, mask_stream = entry.mask.partition(":")
    if bool(has_stream) != bool(stream):
        return False
    return fnmatch.fnmatchcase(leaf, mask_file) and (
        not stream or fnmatch.fnmatchcase(stream.lower(), mask_stream)
    )


def select(reached: list[Entry], files: set[str]) -> set[str]:
    """The files (and streams) the entries select."""
    return {f for f in files if any(_matches(e, f) for e in reached)}

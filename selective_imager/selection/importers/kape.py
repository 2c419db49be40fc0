"""KAPE target (``.tkape``) conversion.

Mapping (documented in ``rules/README.md``):

* ``Path`` is a folder. The drive (``C:``) is dropped, backslashes become ``/``,
  ``%user%`` (any case) becomes ``*``; ``*``/``?`` in folder names stay wildcards and
  ``[ ] { }`` are escaped with classes.
* ``FileMask`` (default ``*``) is the file-name glob; ``name:stream`` selects a stream.
* ``Recursive: true`` puts ``**/`` between folder and mask.
* Without ``FileMask`` and ``Recursive`` a ``Path`` means the files directly in that
  folder (``folder/*``), not the folder itself and not its subfolders.
* ``regex:`` masks convert when they are a literal prefix plus an alternation of
  literal extensions; otherwise the target is reported as not convertible.
* ``Path: Other.tkape`` is an include of the rule converted from ``Other.tkape``.
* ``SaveAsFileName`` only renames the copy in KAPE's output; the selection is the same,
  so it is kept in the description and noted. ``AlwaysAddToQueue``, ``Category``,
  ``Comment``, ``Id``, ``RecreateDirectories`` do not affect selection.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

from selective_imager.selection.importers import Conversion, ConversionStatus, escape_literal, kebab

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = ["KapeNames", "convert_kape_text", "kape_dependencies", "kape_root", "kape_rule_name"]

_PREFIX = "kape-"
_DRIVE = re.compile(r"^[A-Za-z]:")
_USER_VARS = re.compile(r"%users?%", re.IGNORECASE)
_ANY_VAR = re.compile(r"%[A-Za-z_()]+%")
_IGNORED_KEYS = {"Category", "Comment", "AlwaysAddToQueue", "Name"}
_KNOWN_TARGET_KEYS = {
    *_IGNORED_KEYS,
    "Path",
    "FileMask",
    "Recursive",
    "SaveAsFileName",
    "MinSize",
    "MaxSize",
    "IsDirectory",
}
# regex: masks we can express: optional "any prefix", a literal dot, literal alternatives.
_REGEX_EXT = re.compile(r"\^?(?P<prefix>\*?\.\+|\.\*|\.\+)?\\\.\((?P<alts>[^()]*)\)\$?")
_LITERAL_ALT = re.compile(r"[A-Za-z0-9_\-]+")


def kape_rule_name(stem: str) -> str:
    """Rule name of a KAPE target file stem: ``RegistryHives`` -> ``kape-registry-hives``."""
    return kebab(stem, _PREFIX)


def kape_root(path: Path) -> Path:
    """The KAPE ``Targets`` folder ``path`` lives in (or its own folder)."""
    for parent in path.resolve().parents:
        if parent.name.lower() == "targets":
            return parent
    return path.resolve().parent


class KapeNames:
    """Rule names for a set of ``.tkape`` files and lookup by file name, like KAPE.

    KAPE finds a referenced target anywhere below its Targets folder; when several
    files share a name, the one outside ``!Disabled`` and first in path order wins and
    the others get a numeric suffix so every rule name stays unique.
    """

    def __init__(self, files: Iterable[Path]) -> None:
        ordered = sorted(files, key=lambda p: ("!disabled" in str(p).lower(), str(p)))
        self.by_file: dict[str, Path] = {}
        self.names: dict[Path, str] = {}
        used: set[str] = set()
        for file in ordered:
            self.by_file.setdefault(file.name.lower(), file)
            base = kape_rule_name(file.stem)
            name, n = base, 2
            while name in used:
                name, n = f"{base}-{n}", n + 1
            used.add(name)
            # Keyed by the real path: a corpus reached through a symlink is the same corpus.
            self.names[file.resolve()] = name

    def find(self, file_name: str) -> Path | None:
        """The file KAPE would use for ``Path: file_name``."""
        return self.by_file.get(file_name.lower())

    def name_of(self, file: Path) -> str:
        """Rule name of ``file``."""
        return self.names.get(file.resolve(), kape_rule_name(file.stem))


_CORPUS_CACHE: dict[tuple[Path, ...], KapeNames] = {}


def _corpus(path: Path) -> KapeNames:
    # Listing the folder each time keeps the view current; building names is cached.
    files = tuple(sorted(kape_root(path).rglob("*.tkape")))
    names = _CORPUS_CACHE.get(files)
    if names is None:
        names = KapeNames(files)
        _CORPUS_CACHE.clear()
        _CORPUS_CACHE[files] = names
    return names


def kape_dependencies(path: Path) -> list[Path]:
    """The ``.tkape`` files a (compound) target file references and that exist."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    found: list[Path] = []
    names = _corpus(path)
    for target in (data or {}).get("Targets") or []:
        ref = str((target or {}).get("Path", ""))
        if ref.lower().endswith(".tkape"):
            dep = names.find(ref.strip())
            if dep is not None:
                found.append(dep)
    return found


def _convert_regex(mask: str) -> tuple[str | None, str]:
    """A glob for a ``regex:`` mask, with a note; None when not expressible."""
    found = _REGEX_EXT.fullmatch(mask)
    if found is None:
        return None, f"regex mask {mask!r} has no exact glob equivalent"
    alts = found.group("alts").split("|")
    if not all(_LITERAL_ALT.fullmatch(a) for a in alts):
        return None, f"regex mask {mask!r} has non-literal alternatives"
    prefix = found.group("prefix") or ""
    note = ""
    if prefix.startswith("*"):
        note = f"regex mask {mask!r} starts with a stray '*' (invalid regex); read as '.+'"
    # '.+' needs one character before the dot, '.*' or nothing allows none.
    star = "?*" if prefix.endswith(".+") else "*"
    if not prefix:
        return None, f"regex mask {mask!r} is not anchored to a file-name prefix"
    body = alts[0] if len(alts) == 1 else "{" + ",".join(alts) + "}"
    return f"{star}.{body}", note


def _folder(path: str) -> tuple[str, list[str]]:
    """Our form of a KAPE folder ``Path``, with notes about variables."""
    notes: list[str] = []
    text = path.strip().replace("\\", "/")
    text = _DRIVE.sub("", text)
    for var in set(_USER_VARS.findall(text)):
        if var.lower() != "%user%":
            notes.append(f"variable {var} read as %user%")
    text = _USER_VARS.sub("\x00", text)
    unknown = _ANY_VAR.findall(text)
    if unknown:
        notes.append("unknown variable(s) " + ", ".join(sorted(set(unknown))))
    parts = [p for p in text.split("/") if p]
    converted = "/".join(escape_literal(p).replace("\x00", "*") for p in parts)
    return converted, notes


def _convert_target(
    entry: dict[str, Any], index: int
) -> tuple[dict[str, Any] | None, list[str], list[str], bool]:
    """(target mapping, notes that make it partial, informative notes, failed)."""
    partial: list[str] = []
    info: list[str] = []
    label = str(entry.get("Name") or f"target {index}")
    for key in entry:
        if key not in _KNOWN_TARGET_KEYS:
            partial.append(f"{label}: unknown key {key!r} ignored")
    folder, notes = _folder(str(entry.get("Path", "")))
    if any(n.startswith("unknown variable") for n in notes):
        return None, [f"{label}: {n}" for n in notes], info, True
    partial.extend(f"{label}: {n}" for n in notes)
    mask_raw = entry.get("FileMask")
    mask = "*" if mask_raw in (None, "") else str(mask_raw).strip()
    if mask.lower().startswith("regex:"):
        glob, note = _convert_regex(mask[len("regex:") :])
        if glob is None:
            return None, [f"{label}: {note}"], info, True
        if note:
            partial.append(f"{label}: {note}")
        mask = glob
    else:
        # A mask may name a stream (name:stream); brackets and braces are literal in KAPE.
        mask = escape_literal(mask)
    if entry.get("IsDirectory") is True:
        info.append(f"{label}: IsDirectory read as 'every file below'")
        mask, recursive = "**", False
    else:
        recursive = entry.get("Recursive") is True
    if recursive:
        pattern = f"{folder}/**" if mask == "*" else f"{folder}/**/{mask}"
    else:
        pattern = f"{folder}/{mask}" if folder else mask
    pattern = pattern.lstrip("/")
    target: dict[str, Any] = {"name": label, "paths": [pattern]}
    for key, ours in (("MinSize", "min_size"), ("MaxSize", "max_size")):
        if entry.get(key) is not None:
            target[ours] = entry[key]
    if entry.get("SaveAsFileName"):
        info.append(f"{label}: SaveAsFileName {entry['SaveAsFileName']!r} only renames KAPE's copy")
    return target, partial, info, False


def convert_kape_text(text: str, source: Path, names: KapeNames | None = None) -> Conversion:
    """Convert one ``.tkape`` file's text into a :class:`Conversion`."""
    names = names or _corpus(source)
    resolved = source.resolve()
    own_name = names.name_of(resolved) if resolved in names.names else kape_rule_name(source.stem)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return Conversion(str(source), source.name, "", ConversionStatus.FAILED, (str(exc),))
    if not isinstance(data, dict) or not isinstance(data.get("Targets"), list):
        return Conversion(
            str(source), source.name, "", ConversionStatus.FAILED, ("no Targets list",)
        )
    partial: list[str] = []
    info: list[str] = []
    failed: list[str] = []
    targets: list[dict[str, Any]] = []
    includes: list[str] = []
    used_labels: set[str] = set()
    for index, entry in enumerate(data["Targets"], 1):
        if not isinstance(entry, dict) or "Path" not in entry:
            failed.append(f"target {index}: no Path")
            continue
        ref = str(entry["Path"]).strip()
        if ref.lower().endswith(".tkape"):
            dep = names.find(ref)
            if dep is None:
                failed.append(f"{entry.get('Name', ref)}: referenced target {ref} not found")
                continue
            dep_name = names.name_of(dep)
            if dep_name != own_name and dep_name not in includes:
                includes.append(dep_name)
            continue
        target, part, notes, bad = _convert_target(entry, index)
        info.extend(notes)
        if bad or target is None:
            failed.extend(part)
            continue
        partial.extend(part)
        label, n = target["name"], 2
        while label in used_labels:
            label, n = f"{target['name']} ({n})", n + 1
        used_labels.add(label)
        target["name"] = label
        targets.append(target)
    compound = bool(includes) and not targets
    if not targets and not includes:
        return Conversion(
            str(source),
            source.name,
            "",
            ConversionStatus.FAILED,
            tuple(failed + partial),
            compound=compound,
        )
    description = str(data.get("Description") or "").strip()
    extra = [f"Converted from KAPE target {source.name}.", *info]
    document: dict[str, Any] = {
        "name": own_name,
        "title": description or source.stem,
        "description": " ".join([description, *extra]).strip(),
        "version": 1,
        "author": str(data.get("Author") or ""),
        "os": ["windows"],
    }
    if includes:
        document["include"] = includes
    if targets:
        document["targets"] = targets
    status = ConversionStatus.PARTIAL if failed or partial else ConversionStatus.FULL
    return Conversion(
        str(source),
        source.name,
        own_name,
        status,
        tuple(failed + partial + info),
        document,
        compound,
    )

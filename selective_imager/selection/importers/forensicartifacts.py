"""ForensicArtifacts definition conversion.

Each definition becomes one rule named ``fa-<kebab name>``. FILE sources become
targets; PATH (and DIRECTORY) sources select the files directly in the named folder;
ARTIFACT_GROUP sources become includes. REGISTRY_KEY, REGISTRY_VALUE, WMI, COMMAND and
ARTIFACT sources select no files and are reported as not applicable. The variable
mapping table is in ``rules/README.md`` (:data:`WINDOWS_VARIABLES`, :data:`USER_VARIABLES`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import yaml

from selective_imager.selection.importers import Conversion, ConversionStatus, escape_literal, kebab

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "NOT_APPLICABLE_TYPES",
    "USER_VARIABLES",
    "WINDOWS_VARIABLES",
    "convert_fa_file",
    "fa_dependencies",
    "fa_rule_name",
]

_PREFIX = "fa-"
NOT_APPLICABLE_TYPES = frozenset({"REGISTRY_KEY", "REGISTRY_VALUE", "WMI", "COMMAND", "ARTIFACT"})
_FILE_TYPES = frozenset({"FILE", "PATH", "DIRECTORY"})

#: System-wide variables (Windows): one volume-relative expansion each ("" = root).
WINDOWS_VARIABLES: dict[str, tuple[str, ...]] = {
    "environ_systemroot": ("Windows",),
    "environ_windir": ("Windows",),
    "environ_systemdrive": ("",),
    "environ_programfiles": ("Program Files",),
    "environ_programfilesx86": ("Program Files (x86)",),
    "environ_programdata": ("ProgramData",),
    "environ_allusersappdata": ("ProgramData",),
    "environ_allusersprofile": ("ProgramData",),
}

#: Per-user variables by OS family; several expansions give several paths.
USER_VARIABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "windows": {
        "users.homedir": ("Users/*",),
        "users.userprofile": ("Users/*",),
        "users.appdata": ("Users/*/AppData/Roaming",),
        "users.localappdata": ("Users/*/AppData/Local",),
        "users.localappdata_low": ("Users/*/AppData/LocalLow",),
        "users.temp": ("Users/*/AppData/Local/Temp",),
        "users.username": ("*",),
        "users.sid": ("*",),
    },
    "linux": {
        "users.homedir": ("home/*", "root"),
        "users.username": ("*",),
    },
    "darwin": {
        "users.homedir": ("Users/*",),
        "users.username": ("*",),
    },
}

_VAR = re.compile(r"%%([A-Za-z0-9_.]+)%%")
_DEPTH = re.compile(r"\*\*(\d+)")
_DRIVE = re.compile(r"^[A-Za-z]:")


def fa_rule_name(artifact: str) -> str:
    """Rule name of an FA definition: ``WindowsEventLogs`` -> ``fa-windows-event-logs``."""
    return kebab(artifact, _PREFIX)


def _family(supported: list[str]) -> str:
    lowered = {s.lower() for s in supported}
    if "windows" in lowered or not lowered:
        return "windows"
    if "linux" in lowered or "android" in lowered:
        return "linux"
    return "darwin"


def _expand(path: str, family: str) -> tuple[list[str], list[str]]:
    """Volume-relative expansions of an FA path and problems (unknown variables)."""
    results = [path]
    problems: list[str] = []
    for var in dict.fromkeys(_VAR.findall(path)):
        values = WINDOWS_VARIABLES.get(var) or USER_VARIABLES[family].get(var)
        if values is None and family != "windows":
            values = USER_VARIABLES["windows"].get(var)
        if values is None:
            problems.append(f"unknown variable %%{var}%%")
            continue
        results = [r.replace(f"%%{var}%%", v) for r in results for v in values]
    return results, problems


def _to_glob(path: str, separator: str) -> tuple[str, list[str]]:
    """Our glob for one expanded FA path, with partial-conversion notes."""
    notes: list[str] = []
    parts = [p for p in _DRIVE.sub("", path).split(separator) if p]
    if separator != "/":
        parts = [q for p in parts for q in p.split("/") if q]
    out: list[str] = []
    for part in parts:
        depth = _DEPTH.fullmatch(part)
        if part == "**":
            out.append("**")
        elif depth is not None:
            notes.append(f"recursion depth limit {depth.group(1)} dropped ('**' is unlimited)")
            out.append("**")
        elif "**" in part:
            notes.append(f"'**' inside {part!r} read as '*'")
            out.append(escape_literal(re.sub(r"\*{2,}", "*", part)))
        else:
            out.append(escape_literal(part))
    return "/".join(out), notes


@lru_cache(maxsize=8)
def _directory_index(directory: str) -> dict[str, dict[str, Any]]:
    """Every definition of the FA files in ``directory``, by name (for groups)."""
    from pathlib import Path

    index: dict[str, dict[str, Any]] = {}
    for file in sorted(Path(directory).glob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for doc in docs:
            if isinstance(doc, dict) and "name" in doc and "sources" in doc:
                index.setdefault(str(doc["name"]), doc)
    return index


def _collects_files(name: str, index: dict[str, dict[str, Any]], seen: set[str]) -> bool:
    """Whether a definition (through its groups) selects any file."""
    if name in seen or name not in index:
        return False
    seen.add(name)
    for source in index[name].get("sources") or []:
        kind = source.get("type")
        if kind in _FILE_TYPES and (source.get("attributes") or {}).get("paths"):
            return True
        if kind == "ARTIFACT_GROUP":
            for member in (source.get("attributes") or {}).get("names") or []:
                if _collects_files(str(member), index, seen):
                    return True
    return False


def _convert(doc: dict[str, Any], source: Path, index: dict[str, dict[str, Any]]) -> Conversion:
    name = str(doc.get("name", ""))
    rule_name = fa_rule_name(name)
    partial: list[str] = []
    skipped: list[str] = []
    targets: list[dict[str, Any]] = []
    includes: list[str] = []
    artifact_os = [str(s) for s in doc.get("supported_os") or []]
    for number, src in enumerate(doc.get("sources") or [], 1):
        kind = str(src.get("type", ""))
        attributes = src.get("attributes") or {}
        if kind in NOT_APPLICABLE_TYPES:
            skipped.append(kind)
            continue
        if kind == "ARTIFACT_GROUP":
            for member in attributes.get("names") or []:
                member = str(member)
                if member not in index:
                    partial.append(f"group member {member} is not defined")
                elif not _collects_files(member, index, set()):
                    skipped.append(f"group member {member} (no files)")
                elif fa_rule_name(member) not in includes:
                    includes.append(fa_rule_name(member))
            continue
        if kind not in _FILE_TYPES:
            partial.append(f"unknown source type {kind}")
            continue
        family = _family([str(s) for s in src.get("supported_os") or []] or artifact_os)
        separator = str(attributes.get("separator") or "/")
        paths: list[str] = []
        for raw in attributes.get("paths") or []:
            expansions, problems = _expand(str(raw), family)
            if problems:
                partial.extend(f"{raw}: {p}" for p in problems)
                continue
            for expanded in expansions:
                glob, notes = _to_glob(expanded, separator)
                partial.extend(f"{raw}: {n}" for n in notes)
                if kind != "FILE":
                    # A PATH names a folder; we take the files directly in it.
                    glob = f"{glob}/*" if glob else "*"
                if glob and glob not in paths:
                    paths.append(glob)
        if kind != "FILE":
            partial.append(f"{kind} source read as the files directly in the folder")
        if paths:
            targets.append({"name": f"{kind.lower()} source {number}", "paths": paths})
    if not targets and not includes:
        status = ConversionStatus.FAILED if partial else ConversionStatus.NOT_APPLICABLE
        reasons = partial or [
            "no file sources (" + ", ".join(sorted(set(skipped)) or ["none"]) + ")"
        ]
        return Conversion(str(source), name, "", status, tuple(reasons))
    reasons = list(partial)
    if skipped:
        reasons.append("sources without files skipped: " + ", ".join(sorted(set(skipped))))
    description = " ".join(str(doc.get("doc") or "").split())
    document: dict[str, Any] = {
        "name": rule_name,
        "title": (description.split(". ")[0] if description else name)[:200],
        "description": f"{description} Converted from ForensicArtifacts definition {name}.".strip(),
        "version": 1,
        "author": "ForensicArtifacts project",
        "os": [s.lower() for s in artifact_os],
    }
    refs = [str(u) for u in doc.get("urls") or []]
    if refs:
        document["references"] = refs
    if includes:
        document["include"] = includes
    if targets:
        document["targets"] = targets
    # Skipping registry/WMI/command sources of a mixed definition is reported but the
    # file part is complete, so only real losses make a conversion partial.
    status = ConversionStatus.PARTIAL if partial else ConversionStatus.FULL
    return Conversion(
        str(source),
        name,
        rule_name,
        status,
        tuple(reasons),
        document,
        compound=bool(includes) and not targets,
    )


def convert_fa_file(path: Path, text: str) -> list[Conversion]:
    """Convert every definition of a ForensicArtifacts YAML file."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [Conversion(str(path), path.name, "", ConversionStatus.FAILED, (str(exc),))]
    index = dict(_directory_index(str(path.resolve().parent)))
    for doc in docs:
        if isinstance(doc, dict) and "name" in doc:
            index[str(doc["name"])] = doc
    return [_convert(doc, path, index) for doc in docs if isinstance(doc, dict)]


def fa_dependencies(path: Path, includes: set[str], have: set[str]) -> list[Conversion]:
    """Conversions of the definitions (from ``path``'s folder) that ``includes`` need.

    Follows groups transitively and skips rule names in ``have``.
    """
    index = _directory_index(str(path.resolve().parent))
    by_rule = {fa_rule_name(name): name for name in index}
    wanted = [n for n in includes if n not in have]
    done = set(have)
    out: list[Conversion] = []
    while wanted:
        rule_name = wanted.pop()
        if rule_name in done or rule_name not in by_rule:
            continue
        done.add(rule_name)
        conversion = _convert(index[by_rule[rule_name]], path.resolve().parent, index)
        out.append(conversion)
        if conversion.document is not None:
            wanted.extend(conversion.document.get("include", []))
    return out

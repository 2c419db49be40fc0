"""Rule paths: folders of rule files found by the names their own communities use.

A rule path holds our YAML rules, KAPE ``.tkape`` targets (found anywhere below the
folder, as KAPE finds them below ``Targets``) and ForensicArtifacts definition files.
``--rule NAME`` then accepts our rule names, KAPE target names (``KapeTriage``,
``!SANS_Triage``) and ForensicArtifacts names (``WindowsEventLogs``). Folders are
indexed only when a name is looked up, and each file is read at most once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

# Folders named by this variable (os.pathsep-separated) are rule paths too.
RULE_PATH_ENV = "SELECTIVE_IMAGER_RULE_PATH"
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """One name a rule path answers to.

    Attributes:
        name: the name as its file gives it (``KapeTriage``, ``WindowsEventLogs``...).
        kind: ``native``, ``kape`` or ``forensicartifacts``.
        spec: what to load: a file path, or ``file.yaml#Name`` for one FA definition.
        title: a one-line description, when the file has one.
    """

    name: str
    kind: str
    spec: str
    title: str = ""


def rule_paths_from_env() -> tuple[Path, ...]:
    """The folders named by :data:`RULE_PATH_ENV` (empty when unset)."""
    value = os.environ.get(RULE_PATH_ENV, "")
    return tuple(Path(p) for p in value.split(os.pathsep) if p)


class RulePath:
    """An ordered set of rule folders; the first folder that knows a name wins."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = tuple(dict.fromkeys(Path(f) for f in folders))
        self._entries: list[RuleEntry] | None = None

    def entries(self) -> list[RuleEntry]:
        """Every name of every folder, folder by folder, files in path order."""
        if self._entries is None:
            self._entries = [e for folder in self.folders for e in _index(folder)]
        return self._entries

    def find(self, name: str) -> RuleEntry | None:
        """The entry called ``name``: exact first, then ignoring case and a leading ``!``."""
        entries = self.entries()
        for entry in entries:
            if entry.name == name:
                return entry
        wanted = _fold(name)
        return next((e for e in entries if _fold(e.name) == wanted), None)

    def search(self, word: str) -> list[RuleEntry]:
        """Entries whose name, title or file path contains ``word`` (case-insensitive)."""
        needle = word.lower()
        return [
            e
            for e in self.entries()
            if needle in e.name.lower() or needle in e.title.lower() or needle in e.spec.lower()
        ]


def _fold(name: str) -> str:
    return name.lstrip("!").lower()


def _index(folder: Path) -> Iterator[RuleEntry]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if suffix == ".tkape":
            yield from _kape_entries(path)
        elif suffix in (".yaml", ".yml") and path.is_file():
            yield from _yaml_entries(path)


def _kape_entries(path: Path) -> Iterator[RuleEntry]:
    title = ""
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_SAFE_LOADER)
        if isinstance(data, dict):
            title = str(data.get("Description") or "")
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        title = ""
    yield RuleEntry(path.stem, "kape", str(path), title)


def _yaml_entries(path: Path) -> Iterator[RuleEntry]:
    try:
        docs = [
            d
            for d in yaml.load_all(path.read_text(encoding="utf-8-sig"), Loader=_SAFE_LOADER)
            if isinstance(d, dict)
        ]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    if not docs:
        return
    if len(docs) == 1 and "sources" not in docs[0] and isinstance(docs[0].get("name"), str):
        doc = docs[0]
        yield RuleEntry(doc["name"], "native", str(path), str(doc.get("title") or ""))
        return
    for doc in docs:
        if isinstance(doc.get("name"), str) and "sources" in doc:
            title = str(doc.get("doc") or "").strip().splitlines()
            yield RuleEntry(
                doc["name"], "forensicartifacts", f"{path}#{doc['name']}", title[0] if title else ""
            )

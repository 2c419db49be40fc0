"""Select the files (and streams) of a file system that a :class:`RuleSet` asks for.

Two strategies give identical results:

* ``walk``: descend from the root only into directories some pattern can still reach
  (the :class:`~selective_imager.selection.globs.Glob` state machine prunes the tree); when every
  live pattern needs a literal name next, look the names up instead of listing the
  directory.
* ``scan``: read every entry from :meth:`Filesystem.scan` (a sequential $MFT read on
  NTFS) and run the same state machine over each path, memoising directory states.

``auto`` takes ``scan`` when the file system has a real scan and some pattern starts
with ``**`` (possibly after wildcard segments), since such a walk visits nearly every
directory anyway; otherwise ``walk``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from selective_imager.errors import FilesystemError, PathNotFoundError
from selective_imager.filesystems.base import Filesystem
from selective_imager.selection.globs import Glob, Segment, State, compile_glob, stream_selected

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from selective_imager.models import FileEntry
    from selective_imager.selection.rules import Rule, RuleSet, Target

__all__ = [
    "LOOKUP_LIMIT",
    "STRATEGIES",
    "Match",
    "MatchError",
    "MatchResult",
    "match",
    "match_all",
]

_log = logging.getLogger(__name__)

STRATEGIES = ("auto", "walk", "scan")

#: At most this many literal child names are looked up one by one; more, and listing
#: the directory once is assumed cheaper.
LOOKUP_LIMIT = 8


@dataclass(frozen=True, slots=True)
class Match:
    """One selected stream of one file.

    Attributes:
        entry: the file.
        stream: "" for the default data stream, else the alternate data stream name.
        rules: the (leaf) rules whose targets selected it, sorted.
        targets: ``rule/target`` labels of the selecting targets, sorted.
        requested: the top-level rules (as asked for) that lead to those rules, sorted.
    """

    entry: FileEntry
    stream: str
    rules: tuple[str, ...]
    targets: tuple[str, ...]
    requested: tuple[str, ...]

    @property
    def size(self) -> int:
        """Size of the selected stream in bytes."""
        return self.entry.stream_size(self.stream)


@dataclass(frozen=True, slots=True)
class MatchError:
    """A directory (or the scan) that could not be read; the match went on without it.

    Attributes:
        path: the directory's path ("" for the root or the whole scan).
        error: the file-system error.
        entry: the damaged entry when one entry (not a directory listing) is the
            problem and no pattern selected it (a selected one becomes a match,
            whose copy then fails with the reason).
    """

    path: str
    error: FilesystemError
    entry: FileEntry | None = None


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Everything :func:`match_all` found."""

    matches: tuple[Match, ...]
    errors: tuple[MatchError, ...]
    strategy: str


@dataclass(frozen=True, slots=True)
class _Pattern:
    glob: Glob
    target: int  # index into _Compiled.targets


@dataclass(frozen=True, slots=True)
class _CompiledTarget:
    rule: Rule
    target: Target
    label: str
    exclude: tuple[Glob, ...]


class _Compiled:
    """All patterns of a rule set, compiled for one file system."""

    def __init__(self, ruleset: RuleSet, fs_case_sensitive: bool) -> None:
        self.fs_case_sensitive = fs_case_sensitive
        self.targets: list[_CompiledTarget] = []
        self.patterns: list[_Pattern] = []
        for rule, target in ruleset.targets():
            sensitive = (
                fs_case_sensitive if target.case_sensitive is None else target.case_sensitive
            )
            index = len(self.targets)
            excludes = tuple(compile_glob(p, case_sensitive=sensitive) for p in target.exclude)
            self.targets.append(
                _CompiledTarget(rule, target, f"{rule.name}/{target.name}", excludes)
            )
            for path in target.paths:
                self.patterns.append(_Pattern(compile_glob(path, case_sensitive=sensitive), index))
        self.roots = ruleset.roots

    def start(self) -> tuple[frozenset[State], ...]:
        return tuple(p.glob.start() for p in self.patterns)

    def step(self, states: tuple[frozenset[State], ...], name: str) -> tuple[frozenset[State], ...]:
        return tuple(
            p.glob.step(s, name) if s else s for p, s in zip(self.patterns, states, strict=True)
        )

    def lookup_names(self, states: tuple[frozenset[State], ...]) -> list[str] | None:
        """Child names to look up instead of listing, or None to list the directory."""
        names: dict[str, str] = {}
        for pattern, s in zip(self.patterns, states, strict=True):
            if not s:
                continue
            # A case-insensitive pattern on a case-sensitive file system must see
            # every spelling, which only a listing gives.
            if not pattern.glob.case_sensitive and self.fs_case_sensitive:
                return None
            literal = pattern.glob.literal_names(s)
            if literal is None:
                return None
            for name in literal:
                key = name if self.fs_case_sensitive else name.lower()
                names.setdefault(key, name)
        if len(names) > LOOKUP_LIMIT:
            return None
        return sorted(names.values())

    def file_matches(
        self,
        entry: FileEntry,
        states: tuple[frozenset[State], ...],
        complete: Callable[[FileEntry], FileEntry] | None = None,
    ) -> Iterator[Match]:
        """The matches of a file given the states of its parent directory.

        ``complete`` turns a partial entry (from a scan) into a full one; it is only
        called once the name matched, so a scan pays for full entries of matches only.
        """
        accepted: list[tuple[_Pattern, tuple[Segment | None, ...]]] = []
        for pattern, s in zip(self.patterns, states, strict=True):
            if not s:
                continue
            selectors = pattern.glob.accepts(s, entry.name)
            if selectors:
                accepted.append((pattern, selectors))
        if not accepted:
            return
        if complete is not None:
            entry = complete(entry)
        selected: dict[str, set[int]] = {}
        for pattern, selectors in accepted:
            for stream in _streams(entry, selectors):
                selected.setdefault(stream, set()).add(pattern.target)
        for stream in sorted(selected):
            size = entry.stream_size(stream)
            keep = [
                self.targets[i]
                for i in sorted(selected[stream])
                if self._target_keeps(self.targets[i], entry.path, stream, size)
            ]
            if not keep:
                continue
            rules = sorted({t.rule.name for t in keep})
            requested = sorted({root for name in rules for root in self.roots.get(name, ())})
            yield Match(
                entry, stream, tuple(rules), tuple(sorted(t.label for t in keep)), tuple(requested)
            )

    @staticmethod
    def _target_keeps(target: _CompiledTarget, path: str, stream: str, size: int) -> bool:
        limits = target.target
        if limits.min_size is not None and size < limits.min_size:
            return False
        if limits.max_size is not None and size > limits.max_size:
            return False
        for glob in target.exclude:
            # An exclude without ':stream' removes the whole file (every stream); one
            # with ':stream' removes only the streams it names.
            if glob.match_path(path, "") or (stream and glob.match_path(path, stream)):
                return False
        return True


def _streams(entry: FileEntry, selectors: tuple[Segment | None, ...]) -> list[str]:
    found: list[str] = []
    for selector in selectors:
        if selector is None:
            if "" not in found:
                found.append("")
            continue
        for info in entry.streams:
            if info.name and stream_selected(selector, info.name) and info.name not in found:
                found.append(info.name)
    return found


def _report(
    on_error: Callable[[MatchError], None] | None,
    path: str,
    exc: FilesystemError,
    entry: FileEntry | None = None,
) -> None:
    event = MatchError(path, exc, entry)
    if on_error is None:
        _log.warning("cannot read %r: %s", path or "/", exc)
    else:
        on_error(event)


def _has_real_scan(fs: Filesystem) -> bool:
    return type(fs).scan is not Filesystem.scan


def choose_strategy(fs: Filesystem, ruleset: RuleSet) -> str:
    """The strategy ``auto`` picks for ``fs`` and ``ruleset`` (``walk`` or ``scan``)."""
    if not _has_real_scan(fs):
        return "walk"
    for _rule, target in ruleset.targets():
        for path in target.paths:
            if compile_glob(path, case_sensitive=True).starts_recursive():
                return "scan"
    return "walk"


def _walk(
    fs: Filesystem,
    compiled: _Compiled,
    on_error: Callable[[MatchError], None] | None,
    include_deleted: bool,
) -> Iterator[Match]:
    try:
        root = fs.root()
    except FilesystemError as exc:
        _report(on_error, "", exc)
        return
    stack: list[tuple[FileEntry, tuple[frozenset[State], ...]]] = [(root, compiled.start())]
    while stack:
        directory, states = stack.pop()
        names = compiled.lookup_names(states)
        children = _looked_up(fs, directory, names) if names is not None else None
        if children is None:
            # Listed (also when a looked-up name was damaged: the listing goes on past it).
            try:
                listing = fs.list_directory(directory)
            except FilesystemError as exc:
                _report(on_error, directory.path, exc)
                continue
            for problem in listing.problems:
                _report(on_error, directory.path, FilesystemError(problem))
            children = list(listing.entries)
        subdirs: list[tuple[FileEntry, tuple[frozenset[State], ...]]] = []
        for child in children:
            if not child.allocated and not include_deleted:
                continue
            if child.is_directory:
                next_states = compiled.step(states, child.name)
                if child.damage:
                    _report(on_error, child.path, FilesystemError(child.damage), child)
                if any(next_states):
                    subdirs.append((child, next_states))
                continue
            found = list(compiled.file_matches(child, states))
            if child.damage and not found:
                _report(on_error, child.path, FilesystemError(child.damage), child)
            yield from found
        stack.extend(reversed(subdirs))


def _looked_up(fs: Filesystem, directory: FileEntry, names: list[str]) -> list[FileEntry] | None:
    """The children named ``names`` that exist, or None when a lookup failed."""
    children: list[FileEntry] = []
    seen: set[str] = set()
    for name in names:
        try:
            child = fs.lookup(directory.child_path(name))
        except PathNotFoundError:
            continue
        except FilesystemError:
            return None
        if child.path not in seen:
            seen.add(child.path)
            children.append(child)
    return children


def _scan(
    fs: Filesystem,
    compiled: _Compiled,
    on_error: Callable[[MatchError], None] | None,
    include_deleted: bool,
) -> Iterator[Match]:
    start = compiled.start()
    memo: dict[str, tuple[frozenset[State], ...]] = {"": start}
    dead = tuple(frozenset[State]() for _ in start)

    def states_of(directory: str) -> tuple[frozenset[State], ...]:
        known = memo.get(directory)
        if known is not None:
            return known
        parent, _, name = directory.rpartition("/")
        parent_states = states_of(parent)
        result = compiled.step(parent_states, name) if any(parent_states) else dead
        memo[directory] = result
        return result

    try:
        for entry in fs.scan():
            if entry.damage and not entry.path:
                # A damaged record (or a file under one): no path to match, but named.
                _report(on_error, entry.path, FilesystemError(entry.damage), entry)
                continue
            if entry.is_directory or (not entry.allocated and not include_deleted):
                continue
            parent = entry.path.rpartition("/")[0]
            states = states_of(parent)
            if not any(states):
                continue
            try:
                found = list(compiled.file_matches(entry, states, fs.complete))
            except FilesystemError as exc:
                # Its full record cannot be read: this entry is lost, not the scan.
                _report(on_error, entry.path, exc, entry)
                continue
            yield from found
    except FilesystemError as exc:
        _report(on_error, "", exc)


def match(
    fs: Filesystem,
    ruleset: RuleSet,
    *,
    strategy: str = "auto",
    on_error: Callable[[MatchError], None] | None = None,
    include_deleted: bool = False,
) -> Iterator[Match]:
    """Yield one :class:`Match` per selected (file, stream).

    Args:
        fs: the file system to search.
        ruleset: the resolved rules.
        strategy: ``auto``, ``walk`` or ``scan`` (same results, different cost).
        on_error: called with a :class:`MatchError` for every directory that could not
            be read (the search goes on without it); when None the error is logged as
            a warning.
        include_deleted: also consider entries the file system marks unallocated.

    Raises:
        ValueError: unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    compiled = _Compiled(ruleset, fs.info.case_sensitive)
    if strategy == "auto":
        strategy = choose_strategy(fs, ruleset)
    if strategy == "scan":
        return _scan(fs, compiled, on_error, include_deleted)
    return _walk(fs, compiled, on_error, include_deleted)


def match_all(
    fs: Filesystem, ruleset: RuleSet, *, strategy: str = "auto", include_deleted: bool = False
) -> MatchResult:
    """Run :func:`match` to the end, collecting matches and errors (for ``--dry-run``)."""
    errors: list[MatchError] = []
    chosen = choose_strategy(fs, ruleset) if strategy == "auto" else strategy
    matches = tuple(
        match(fs, ruleset, strategy=chosen, on_error=errors.append, include_deleted=include_deleted)
    )
    return MatchResult(matches, tuple(errors), chosen)

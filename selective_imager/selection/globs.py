"""Path globs of the rule language, compiled to a small state machine.

Grammar (the authoritative description is ``rules/README.md``):

* Paths are ``/``-separated and relative to the volume root; one leading ``/`` is
  ignored. Empty segments, ``.`` and ``..`` are errors.
* ``*`` matches any run of characters and ``?`` one character, both within one segment.
* ``[abc]``, ``[a-z]``, ``[!a-z]`` are character classes; a ``]`` right after ``[`` or
  ``[!`` is a member. Classes are how literal ``*``, ``?``, ``[``, ``{``, ``}``, ``:``
  are written (``[*]``); a backslash is an ordinary character.
* ``{a,b}`` alternatives are expanded first, may nest and may contain ``/``.
* ``**`` as a whole segment matches zero or more directories; as the last segment it
  matches every file below. ``**`` inside a longer segment is an error.
* ``:glob`` after the last segment selects alternate data streams whose name matches.
* Case-insensitive matching folds both sides with :meth:`str.lower`.

A :class:`Glob` is walked segment by segment: :meth:`Glob.start` gives the initial
states, :meth:`Glob.step` the states after entering a directory and
:meth:`Glob.accepts` tells whether a file name completes a match. The matcher prunes
the directory walk with it; :meth:`Glob.match_path` runs the same machine over a whole
path, so the pruned walk and a flat scan agree by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "MAX_ALTERNATIVES",
    "Glob",
    "GlobError",
    "Segment",
    "SegmentKind",
    "State",
    "compile_glob",
    "expand_braces",
]

# Brace expansion is exponential in the number of groups; cap it so a typo in a rule
# cannot make the matcher build millions of branches.
MAX_ALTERNATIVES = 1024

# (branch index, segment index) inside one Glob.
State = tuple[int, int]


class GlobError(ValueError):
    """A pattern does not follow the glob grammar.

    Attributes:
        pattern: the offending pattern.
        position: 0-based character offset of the problem in ``pattern`` (None when it
            is about the pattern as a whole).
        message: what is wrong.
    """

    def __init__(self, pattern: str, position: int | None, message: str) -> None:
        self.pattern = pattern
        self.position = position
        self.message = message
        where = f" at column {position + 1}" if position is not None else ""
        super().__init__(f"bad glob {pattern!r}{where}: {message}")


class SegmentKind(Enum):
    """How a segment matches a name."""

    LITERAL = "literal"
    WILDCARD = "wildcard"
    RECURSIVE = "recursive"


@dataclass(frozen=True, slots=True)
class Segment:
    """One compiled path segment (or the stream part).

    Attributes:
        text: the segment as written.
        kind: literal, wildcard or ``**``.
        case_sensitive: whether names are compared without folding.
        literal: the name to compare with (folded when case-insensitive); LITERAL only.
        regex: the compiled form of a WILDCARD segment.
    """

    text: str
    kind: SegmentKind
    case_sensitive: bool
    literal: str = ""
    regex: re.Pattern[str] | None = None

    def matches(self, name: str) -> bool:
        """Whether ``name`` (one path component or stream name) matches."""
        if self.kind is SegmentKind.RECURSIVE:
            return True
        if not self.case_sensitive:
            name = name.lower()
        if self.kind is SegmentKind.LITERAL:
            return name == self.literal
        assert self.regex is not None
        return self.regex.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class _Branch:
    """One brace alternative: a list of segments plus an optional stream matcher."""

    segments: tuple[Segment, ...]
    stream: Segment | None


def _find_class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "!":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        # A ']' first in the class is a member, not the end.
        i += 1
    while i < len(pattern):
        if pattern[i] == "]":
            return i
        i += 1
    return -1


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a,b}`` alternatives (nested allowed) into plain patterns.

    Braces inside a character class are literal.

    Raises:
        GlobError: unbalanced braces or more than :data:`MAX_ALTERNATIVES` results.
    """
    return _expand(pattern, pattern, 0)


def _expand(pattern: str, full: str, offset: int) -> list[str]:
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            end = _find_class_end(pattern, i)
            if end < 0:
                raise GlobError(full, offset + i, "unclosed character class '['")
            i = end + 1
            continue
        if ch == "}":
            raise GlobError(full, offset + i, "'}' without '{' (write [}] for a literal)")
        if ch == "{":
            parts, end = _split_group(pattern, i, full, offset)
            prefix = pattern[:i]
            tails = _expand(pattern[end + 1 :], full, offset + end + 1)
            results: list[str] = []
            for part_text, part_offset in parts:
                for middle in _expand(part_text, full, offset + part_offset):
                    for tail in tails:
                        results.append(prefix + middle + tail)
                        if len(results) > MAX_ALTERNATIVES:
                            raise GlobError(
                                full, None, f"braces expand to more than {MAX_ALTERNATIVES} paths"
                            )
            return results
        i += 1
    return [pattern]


def _split_group(
    pattern: str, start: int, full: str, offset: int
) -> tuple[list[tuple[str, int]], int]:
    """Split the brace group at ``start`` into its top-level alternatives."""
    depth = 0
    parts: list[tuple[str, int]] = []
    part_start = start + 1
    i = start
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            end = _find_class_end(pattern, i)
            if end < 0:
                raise GlobError(full, offset + i, "unclosed character class '['")
            i = end + 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                parts.append((pattern[part_start:i], part_start))
                return parts, i
        elif ch == "," and depth == 1:
            parts.append((pattern[part_start:i], part_start))
            part_start = i + 1
        i += 1
    raise GlobError(full, offset + start, "unclosed '{' (write [{] for a literal)")


def _translate_segment(text: str, full: str, case_sensitive: bool) -> str:
    """Regex source for one wildcard segment."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = _find_class_end(text, i)
            if end < 0:
                raise GlobError(full, None, f"unclosed character class in segment {text!r}")
            body = text[i + 1 : end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not case_sensitive:
                body = body.lower()
            members: list[str] = []
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    lo, hi = body[j], body[j + 2]
                    if lo > hi:
                        raise GlobError(full, None, f"reversed range {lo}-{hi} in class")
                    members.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 3
                else:
                    members.append(re.escape(body[j]))
                    j += 1
            out.append("[" + ("^" if negate else "") + "".join(members) + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch.lower() if not case_sensitive else ch))
        i += 1
    return "".join(out)


def _compile_segment(text: str, full: str, case_sensitive: bool) -> Segment:
    if text == "**":
        return Segment(text, SegmentKind.RECURSIVE, case_sensitive)
    if "**" in text:
        raise GlobError(full, None, f"'**' must be a whole segment, not part of {text!r} (use '*')")
    if not any(c in text for c in "*?["):
        literal = text if case_sensitive else text.lower()
        return Segment(text, SegmentKind.LITERAL, case_sensitive, literal=literal)
    source = _translate_segment(text, full, case_sensitive)
    return Segment(text, SegmentKind.WILDCARD, case_sensitive, regex=re.compile(source, re.DOTALL))


def _split_stream(text: str) -> tuple[str, str | None]:
    """Split ``name:stream`` at the first ``:`` outside a character class."""
    i = 0
    while i < len(text):
        if text[i] == "[":
            end = _find_class_end(text, i)
            i = end + 1 if end >= 0 else len(text)
            continue
        if text[i] == ":":
            return text[:i], text[i + 1 :]
        i += 1
    return text, None


def _compile_branch(path: str, full: str, case_sensitive: bool) -> _Branch:
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise GlobError(full, None, "empty path")
    parts = path.split("/")
    last, stream_text = _split_stream(parts[-1])
    parts[-1] = last
    segments: list[Segment] = []
    for part in parts:
        if part == "":
            raise GlobError(full, None, "empty path segment ('//', or a trailing '/')")
        if part in (".", ".."):
            raise GlobError(full, None, f"'{part}' segments are not allowed")
        segments.append(_compile_segment(part, full, case_sensitive))
    stream: Segment | None = None
    if stream_text is not None:
        if stream_text == "":
            raise GlobError(full, None, "empty stream name after ':'")
        if _split_stream(stream_text)[1] is not None:
            raise GlobError(full, None, "more than one ':' in the last segment (write [:])")
        if "**" in stream_text:
            raise GlobError(full, None, "'**' is not allowed in a stream name")
        stream = _compile_segment(stream_text, full, case_sensitive)
    return _Branch(tuple(segments), stream)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled pattern: one or more brace-expanded branches.

    Attributes:
        pattern: the pattern as written.
        case_sensitive: whether it was compiled case-sensitively.
        branches: the expanded alternatives.
    """

    pattern: str
    case_sensitive: bool
    branches: tuple[_Branch, ...]

    def _close(self, states: set[State], state: State) -> None:
        """Add ``state`` and, for ``**`` segments, the states it can skip to."""
        branch, index = state
        segments = self.branches[branch].segments
        while True:
            states.add((branch, index))
            if index < len(segments) - 1 and segments[index].kind is SegmentKind.RECURSIVE:
                index += 1
                continue
            return

    def start(self) -> frozenset[State]:
        """The states at the volume root."""
        states: set[State] = set()
        for branch in range(len(self.branches)):
            self._close(states, (branch, 0))
        return frozenset(states)

    def step(self, states: frozenset[State], name: str) -> frozenset[State]:
        """The states after entering the directory ``name``; empty means prune."""
        out: set[State] = set()
        for branch, index in states:
            segments = self.branches[branch].segments
            segment = segments[index]
            if segment.kind is SegmentKind.RECURSIVE:
                self._close(out, (branch, index))
            elif index < len(segments) - 1 and segment.matches(name):
                self._close(out, (branch, index + 1))
        return frozenset(out)

    def accepts(self, states: frozenset[State], name: str) -> tuple[Segment | None, ...]:
        """Stream selectors of the branches that a file ``name`` completes.

        ``None`` in the result stands for the default data stream; a :class:`Segment`
        selects the alternate data streams whose names it matches. An empty tuple
        means the file is not selected.
        """
        found: list[Segment | None] = []
        for branch, index in states:
            segments = self.branches[branch].segments
            if index == len(segments) - 1 and segments[index].matches(name):
                stream = self.branches[branch].stream
                if stream not in found:
                    found.append(stream)
        return tuple(found)

    def literal_names(self, states: frozenset[State]) -> frozenset[str] | None:
        """The only child names any state can use, when all are literal; else None."""
        names: set[str] = set()
        for branch, index in states:
            segment = self.branches[branch].segments[index]
            if segment.kind is not SegmentKind.LITERAL:
                return None
            names.add(segment.text)
        return frozenset(names)

    def starts_recursive(self) -> bool:
        """Whether some branch reaches ``**`` before any literal segment.

        Such a pattern has to look at (nearly) every directory of the volume.
        """
        for branch in self.branches:
            for segment in branch.segments:
                if segment.kind is SegmentKind.LITERAL:
                    break
                if segment.kind is SegmentKind.RECURSIVE:
                    return True
        return False

    def match_path(self, path: str, stream: str = "") -> bool:
        """Whether ``path`` (relative, ``/``-separated) with ``stream`` is selected.

        ``stream`` is "" for the default data stream.
        """
        parts = [p for p in path.split("/") if p]
        if not parts:
            return False
        states = self.start()
        for part in parts[:-1]:
            states = self.step(states, part)
            if not states:
                return False
        return any(
            _stream_selected(selector, stream) for selector in self.accepts(states, parts[-1])
        )


def _stream_selected(selector: Segment | None, stream: str) -> bool:
    if selector is None:
        return stream == ""
    return stream != "" and selector.matches(stream)


def stream_selected(selector: Segment | None, stream: str) -> bool:
    """Whether a stream selector from :meth:`Glob.accepts` selects ``stream``."""
    return _stream_selected(selector, stream)


def compile_glob(pattern: str, *, case_sensitive: bool) -> Glob:
    """Compile ``pattern`` into a :class:`Glob`.

    Raises:
        GlobError: the pattern is malformed; ``position`` points at the problem when it
            can be located.
    """
    if not isinstance(pattern, str) or pattern.strip() == "":
        raise GlobError(str(pattern), None, "empty pattern")
    if "\x00" in pattern:
        raise GlobError(pattern, pattern.index("\x00"), "NUL character in pattern")
    branches = tuple(
        _compile_branch(text, pattern, case_sensitive) for text in expand_braces(pattern)
    )
    return Glob(pattern, case_sensitive, branches)

"""Glob grammar: pinned semantics plus a property test against an independent model."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selective_imager.selection.globs import GlobError, compile_glob, expand_braces


def m(pattern: str, path: str, stream: str = "", cs: bool = True) -> bool:
    return compile_glob(pattern, case_sensitive=cs).match_path(path, stream)


# ----------------------------------------------------------------------------- pinned


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("a/b.txt", "a/b.txt", True),
        ("/a/b.txt", "a/b.txt", True),  # one leading '/' is ignored
        ("a/*.txt", "a/b.txt", True),
        ("a/*.txt", "a/c/b.txt", False),  # '*' never crosses '/'
        ("*", "a/b", False),
        ("a/?", "a/b", True),
        ("a/?", "a/bc", False),
        ("a/[bc]", "a/c", True),
        ("a/[!bc]", "a/c", False),
        ("a/[!bc]", "a/d", True),
        ("a/[a-c]x", "a/bx", True),
        ("a/[]]", "a/]", True),  # ']' first in a class is a member
        ("a/[*]", "a/*", True),  # how to write a literal '*'
        ("a/[*]", "a/b", False),
        ("a/[?]", "a/?", True),
        ("a/[[]x", "a/[x", True),
        ("a/[{]x[}]", "a/{x}", True),
        ("a\\b", "a\\b", True),  # backslash is an ordinary character
        ("a/b,c", "a/b,c", True),  # a comma outside braces is literal
        ("a/{b,c}", "a/c", True),
        ("a/{b,c/d}", "a/c/d", True),  # alternatives may contain '/'
        ("a/{b,{c,d}e}", "a/de", True),  # nested braces
        ("a/x{,1,2}", "a/x", True),  # empty alternative
        ("a/x{,1,2}", "a/x3", False),
        ("**", "a", True),
        ("**", "a/b/c", True),
        ("a/**", "a/b", True),
        ("a/**", "a/b/c/d", True),
        ("a/**", "a", False),  # the directory itself is not a file below it
        ("a/**/b", "a/b", True),  # '**' matches zero directories
        ("a/**/b", "a/x/y/b", True),
        ("**/b", "b", True),
        ("**/b", "x/b", True),
        ("a/**/**/b", "a/b", True),
        ("*/.bash_history", "root/.bash_history", True),
        ("home/*/.*_history", "home/u/.zsh_history", True),
        ("a/*", "a/.hidden", True),  # no dot-file special case
        ("a", "a/b", False),  # a pattern ending at a directory selects nothing below
    ],
)
def test_pinned_paths(pattern: str, path: str, expected: bool) -> None:
    assert m(pattern, path) is expected


def test_case_folding() -> None:
    assert m("Windows/System32/config/SAM", "WINDOWS/system32/Config/sam", cs=False)
    assert not m("Windows/System32/config/SAM", "WINDOWS/system32/Config/sam", cs=True)
    assert m("Users/*/NTUSER.DAT.LOG*", "Users/bob/ntuser.dat.LOG1", cs=False)
    assert m("a/[A-C]x", "a/bX", cs=False)
    assert not m("a/[A-C]x", "a/bx", cs=True)


def test_streams() -> None:
    assert m("$Extend/$UsnJrnl:$J", "$Extend/$UsnJrnl", "$J")
    assert not m("$Extend/$UsnJrnl:$J", "$Extend/$UsnJrnl", "")  # only the named stream
    assert not m("$Extend/$UsnJrnl", "$Extend/$UsnJrnl", "$J")  # only the default stream
    assert m("Users/*/Downloads/*:Zone.Identifier", "Users/u/Downloads/x.exe", "Zone.Identifier")
    assert m("**/*:*", "a/b", "anything")
    assert not m("**/*:*", "a/b", "")
    assert m("$Extend/$UsnJrnl:{$J,$Max}", "$Extend/$UsnJrnl", "$Max")
    assert m("a/b[:]c", "a/b:c")  # a class makes ':' literal
    assert m("x:y/z", "x:y/z")  # ':' is only special in the last segment
    assert m("a/f:zone.identifier", "a/F", "Zone.Identifier", cs=False)


@pytest.mark.parametrize(
    ("pattern", "fragment", "position"),
    [
        ("a**b", "whole segment", None),
        ("a/b**", "whole segment", None),
        ("a/{b", "unclosed '{'", 2),
        ("a/b}", "'}' without '{'", 3),
        ("a/[bc", "unclosed character class", 2),
        ("a//b", "empty path segment", None),
        ("a/b/", "empty path segment", None),
        ("a/../b", "'..'", None),
        ("a/./b", "'.'", None),
        ("a:", "empty stream", None),
        ("a:b:c", "more than one ':'", None),
        ("a:**", "'**' is not allowed", None),
        ("", "empty pattern", None),
        ("/", "empty path", None),
        ("a/[z-a]", "reversed range", None),
    ],
)
def test_errors(pattern: str, fragment: str, position: int | None) -> None:
    with pytest.raises(GlobError) as info:
        compile_glob(pattern, case_sensitive=True)
    assert fragment in str(info.value)
    assert info.value.position == position
    assert isinstance(info.value, ValueError)


def test_brace_limit() -> None:
    with pytest.raises(GlobError, match="more than"):
        compile_glob("{a,b}" * 11, case_sensitive=True)


def test_expand_braces_keeps_classes() -> None:
    assert expand_braces("a{b,c}[{,]") == ["ab[{,]", "ac[{,]"]


def test_state_machine_api() -> None:
    glob = compile_glob("Users/*/AppData/**/x.db", case_sensitive=False)
    states = glob.start()
    assert glob.literal_names(states) == frozenset({"Users"})
    states = glob.step(states, "users")
    assert states and glob.literal_names(states) is None
    assert not glob.step(glob.start(), "Windows")  # pruned
    states = glob.step(glob.step(states, "bob"), "AppData")
    assert glob.accepts(states, "X.DB") == (None,)
    assert glob.accepts(states, "y.db") == ()
    assert glob.starts_recursive() is False
    assert compile_glob("*/**/x", case_sensitive=True).starts_recursive() is True


# ------------------------------------------------------------------ property test

# Structured patterns: each segment is '**' or a list of tokens; the reference regex
# is built from the structure, never from our glob parser.
_LIT = st.sampled_from(["a", "b", "A", "ab", ".", "x", "-", "\\"])
_TOKEN = st.one_of(
    _LIT.map(lambda s: ("lit", s)),
    st.just(("star", "*")),
    st.just(("one", "?")),
    st.sampled_from(["ab", "!a", "a-b", "!b-x", "]a"]).map(lambda s: ("cls", s)),
    st.lists(st.sampled_from(["a", "b", "ab", ""]), min_size=1, max_size=3).map(
        lambda alts: ("alt", alts)
    ),
)
_SEGMENT = st.one_of(st.just("**"), st.lists(_TOKEN, min_size=1, max_size=3))
_PATTERN = st.lists(_SEGMENT, min_size=1, max_size=4)


def _render(pattern: list) -> str:
    parts = []
    for seg in pattern:
        if seg == "**":
            parts.append("**")
            continue
        text = ""
        for kind, value in seg:
            if kind == "cls":
                text += f"[{value}]"
            elif kind == "alt":
                text += "{" + ",".join(value) + "}"
            else:
                text += value
        parts.append(text)
    return "/".join(parts)


def _ref_regex(pattern: list) -> str:
    out = ""
    for i, seg in enumerate(pattern):
        last = i == len(pattern) - 1
        if seg == "**":
            out += "(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*"
            continue
        piece = ""
        for kind, value in seg:
            if kind == "lit":
                piece += re.escape(value)
            elif kind == "star":
                piece += "[^/]*"
            elif kind == "one":
                piece += "[^/]"
            elif kind == "cls":
                neg = value.startswith("!")
                body = value[1:] if neg else value
                members = body if "-" in body else "".join(re.escape(c) for c in body)
                # A class matches within one segment: a negated one never matches "/".
                piece += "[" + ("^/" if neg else "") + members + "]"
            else:
                piece += "(?:" + "|".join(re.escape(v) for v in value) + ")"
        out += piece if last else piece + "/"
    return out


def _valid(pattern: list) -> bool:
    """Skip structures that render to something the grammar treats specially."""
    for seg in pattern:
        if seg == "**":
            continue
        if sum(1 for kind, _ in seg if kind == "star") > 1:
            return False  # '*' next to '*' (maybe via an empty alternative) is '**'
        if all(kind == "alt" and "" in vals for kind, vals in seg):
            return False  # may expand to an empty segment
    return True


_PATH = st.lists(
    st.text(alphabet="abAB.x-\\*", min_size=1, max_size=4).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=5,
).map("/".join)


@settings(max_examples=400, deadline=None)
@given(_PATTERN, st.lists(_PATH, min_size=1, max_size=10), st.booleans())
def test_glob_matches_reference(pattern: list, paths: list[str], cs: bool) -> None:
    if not _valid(pattern):
        return
    text = _render(pattern)
    try:
        glob = compile_glob(text, case_sensitive=cs)
    except GlobError as exc:
        # Only '.'/'..' segments made of literal pieces may be rejected.
        assert "'.'" in str(exc) or "'..'" in str(exc), text
        return
    ref = re.compile(_ref_regex(pattern), 0 if cs else re.IGNORECASE)
    for path in paths:
        assert glob.match_path(path) == (ref.fullmatch(path) is not None), (text, path)

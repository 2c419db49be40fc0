"""The matcher on in-memory trees: pinned behaviour and walk/scan vs a reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memfs import MemFS

from selective_imager.errors import FilesystemError
from selective_imager.selection.matcher import Match, MatchError, choose_strategy, match, match_all
from selective_imager.selection.rules import Rule, RuleSet, Target, parse_rule_text, resolve


def ruleset_of(*rules: Rule, requested: tuple[str, ...] | None = None) -> RuleSet:
    by_name = {r.name: r for r in rules}
    requested = requested or tuple(by_name)
    roots: dict[str, list[str]] = {}
    for top in requested:
        stack = [top]
        while stack:
            name = stack.pop()
            if top not in roots.setdefault(name, []):
                roots[name].append(top)
            stack.extend(by_name[name].include)
    return RuleSet(requested, by_name, {k: tuple(v) for k, v in roots.items()})


def rule(name: str, *targets: Target, include: tuple[str, ...] = ()) -> Rule:
    return Rule(name=name, title=name, targets=targets, include=include)


def selected(matches: list[Match] | tuple[Match, ...]) -> set[tuple[str, str]]:
    return {(m.entry.path, m.stream) for m in matches}


WIN_TREE = [
    "Windows/System32/config/SAM",
    "Windows/System32/config/SYSTEM",
    "Windows/System32/config/SYSTEM.LOG1",
    "Windows/System32/config/RegBack/SAM",
    "Windows/System32/winevt/Logs/Security.evtx",
    "Windows/System32/winevt/Logs/System.evtx",
    "Windows/Prefetch/CMD.EXE-1234.pf",
    "Users/alice/NTUSER.DAT",
    "Users/alice/ntuser.dat.LOG1",
    "Users/bob/NTUSER.DAT",
    "Users/bob/Downloads/setup.exe:Zone.Identifier",
    "$Extend/$UsnJrnl:$J",
    "$Extend/$UsnJrnl:$Max",
    "$MFT",
    "pagefile.sys",
]


def test_dedup_across_rules_and_labels() -> None:
    fs = MemFS.from_paths(WIN_TREE)
    hives = rule("hives", Target("System", ("Windows/System32/config/*",)))
    sam = rule("sam", Target("SAM only", ("**/SAM",)))
    top = rule("top", include=("hives", "sam"))
    rs = ruleset_of(top, hives, sam, requested=("top",))
    matches = {m.entry.path: m for m in match(fs, rs)}
    got = matches["Windows/System32/config/SAM"]
    assert got.rules == ("hives", "sam")
    assert got.targets == ("hives/System", "sam/SAM only")
    assert got.requested == ("top",)
    assert "Windows/System32/config/RegBack/SAM" in matches
    assert "Windows/System32/config/RegBack" not in matches  # directories never match
    assert len(list(match(fs, rs))) == len(matches)  # one Match per (file, stream)


def test_streams_are_separate_matches() -> None:
    fs = MemFS.from_paths(WIN_TREE)
    rs = ruleset_of(
        rule("usn", Target("J", ("$Extend/$UsnJrnl:{$J,$Max}", "$Extend/$UsnJrnl"))),
        rule("zone", Target("zi", ("Users/*/Downloads/*:Zone.Identifier",))),
    )
    got = selected(list(match(fs, rs)))
    assert got == {
        ("$Extend/$UsnJrnl", "$J"),
        ("$Extend/$UsnJrnl", "$Max"),
        ("$Extend/$UsnJrnl", ""),
        ("Users/bob/Downloads/setup.exe", "Zone.Identifier"),
    }


def test_case_rules() -> None:
    insensitive = MemFS.from_paths(WIN_TREE)
    sensitive = MemFS.from_paths(WIN_TREE, case_sensitive=True)
    target = Target("logs", ("Users/*/NTUSER.DAT.LOG*",))
    rs = ruleset_of(rule("r", target))
    assert selected(list(match(insensitive, rs))) == {("Users/alice/ntuser.dat.LOG1", "")}
    assert selected(list(match(sensitive, rs))) == set()
    forced = ruleset_of(rule("r", Target("logs", target.paths, case_sensitive=False)))
    assert selected(list(match(sensitive, forced))) == {("Users/alice/ntuser.dat.LOG1", "")}
    exact = ruleset_of(rule("r", Target("logs", target.paths, case_sensitive=True)))
    assert selected(list(match(insensitive, exact))) == set()


def test_size_limits_and_excludes() -> None:
    fs = MemFS(
        {"d/small.log": 10, "d/big.log": 5000, "d/skip.log": 20, "d/keep.txt": 30},
        streams={"d/small.log": {"ads": 100000}},
    )
    rs = ruleset_of(
        rule(
            "r",
            Target(
                "t",
                ("d/*", "d/*:*"),
                exclude=("d/skip.*", "d/keep.txt:*"),
                min_size=10,
                max_size=1000,
            ),
        )
    )
    assert selected(list(match(fs, rs))) == {("d/small.log", ""), ("d/keep.txt", "")}
    only_ads_excluded = ruleset_of(rule("r", Target("t", ("d/*:*", "d/*"), exclude=("d/*:ads",))))
    assert ("d/small.log", "ads") not in selected(list(match(fs, only_ads_excluded)))
    assert ("d/small.log", "") in selected(list(match(fs, only_ads_excluded)))


def test_directory_pattern_selects_nothing() -> None:
    fs = MemFS.from_paths(WIN_TREE)
    rs = ruleset_of(rule("r", Target("t", ("Windows/Prefetch",))))
    assert list(match(fs, rs)) == []


def test_pruning_and_lookup() -> None:
    fs = MemFS.from_paths([*WIN_TREE, *(f"Big/f{i}" for i in range(200))])
    rs = ruleset_of(rule("r", Target("t", ("Windows/System32/config/SAM",))))
    assert selected(list(match(fs, rs, strategy="walk"))) == {("Windows/System32/config/SAM", "")}
    assert fs.listings == 0  # literal paths are looked up, nothing is listed
    fs.listings = 0
    rs = ruleset_of(rule("r", Target("t", ("Windows/*/config/SAM",))))
    list(match(fs, rs, strategy="walk"))
    assert fs.listings == 1  # only 'Windows' is listed; 'Big' is never visited


def test_lookup_on_case_sensitive_fs_with_insensitive_target_lists() -> None:
    fs = MemFS.from_paths(["WINDOWS/x"], case_sensitive=True)
    rs = ruleset_of(rule("r", Target("t", ("windows/X",), case_sensitive=False)))
    assert selected(list(match(fs, rs, strategy="walk"))) == {("WINDOWS/x", "")}


def test_unreadable_directories_are_reported() -> None:
    fs = MemFS.from_paths(WIN_TREE, unreadable=["Users/bob"])
    rs = ruleset_of(rule("r", Target("t", ("Users/*/NTUSER.DAT",))))
    errors: list[MatchError] = []
    got = selected(list(match(fs, rs, strategy="walk", on_error=errors.append)))
    assert got == {("Users/alice/NTUSER.DAT", "")}
    assert [e.path for e in errors] == ["Users/bob"]
    assert isinstance(errors[0].error, FilesystemError)
    result = match_all(fs, rs, strategy="walk")
    assert [e.path for e in result.errors] == ["Users/bob"]


def test_unreadable_without_callback_logs(caplog: pytest.LogCaptureFixture) -> None:
    fs = MemFS.from_paths(WIN_TREE, unreadable=["Users"])
    rs = ruleset_of(rule("r", Target("t", ("Users/*/NTUSER.DAT",))))
    assert list(match(fs, rs, strategy="walk")) == []
    assert "cannot read" in caplog.text


def test_deleted_entries_skipped_by_default() -> None:
    fs = MemFS({"a/x": 1, "a/y": 1}, deleted=["a/y"])
    rs = ruleset_of(rule("r", Target("t", ("a/*",))))
    for strategy in ("walk", "scan"):
        assert selected(list(match(fs, rs, strategy=strategy))) == {("a/x", "")}
        got = selected(list(match(fs, rs, strategy=strategy, include_deleted=True)))
        assert got == {("a/x", ""), ("a/y", "")}


def test_strategy_choice() -> None:
    fs = MemFS.from_paths(WIN_TREE)
    anchored = ruleset_of(rule("r", Target("t", ("Windows/**/*.evtx",))))
    floating = ruleset_of(rule("r", Target("t", ("**/*.evtx",))))
    assert choose_strategy(fs, anchored) == "walk"
    assert choose_strategy(fs, floating) == "scan"
    assert match_all(fs, floating).strategy == "scan"
    with pytest.raises(ValueError, match="unknown strategy"):
        match(fs, floating, strategy="fast")


def test_library_triage_walk_equals_scan() -> None:
    rs = resolve(["triage"])
    fs = MemFS.from_paths(WIN_TREE)
    walk = selected(list(match(fs, rs, strategy="walk")))
    scan = selected(list(match(fs, rs, strategy="scan")))
    assert walk == scan
    assert ("Windows/System32/config/SAM", "") in walk
    assert ("$Extend/$UsnJrnl", "$J") in walk
    assert ("pagefile.sys", "") not in walk  # memory files are opt-in


def test_rule_text_end_to_end() -> None:
    r = parse_rule_text(
        "name: t\ntitle: T\ntargets:\n  - name: a\n    paths: ['Windows/Prefetch/*.pf']\n"
    )
    fs = MemFS.from_paths(WIN_TREE)
    assert selected(list(match(fs, ruleset_of(r)))) == {("Windows/Prefetch/CMD.EXE-1234.pf", "")}


# ------------------------------------------------------------------ property test

_DIRS = ["a", "A", "b", "ab", "Ba"]
_FILES = ["c.txt", "C.TXT", "f", "F1", "x.y", ".h"]
_STREAMS = ["Zone", "$J"]

_FILE_PATH = st.tuples(st.lists(st.sampled_from(_DIRS), max_size=3), st.sampled_from(_FILES)).map(
    lambda t: "/".join([*t[0], t[1]])
)
_TREE = st.dictionaries(
    _FILE_PATH,
    st.lists(st.sampled_from(_STREAMS), max_size=2, unique=True),
    min_size=1,
    max_size=25,
)

_TOKEN = st.one_of(
    st.sampled_from([*_DIRS, *_FILES, "."]).map(lambda s: ("lit", s)),
    st.just(("star", "*")),
    st.just(("one", "?")),
    st.sampled_from(["ab", "!a", "a-c", "!.", "A-Z"]).map(lambda s: ("cls", s)),
    st.lists(st.sampled_from(["a", "b", "c.txt", "f"]), min_size=2, max_size=3).map(
        lambda v: ("alt", v)
    ),
)
_SEGMENT = st.one_of(st.just("**"), st.lists(_TOKEN, min_size=1, max_size=2))
_PATTERN = st.tuples(
    st.lists(_SEGMENT, min_size=1, max_size=4), st.sampled_from([None, "*", "Zone", "$?"])
)


def _render(segments: list, stream: str | None) -> str:
    parts = []
    for seg in segments:
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
    return "/".join(parts) + (f":{stream}" if stream else "")


def _reference(
    segments: list, stream: str | None, cs: bool
) -> tuple[re.Pattern, re.Pattern | None]:
    """Regexes for the whole path and the stream name, built from the structure."""
    out = ""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
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
                piece += "[" + ("^" if neg else "") + members + "]"
            else:
                piece += "(?:" + "|".join(re.escape(v) for v in value) + ")"
        out += piece if last else piece + "/"
    flags = 0 if cs else re.IGNORECASE
    stream_re = None
    if stream is not None:
        stream_re = re.compile(re.escape(stream).replace(r"\*", ".*").replace(r"\?", "."), flags)
    return re.compile(out, flags), stream_re


def _skip(segments: list) -> bool:
    for seg in segments:
        if seg == "**":
            continue
        if sum(1 for kind, _ in seg if kind == "star") > 1:
            return True
        if _render([seg], None) in (".", ".."):
            return True
    return False


@settings(max_examples=250, deadline=None)
@given(_TREE, st.lists(_PATTERN, min_size=1, max_size=3), st.booleans())
def test_walk_and_scan_equal_reference(tree: dict, patterns: list, cs: bool) -> None:
    patterns = [p for p in patterns if not _skip(p[0])]
    if not patterns:
        return
    files = {path: 1 for path in tree}
    streams = {path: {name: 1 for name in names} for path, names in tree.items() if names}
    fs = MemFS(files, streams=streams, case_sensitive=cs)
    texts = tuple(_render(segs, stream) for segs, stream in patterns)
    rs = ruleset_of(rule("r", Target("t", texts)))

    expected: set[tuple[str, str]] = set()
    for entry in fs.all_files():
        for segs, stream in patterns:
            path_re, stream_re = _reference(segs, stream, cs)
            if path_re.fullmatch(entry.path) is None:
                continue
            if stream_re is None:
                expected.add((entry.path, ""))
            else:
                expected.update(
                    (entry.path, s.name) for s in entry.streams if stream_re.fullmatch(s.name)
                )

    walk = list(match(fs, rs, strategy="walk"))
    scan = list(match(fs, rs, strategy="scan"))
    assert selected(walk) == expected, texts
    assert selected(scan) == expected, texts
    assert len(walk) == len(selected(walk))  # no duplicates
    assert len(scan) == len(selected(scan))


def test_walk_and_scan_equal_fls_on_a_real_volume(unpacked) -> None:
    """walk == scan == what The Sleuth Kit lists (fls -r -p), filtered independently."""
    from selective_imager.discovery import open_disk
    from tests import oracles
    from tests.conftest import need_tool

    patterns = {
        "Windows/System32/config/*": r"windows/system32/config/[^/]+",
        "**/NTUSER.DAT": r"(.+/)?ntuser\.dat",
        "Users/*/AppData/**/*.lnk": r"users/[^/]+/appdata/(.+/)?[^/]+\.lnk",
    }
    rs = ruleset_of(rule("r", Target("t", tuple(patterns))))
    image = unpacked("gpt-ntfs.raw")
    paths, _, _ = oracles.fls_tree(image, 20480)
    listing = oracles.run(need_tool("fls"), "-r", "-p", "-o", "20480", str(image))
    dirs = {line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("d/d")}
    with open_disk(image) as disk:
        fs = disk.volume(3).filesystem
        walk = {m.entry.path for m in match(fs, rs, strategy="walk") if not m.stream}
        scan = {m.entry.path for m in match(fs, rs, strategy="scan") if not m.stream}
    expected = {
        p for p in paths - dirs
        if any(re.fullmatch(rx, p.lower()) for rx in patterns.values())
    }
    assert expected and walk == scan == expected

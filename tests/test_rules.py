"""Rule files: the library validates, and bad files fail with the right file:line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from selective_imager.selection.rules import (
    RuleValidationError,
    library_dir,
    load_library,
    load_rule_file,
    parse_rule_text,
    parse_size,
    resolve,
    validate_files,
)

if TYPE_CHECKING:
    from selective_imager.errors import RuleError

RULES = Path(__file__).resolve().parent.parent / "rules"

GOOD = """\
name: my-rule
title: My rule
targets:
  - name: logs
    paths: [var/log/*.log]
"""


def errors_of(text: str) -> list[RuleError]:
    with pytest.raises(RuleValidationError) as info:
        parse_rule_text(text, "x.yaml")
    return list(info.value.errors)


def test_library_files_all_validate() -> None:
    files = sorted(RULES.glob("*.yaml"))
    assert len(files) >= 20
    assert validate_files(files) == []
    library = load_library()
    assert set(library) == {f.stem for f in files}
    assert library_dir().resolve() == RULES.resolve()
    for rule in library.values():
        assert rule.references or rule.include, rule.name  # curated: documented sources
        assert len(rule.sha256) == 64


def test_triage_and_quick_sets() -> None:
    triage = resolve(["triage"])
    assert "windows-memory-files" not in triage.rules
    for needed in ("ntfs-metadata", "windows-registry", "windows-event-logs", "linux-logs"):
        assert needed in triage.rules
        assert triage.roots[needed] == ("triage",)
    quick = resolve(["registry-and-mft"])
    assert {"windows-registry", "windows-amcache", "ntfs-mft"} <= set(quick.rules)
    assert "windows-event-logs" not in quick.rules
    both = resolve(["triage", "windows-memory-files"])
    assert both.requested == ("triage", "windows-memory-files")


def test_good_rule_parses() -> None:
    rule = parse_rule_text(GOOD)
    assert rule.name == "my-rule"
    assert rule.targets[0].paths == ("var/log/*.log",)
    assert rule.version == 1


def test_unknown_key_reports_its_line() -> None:
    errs = errors_of(GOOD + "colour: blue\n")
    assert [(e.line, e.message) for e in errs] == [(6, "unknown key 'colour'")]
    assert str(errs[0]).startswith("x.yaml:6: unknown key 'colour' (hint: allowed:")
    text = GOOD.replace("    paths:", "    recursive: true\n    paths:")
    errs = errors_of(text)
    assert errs[0].line == 5 and "unknown target key 'recursive'" in errs[0].message


def test_bad_glob_reports_its_line() -> None:
    text = GOOD.replace("paths: [var/log/*.log]", "paths:\n      - var/log/*.log\n      - a**b")
    errs = errors_of(text)
    assert len(errs) == 1
    assert errs[0].line == 7 and "'**' must be a whole segment" in errs[0].message


def test_all_errors_of_a_file_are_collected() -> None:
    text = """\
name: Bad_Name
title: T
version: 0
targets:
  - name: a
    paths: []
    min_size: 10 parsecs
  - name: a
    paths: ['{x']
    max_size: 1KB
    min_size: 2KB
"""
    lines = sorted((e.line, e.message.split(":")[0]) for e in errors_of(text))
    assert [line for line, _ in lines] == [1, 3, 6, 7, 9, 11]


def test_structure_errors() -> None:
    assert "missing key 'name'" in errors_of("title: x\ntargets: []\n")[0].message
    assert "needs targets or include" in errors_of("name: a\ntitle: b\n")[0].message
    assert "must be a list" in errors_of("name: a\ntitle: b\ninclude: c\n")[0].message
    dup = errors_of("name: a\nname: b\ntitle: t\ninclude: [c]\n")
    assert dup[0].line == 2 and "duplicate key" in dup[0].message
    assert errors_of("name: a\n---\nname: b\n")[0].message == "more than one YAML document"
    assert errors_of("name: [a\n")[0].message.startswith("YAML syntax error")
    assert "includes itself" in errors_of("name: a\ntitle: t\ninclude: [a]\n")[0].message


def test_sizes() -> None:
    assert parse_size(10) == 10
    assert parse_size("1KiB") == 1024
    assert parse_size("1KB") == 1000
    assert parse_size("2 GiB") == 2 << 30
    for bad in ("1kb", "-1", "1.5GiB", True, "GB"):
        with pytest.raises(ValueError):
            parse_size(bad)


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def test_include_cycle_reports_line(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "name: cyc-a\ntitle: A\ninclude:\n  - cyc-b\n")
    b = write(tmp_path, "b.yaml", "name: cyc-b\ntitle: B\ninclude:\n  - linux-logs\n  - cyc-a\n")
    problems = validate_files([a, b])
    assert len(problems) == 1
    assert "include cycle: cyc-a -> cyc-b -> cyc-a" in problems[0].message
    assert (problems[0].file, problems[0].line) == (str(b), 5)
    with pytest.raises(RuleValidationError, match="include cycle"):
        resolve([str(a), str(b)])


def test_unknown_include_and_duplicates(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "name: inc\ntitle: A\ninclude: [linux-logs, nope]\n")
    problems = validate_files([a])
    assert [(p.line, p.message) for p in problems] == [(3, "unknown rule 'nope' in include")]
    b = write(tmp_path, "b.yaml", GOOD)
    c = write(tmp_path, "c.yaml", GOOD)
    problems = validate_files([b, c])
    assert len(problems) == 1 and "duplicate rule name 'my-rule'" in problems[0].message


def test_resolve_files_and_names(tmp_path: Path) -> None:
    mine = write(tmp_path, "mine.yaml", GOOD.replace("title", "include: [linux-ssh]\ntitle"))
    rs = resolve([str(mine), "windows-prefetch"])
    assert rs.requested == ("my-rule", "windows-prefetch")
    assert rs.roots["linux-ssh"] == ("my-rule",)
    assert {r.name for r in rs.leaves()} == {"my-rule", "linux-ssh", "windows-prefetch"}
    with pytest.raises(RuleValidationError, match="no rule named 'nonexistent'"):
        resolve(["nonexistent"])
    assert load_rule_file(mine).source_file == str(mine)

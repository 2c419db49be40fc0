"""The members written after the content: the journals, the exports and the rule files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager.collect.exports import render_exports
from selective_imager.collect.report import REPORT_NAME, report_bytes
from selective_imager.container.seal import RULES_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterable

    from selective_imager.container.zipwriter import ZipWriter
    from selective_imager.selection.rules import RuleSet

_CHUNK = 1 << 20


def store_journals(writer: ZipWriter, journals: Iterable[tuple[Path, str]]) -> None:
    """Copy each closed journal file into the member named beside it."""
    for path, member_name in journals:
        member = writer.begin(member_name, compress=True)
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                member.write(chunk)
        member.close()


def store_rule_files(writer: ZipWriter, ruleset: RuleSet) -> list[dict[str, Any]]:
    """Store each rule file once (named by its SHA-256); returns the ``rules.used`` records."""
    used = []
    for rule in sorted(ruleset.rules.values(), key=lambda r: r.name):
        entry: dict[str, Any] = {"name": rule.name, "sha256": rule.sha256 or None}
        source = Path(rule.source_file) if rule.source_file else None
        if source is not None and source.is_file():
            member_name = f"{RULES_PREFIX}{rule.sha256[:12] or rule.name}-{source.name}"
            if member_name not in writer:
                writer.add_bytes(member_name, source.read_bytes(), compress=True)
            entry["file"] = str(source)
            entry["member"] = member_name
        used.append(entry)
    return used


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The records of a closed JSON-lines journal."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def store_exports(writer: ZipWriter, records: list[dict[str, Any]], copied: str) -> None:
    """Write CopyLog.csv, SkipLog.csv and bodyfile.txt from the manifest records."""
    for name, data in render_exports(records, copied).items():
        writer.add_bytes(name, data, compress=True)


def store_report(
    writer: ZipWriter, acquisition: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    """Write report.html (the seal, written after it, is described, not quoted)."""
    writer.add_bytes(REPORT_NAME, report_bytes(acquisition, records, None), compress=True)

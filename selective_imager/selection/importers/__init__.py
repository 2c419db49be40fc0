"""Converters from community rule formats (KAPE targets, ForensicArtifacts) to our rules.

:func:`import_paths` writes one rule file per converted item and returns an
:class:`ImportReport`; :func:`rules_from_community_file` is what
:func:`selective_imager.selection.rules.load_file_rules` uses to accept these files in place of
our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import yaml

from selective_imager.errors import RuleError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from selective_imager.selection.rules import Rule

__all__ = [
    "Conversion",
    "ConversionStatus",
    "ImportReport",
    "import_paths",
    "kebab",
    "rules_from_community_file",
]


class ConversionStatus(StrEnum):
    """Outcome of converting one source item."""

    FULL = "full"
    PARTIAL = "partial"
    NOT_APPLICABLE = "not_applicable"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Conversion:
    """One source item (a KAPE target file or a ForensicArtifacts definition).

    Attributes:
        source: the file it came from.
        item: the KAPE file name or the FA definition name.
        name: the rule name it was converted to ("" when no rule was produced).
        status: full, partial, not applicable or failed.
        reasons: why it is not full (and notes for full conversions).
        document: the rule as a mapping ready for YAML, or None.
        compound: the item only includes other items (a KAPE compound target or an
            FA artifact group).
        output: the file written by :func:`import_paths`, when any.
    """

    source: str
    item: str
    name: str
    status: ConversionStatus
    reasons: tuple[str, ...] = ()
    document: dict[str, Any] | None = None
    compound: bool = False
    output: str = ""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_paths` did, one :class:`Conversion` per source item."""

    conversions: tuple[Conversion, ...] = field(default_factory=tuple)

    def by_status(self, status: ConversionStatus) -> tuple[Conversion, ...]:
        """The conversions with ``status``."""
        return tuple(c for c in self.conversions if c.status is status)

    def counts(self) -> dict[str, int]:
        """Number of items per status value."""
        counts = {s.value: 0 for s in ConversionStatus}
        for conversion in self.conversions:
            counts[conversion.status.value] += 1
        return counts


_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def kebab(text: str, prefix: str = "") -> str:
    """A deterministic rule name: ``WindowsTimeline`` -> ``windows-timeline``.

    Names longer than 64 characters are cut and suffixed with a short hash so they stay
    unique.
    """
    import hashlib

    spaced = _CAMEL_2.sub(r"\1-\2", _CAMEL_1.sub(r"\1-\2", text))
    name = _NON_ALNUM.sub("-", spaced.lower()).strip("-") or "unnamed"
    name = f"{prefix}{name}" if prefix else name
    if len(name) > 64:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        name = name[:55].rstrip("-") + "-" + digest
    return name


def escape_literal(text: str) -> str:
    """Write a literal name so our glob grammar takes it as is (``{`` -> ``[{]``)."""
    return "".join(f"[{c}]" if c in "[]{}" else c for c in text)


def rules_from_community_file(
    path: Path, text: str, sha256: str, kind: str, fragment: str = ""
) -> list[Rule]:
    """Convert a KAPE or ForensicArtifacts file into validated rules, in memory.

    Raises:
        RuleError: the file cannot be converted, or ``fragment`` names no definition.
    """
    from selective_imager.selection.rules import RuleValidationError, rule_from_mapping

    if kind == "kape":
        from selective_imager.selection.importers.kape import convert_kape_text

        conversions = [convert_kape_text(text, path)]
    else:
        from selective_imager.selection.importers.forensicartifacts import convert_fa_file

        conversions = convert_fa_file(path, text)
        if fragment:
            conversions = [c for c in conversions if c.item == fragment]
            if not conversions:
                raise RuleError(str(path), None, f"no artifact definition named {fragment!r}")
    rules: list[Rule] = []
    problems: list[RuleError] = []
    for conversion in conversions:
        if conversion.document is None:
            if fragment or kind == "kape":
                reason = "; ".join(conversion.reasons) or "nothing to collect"
                problems.append(
                    RuleError(str(path), None, f"{conversion.item}: cannot convert: {reason}")
                )
            continue
        try:
            rules.append(rule_from_mapping(conversion.document, str(path), sha256))
        except RuleValidationError as exc:
            problems.extend(exc.errors)
    if problems:
        raise RuleValidationError(problems)
    if not rules:
        raise RuleError(str(path), None, "no definition in this file selects files")
    return rules


def _write(document: dict[str, Any], out_dir: Path, source: str, item: str) -> Path:
    out = out_dir / f"{document['name']}.yaml"
    header = f"# Converted by selective_imager from {source} ({item}).\n"
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    out.write_text(header + body, encoding="utf-8")
    return out


def import_paths(paths: Iterable[Path], out_dir: Path) -> ImportReport:
    """Convert KAPE ``.tkape`` files and ForensicArtifacts YAML files into our rules.

    Directories are searched recursively for ``*.tkape``, ``*.yaml`` and ``*.yml``.
    Each converted item is written to ``out_dir/<rule-name>.yaml``; items that do not
    convert are only reported.
    """
    from selective_imager.selection.importers.forensicartifacts import convert_fa_file
    from selective_imager.selection.importers.kape import KapeNames, convert_kape_text

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p for p in path.rglob("*") if p.suffix.lower() in (".tkape", ".yaml", ".yml")
                )
            )
        else:
            files.append(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    kape_names = KapeNames([f for f in files if f.suffix.lower() == ".tkape"])
    conversions: list[Conversion] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8-sig")
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            conversions.append(
                Conversion(
                    str(file), file.name, "", ConversionStatus.FAILED, (f"unreadable: {exc}",)
                )
            )
            continue
        if len(docs) == 1 and isinstance(docs[0], dict) and "Targets" in docs[0]:
            items = [convert_kape_text(text, file, kape_names)]
        elif docs and all(isinstance(d, dict) and "sources" in d for d in docs):
            items = convert_fa_file(file, text)
        else:
            conversions.append(
                Conversion(
                    str(file),
                    file.name,
                    "",
                    ConversionStatus.NOT_APPLICABLE,
                    ("neither a KAPE target nor a ForensicArtifacts file",),
                )
            )
            continue
        conversions.extend(items)
    conversions = _drop_dangling_includes(conversions)
    written: list[Conversion] = []
    for item in conversions:
        if item.document is not None:
            out = _write(item.document, out_dir, item.source, item.item)
            item = replace(item, output=str(out))
        written.append(item)
    return ImportReport(tuple(written))


def _drop_dangling_includes(conversions: list[Conversion]) -> list[Conversion]:
    """Remove includes of items that produced no rule, marking the includer partial.

    Repeats until stable, since a compound left empty produces no rule either.
    """
    while True:
        produced = {c.name for c in conversions if c.document is not None}
        changed = False
        result: list[Conversion] = []
        for item in conversions:
            doc = item.document
            missing = [n for n in (doc or {}).get("include", []) if n not in produced]
            if doc is None or not missing:
                result.append(item)
                continue
            changed = True
            doc = dict(doc)
            doc["include"] = [n for n in doc["include"] if n not in missing]
            if not doc["include"]:
                del doc["include"]
            reasons = (*item.reasons, "included rule(s) not converted: " + ", ".join(missing))
            if "include" not in doc and "targets" not in doc:
                result.append(
                    replace(item, status=ConversionStatus.FAILED, reasons=reasons, document=None)
                )
            else:
                result.append(
                    replace(item, status=ConversionStatus.PARTIAL, reasons=reasons, document=doc)
                )
        conversions = result
        if not changed:
            return conversions

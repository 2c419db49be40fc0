"""``rules list|show|validate|import``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from selective_imager.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    RulePathOption,
    _errors,
    _escape,
    _rule_specs,
    _Unrecognised,
    app,
    err,
    out,
)

# -- rules ------------------------------------------------------------------
rules_app = typer.Typer(
    help="List, show, validate and import rules.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(rules_app, name="rules")


@rules_app.command("list")
def rules_list(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The rules of the installed library: name, title, target count."""
    from selective_imager.selection.rules import load_library

    with _errors():
        library = load_library()
    rows: list[dict[str, Any]] = [
        {
            "name": r.name,
            "title": r.title,
            "targets": len(r.targets),
            "include": list(r.include),
            "os": list(r.os),
        }
        for r in sorted(library.values(), key=lambda r: r.name)
    ]
    if json_output:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Rule library")
    for col in ("name", "title", "targets", "includes"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["name"], _escape(row["title"]), str(row["targets"]), ", ".join(row["include"])
        )
    out.print(table)


@rules_app.command("search")
def rules_search(
    word: Annotated[str, typer.Argument(help="Word to look for in names, titles and paths.")],
    rule_path: RulePathOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find rules by word across the library and the rule paths."""
    from selective_imager.selection.rulepath import RulePath
    from selective_imager.selection.rules import library_dir, load_library

    with _errors():
        _, folders = _rule_specs([], rule_path)
        needle = word.lower()
        rows: list[dict[str, Any]] = [
            {"name": r.name, "kind": "library", "title": r.title, "file": r.source_file}
            for r in sorted(load_library().values(), key=lambda r: r.name)
            if needle in r.name.lower() or needle in r.title.lower()
        ]
        rows += [
            {"name": e.name, "kind": e.kind, "title": e.title, "file": e.spec}
            for e in RulePath(folders).search(word)
            if Path(e.spec.split("#", 1)[0]).parent != library_dir()
        ]
    if json_output:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Rules matching {word!r}")
    for col in ("name", "kind", "title", "file"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            _escape(row["name"]), row["kind"], _escape(row["title"]), _escape(row["file"])
        )
    out.print(table)
    if not rows:
        err.print(f"no rule matches {word!r}")
        raise typer.Exit(EXIT_PARTIAL)


@rules_app.command("show")
def rules_show(
    name: Annotated[str, typer.Argument(help="Rule name or rule file.")],
    rule_path: RulePathOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A rule with its includes expanded: every target and path it selects."""
    from selective_imager.selection.rules import resolve

    with _errors():
        specs, folders = _rule_specs([name], rule_path)
        ruleset = resolve(specs, rule_paths=folders)
    data: dict[str, Any] = {
        "requested": list(ruleset.requested),
        "rules": [
            {
                "name": rule.name,
                "title": rule.title,
                "description": rule.description,
                "version": rule.version,
                "author": rule.author,
                "references": list(rule.references),
                "include": list(rule.include),
                "file": rule.source_file,
                "sha256": rule.sha256,
                "targets": [
                    {
                        "name": t.name,
                        "paths": list(t.paths),
                        "exclude": list(t.exclude),
                        "min_size": t.min_size,
                        "max_size": t.max_size,
                        "case_sensitive": t.case_sensitive,
                    }
                    for t in rule.targets
                ],
            }
            for rule in sorted(ruleset.rules.values(), key=lambda r: r.name)
        ],
    }
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for rule in data["rules"]:
        out.print(f"[bold]{_escape(rule['name'])}[/] — {_escape(rule['title'])}")
        if rule["include"]:
            out.print(f"  includes: {', '.join(rule['include'])}")
        for target in rule["targets"]:
            limits = []
            if target["min_size"] is not None:
                limits.append(f"min {target['min_size']}")
            if target["max_size"] is not None:
                limits.append(f"max {target['max_size']}")
            out.print(
                f"  [cyan]{_escape(target['name'])}[/]"
                + (f" ({', '.join(limits)})" if limits else "")
            )
            for path in target["paths"]:
                out.print(f"    {_escape(path)}")
            for path in target["exclude"]:
                out.print(f"    [dim]exclude {_escape(path)}[/]")


@rules_app.command("validate")
def rules_validate(
    files: Annotated[
        list[Path], typer.Argument(help="Rule files (ours, .tkape, ForensicArtifacts).")
    ],
) -> None:
    """Check rule files strictly; print every problem as file:line: message."""
    from selective_imager.selection.rules import validate_files

    with _errors():
        problems = validate_files(files)
    for problem in problems:
        err.print(_escape(str(problem)))
    if problems:
        raise typer.Exit(EXIT_USAGE)
    out.print(f"{len(files)} file(s) valid")


@rules_app.command("import")
def rules_import(
    paths: Annotated[
        list[Path], typer.Argument(help=".tkape files, ForensicArtifacts YAML, or folders.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the converted rules.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert KAPE targets and ForensicArtifacts definitions into our rule format."""
    from selective_imager.selection.importers import ConversionStatus, import_paths

    with _errors():
        for path in paths:
            if not path.exists():
                raise _Unrecognised(f"{path}: no such file or folder")
        output.mkdir(parents=True, exist_ok=True)
        report = import_paths(paths, output)
    if json_output:
        print(
            json.dumps(
                {
                    "counts": report.counts(),
                    "items": [
                        {
                            "source": c.source,
                            "item": c.item,
                            "rule": c.name,
                            "status": c.status.value,
                            "reasons": list(c.reasons),
                            "output": c.output,
                        }
                        for c in report.conversions
                    ],
                },
                indent=2,
            )
        )
    else:
        for conv in report.conversions:
            if conv.status is not ConversionStatus.FULL:
                reasons = "; ".join(conv.reasons) or "-"
                out.print(f"{conv.status.value:<15} {_escape(conv.item)}: {_escape(reasons)}")
        counts = report.counts()
        out.print(", ".join(f"{k}: {v}" for k, v in counts.items()) + f" -> {output}")
    failed = report.by_status(ConversionStatus.FAILED)
    raise typer.Exit(EXIT_PARTIAL if failed else EXIT_OK)

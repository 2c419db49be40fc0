"""The command line: the only module that imports typer and rich.

Exit codes: 0 success, 1 partial (some items or volumes failed), 2 usage or input
error, 3 fatal. Errors print one line, never a traceback, never a secret.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from selective_imager import __version__
from selective_imager.credentials import (
    PASSWORD,
    RECOVERY_PASSWORD,
    STARTUP_KEY,
    Credential,
    PromptingCredentials,
    credential_from_env,
    credential_from_file,
)
from selective_imager.errors import (
    ContainerError,
    PathNotFoundError,
    RuleError,
    SelectiveImagerError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from selective_imager.discovery import Disk, OpenVolume
    from selective_imager.models import FileEntry

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_FATAL = 3

app = typer.Typer(
    name="selective-imager",
    help="Forensic selective and logical imaging: see what is on a disk, browse it, "
    "and collect rule-selected artifacts into a sealed evidence container.",
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
)
# Piped output is not cut to 80 columns: tables stay readable in logs.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"[bold red]error:[/] {_escape(message)}")
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into one line and an exit code."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except ContainerError as exc:
        _fail(str(exc), EXIT_FATAL)
    except RuleError as exc:
        _fail(str(exc), EXIT_USAGE)
    except SelectiveImagerError as exc:
        _fail(str(exc), EXIT_USAGE)


# -- credentials ------------------------------------------------------------
PasswordPrompt = Annotated[
    bool, typer.Option("--password", help="Prompt (hidden) for a BitLocker password.")
]
RecoveryPrompt = Annotated[
    bool,
    typer.Option("--recovery-password", help="Prompt (hidden) for a BitLocker recovery password."),
]
PasswordFile = Annotated[
    list[Path] | None,
    typer.Option("--password-file", help="File whose first line is a BitLocker password."),
]
RecoveryFile = Annotated[
    list[Path] | None,
    typer.Option("--recovery-password-file", help="File holding a 48-digit recovery password."),
]
PasswordEnv = Annotated[
    list[str] | None,
    typer.Option("--password-env", help="Environment variable holding a BitLocker password."),
]
RecoveryEnv = Annotated[
    list[str] | None,
    typer.Option(
        "--recovery-password-env", help="Environment variable holding a recovery password."
    ),
]
BekFile = Annotated[
    list[Path] | None, typer.Option("--bek", help="BitLocker startup key file (.BEK).")
]


@dataclass(frozen=True)
class _CredentialOptions:
    """The credential options every command that opens a source takes."""

    password: bool = False
    recovery_password: bool = False
    password_file: list[Path] | None = None
    recovery_password_file: list[Path] | None = None
    password_env: list[str] | None = None
    recovery_password_env: list[str] | None = None
    bek: list[Path] | None = None

    def build(self) -> PromptingCredentials:
        """Read files and variables now; prompts wait until a locked volume is met."""
        static: list[Credential] = []
        static += [credential_from_file(PASSWORD, p) for p in self.password_file or []]
        static += [
            credential_from_file(RECOVERY_PASSWORD, p) for p in self.recovery_password_file or []
        ]
        static += [credential_from_env(PASSWORD, v) for v in self.password_env or []]
        static += [
            credential_from_env(RECOVERY_PASSWORD, v) for v in self.recovery_password_env or []
        ]
        static += [credential_from_file(STARTUP_KEY, p) for p in self.bek or []]
        ask = tuple(
            kind
            for kind, on in ((PASSWORD, self.password), (RECOVERY_PASSWORD, self.recovery_password))
            if on
        )
        return PromptingCredentials(static=static, ask=ask, prompt=_prompt_secret if ask else None)


_NO_CREDENTIALS = _CredentialOptions()

_CREDENTIAL_PARAMETERS = tuple(
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("password", PasswordPrompt, False),
        ("recovery_password", RecoveryPrompt, False),
        ("password_file", PasswordFile, None),
        ("recovery_password_file", RecoveryFile, None),
        ("password_env", PasswordEnv, None),
        ("recovery_password_env", RecoveryEnv, None),
        ("bek", BekFile, None),
    )
)


def _with_credentials(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command the credential options, handed over as one ``credentials`` value.

    typer has no option groups; this declares the seven options once instead of in
    every command that opens a source.
    """
    signature = inspect.signature(func, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name != "credentials"]

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> None:
        options = {p.name: kwargs.pop(p.name) for p in _CREDENTIAL_PARAMETERS}
        func(*args, credentials=_CredentialOptions(**options), **kwargs)

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own, *_CREDENTIAL_PARAMETERS]
    )
    return command


def _prompt_secret(kind: str, message: str) -> str:
    if not sys.stdin.isatty():
        # Hidden prompts need a terminal; read one line from a pipe instead.
        err.print(f"{message} (reading from standard input)")
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt(message, hide_input=True, default="", show_default=False))


# -- version ----------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        print(f"selective-imager {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """Forensic selective and logical imaging."""


# -- info -------------------------------------------------------------------
def _open(source: str, creds: PromptingCredentials) -> Disk:
    from selective_imager.discovery import open_disk

    disk = open_disk(source, creds)
    if not disk.recognised():
        disk.close()
        raise _Unrecognised(
            f"{source}: no partition table, BitLocker volume or supported file system "
            "recognised (not a disk image?)"
        )
    return disk


class _Unrecognised(SelectiveImagerError):
    pass


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@app.command()
@_with_credentials
def info(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01) or device.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Show the source, its partitions, encrypted volumes and file systems."""
    with _errors():
        creds = credentials.build()
        with _open(source, creds) as disk:
            data = disk.as_dict()
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    _print_info(data)


def _print_info(data: dict[str, Any]) -> None:
    src = data["source"]
    out.print(f"[bold]Source[/] {_escape(src['path'])}")
    out.print(
        f"  format {src['format']}, {src['size']} bytes ({_human(src['size'])}), "
        f"sector size {src['sector_size']}, {len(src['segments'])} segment(s)"
    )
    for key, value in sorted(src["details"].items()):
        out.print(f"  {_escape(key)}: {_escape(str(value))}")
    table_info = data["partition_table"]
    if table_info:
        out.print(
            f"  partition table: {table_info['scheme']}"
            + (f", disk GUID {table_info['disk_guid']}" if table_info["disk_guid"] else "")
        )
        for problem in table_info["problems"]:
            out.print(f"  [yellow]problem:[/] {_escape(problem)}")
    else:
        out.print("  partition table: none (the source is one volume)")
    table = Table(show_lines=False)
    for col in (
        "#",
        "offset",
        "size",
        "type",
        "name",
        "encryption",
        "file system",
        "label",
        "serial",
    ):
        table.add_column(col)
    for vol in data["volumes"]:
        enc = vol["encryption"]
        fs = vol["filesystem"]
        enc_text = "none"
        if enc:
            enc_text = f"{enc['state']}" + (f" ({enc['method']})" if enc["method"] else "")
        table.add_row(
            str(vol["index"]),
            str(vol["offset"]),
            _human(vol["size"]),
            _escape(vol["type_name"] or vol["type"] or "-"),
            _escape(vol["name"] or ""),
            enc_text,
            fs["type"] if fs else "-",
            _escape(fs["label"]) if fs else "",
            fs["serial"] if fs else "",
        )
    out.print(table)
    for vol in data["volumes"]:
        enc = vol["encryption"]
        if enc:
            out.print(
                f"volume {vol['index']}: BitLocker {enc['state']}, {enc['method'] or '?'}, "
                f"protectors: {', '.join(enc['protectors']) or '-'}, GUID {enc['volume_guid']}, "
                f"created {enc['created']}, description {_escape(enc['description'] or '-')}"
                + (f", unlocked with {enc['unlocked_with']}" if enc["unlocked_with"] else "")
                + (f", decrypted with {enc['decryptor']}" if enc.get("decryptor") else "")
            )
            if enc.get("decryptor_note"):
                out.print(f"  [yellow]decryptor:[/] {_escape(enc['decryptor_note'])}")
            if enc["fallback"]:
                out.print(f"  [yellow]fallback:[/] {_escape(enc['fallback'])}")
        if vol["error"]:
            out.print(f"[red]volume {vol['index']}: {_escape(vol['error'])}[/]")
        if vol["note"]:
            out.print(f"[yellow]volume {vol['index']}: {_escape(vol['note'])}[/]")


# -- ls ---------------------------------------------------------------------
def _pick_volume(disk: Disk, index: int | None) -> OpenVolume:
    if index is not None:
        try:
            vol = disk.volume(index)
        except KeyError:
            have = ", ".join(str(v.report.volume.index) for v in disk.volumes)
            raise _Unrecognised(f"no volume {index} (volumes: {have})") from None
        if vol.filesystem is None:
            raise _Unrecognised(f"volume {index}: {vol.report.error or 'no file system'}")
        return vol
    usable = [v for v in disk.volumes if v.filesystem is not None]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        reasons = "; ".join(f"{v.report.volume.index}: {v.report.error}" for v in disk.volumes)
        raise _Unrecognised(f"no volume with a readable file system ({reasons})")
    choices = ", ".join(
        f"{v.report.volume.index} ({v.report.filesystem.type if v.report.filesystem else '?'})"
        for v in usable
    )
    raise _Unrecognised(
        f"several volumes have file systems: choose one with --volume N ({choices})"
    )


@app.command()
@_with_credentials
def ls(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01) or device.")],
    path: Annotated[str, typer.Argument(help="Directory or file, '/'-separated.")] = "",
    volume: Annotated[
        int | None, typer.Option("--volume", "-v", help="Volume number from info.")
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="List the whole tree.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """List a directory (or the tree) of a volume with entry numbers, sizes, times and ADS."""
    code = EXIT_OK
    with _errors():
        creds = credentials.build()
        with _open(source, creds) as disk:
            vol = _pick_volume(disk, volume)
            fs = vol.filesystem
            assert fs is not None
            try:
                start = fs.lookup(path.strip("/"))
            except PathNotFoundError:
                raise _Unrecognised(
                    f"{path}: not found on volume {vol.report.volume.index}"
                ) from None
            entries: Iterator[FileEntry]
            walker = _ReportingWalk(fs)
            if not start.is_directory:
                entries = iter([start])
            elif recursive:
                entries = walker.walk(start)
            else:
                entries = fs.iterdir(start)
            for entry in entries:
                if json_output:
                    print(json.dumps(entry.as_dict(), ensure_ascii=False))
                else:
                    _print_entry(entry)
            code = EXIT_PARTIAL if walker.errors else EXIT_OK
    raise typer.Exit(code)


class _ReportingWalk:
    """Depth-first walk that reports unreadable directories and goes on."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.errors = 0

    def walk(self, start: FileEntry) -> Iterator[FileEntry]:
        stack = [start]
        while stack:
            directory = stack.pop()
            try:
                children = list(self.fs.iterdir(directory))
            except SelectiveImagerError as exc:
                self.errors += 1
                err.print(
                    f"[red]cannot list {_escape(directory.path or '/')}: {_escape(str(exc))}[/]"
                )
                continue
            yield from children
            stack.extend(reversed([c for c in children if c.is_directory]))


def _print_entry(entry: FileEntry) -> None:
    kind = "d" if entry.is_directory else "r"
    ref = f"{entry.entry}-{entry.sequence}" if entry.sequence is not None else f"{entry.entry}"
    times = entry.si or entry.times
    modified = times.modified.isoformat() if times and times.modified else "-"
    deleted = "" if entry.allocated else " (deleted)"
    print(f"{kind} {ref:>12} {entry.size:>12} {modified:<28} {entry.path}{deleted}")
    for stream in entry.streams:
        print(f"{kind} {ref:>12} {stream.size:>12} {'':<28} {entry.path}:{stream.name}")


# -- collect ----------------------------------------------------------------
class _RichProgress:
    """ProgressSink on a rich progress bar (stderr)."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.quiet = quiet
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[items]} items {task.fields[current]}"),
            console=err,
            transient=False,
            disable=quiet,
        )
        self._task: Any = None
        self._items = 0

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total_bytes: int | None, total_items: int | None) -> None:
        self._items = 0
        self._task = self._progress.add_task(name, total=total_bytes, items=0, current="")

    def item(self, label: str) -> None:
        if self._task is not None:
            short = label if len(label) <= 60 else "…" + label[-59:]
            self._progress.update(self._task, current=_escape(short))

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        if self._task is not None:
            self._items += items
            self._progress.update(self._task, advance=nbytes, items=self._items)

    def done(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, current="")
            self._task = None


def _redacted_argv(creds: PromptingCredentials) -> tuple[str, ...]:
    secrets = {c.secret for c in creds.static if c.kind != STARTUP_KEY}
    return tuple("<redacted>" if arg in secrets else arg for arg in sys.argv)


def _parse_size(text: str) -> int:
    from selective_imager.selection.rules import parse_size

    try:
        return parse_size(text)
    except (ValueError, RuleError) as exc:
        raise typer.BadParameter(f"{text!r}: {exc}") from None


@app.command()
@_with_credentials
def collect(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01) or device.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Container file to write (.zip).")
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option("--rule", "-r", help="Rule name or rule file (repeatable). Default: triage."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be collected; copy nothing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    volume: Annotated[
        list[int] | None, typer.Option("--volume", "-v", help="Only these volumes (repeatable).")
    ] = None,
    hash_algorithms: Annotated[
        str, typer.Option("--hash", help="Per-file hashes, e.g. md5,sha1,sha256.")
    ] = "md5,sha1,sha256",
    disk_hash: Annotated[
        str, typer.Option("--disk-hash", help="Whole-disk hashes, or 'none'.")
    ] = "md5,sha1,sha256",
    disk_hash_mode: Annotated[
        str, typer.Option("--disk-hash-mode", help="'after' the artifacts, or 'concurrent'.")
    ] = "after",
    piece_size: Annotated[
        str,
        typer.Option(
            "--piece-size",
            help="Also a SHA-256 per piece of the disk, e.g. 1GiB (0: off; a 4th pass).",
        ),
    ] = "0",
    store: Annotated[bool, typer.Option("--store", help="Do not compress members.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
    strategy: Annotated[
        str, typer.Option("--strategy", help="Matcher: auto, walk or scan.")
    ] = "auto",
    case: Annotated[str, typer.Option("--case", help="Case number.")] = "",
    evidence: Annotated[str, typer.Option("--evidence", help="Evidence number.")] = "",
    examiner: Annotated[str, typer.Option("--examiner", help="Examiner name.")] = "",
    notes: Annotated[str, typer.Option("--notes", help="Free-text notes.")] = "",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Collect rule-selected artifacts into a sealed evidence container (ZIP64)."""
    from selective_imager.collect.collector import CollectOptions
    from selective_imager.collect.collector import collect as run_collect
    from selective_imager.collect.hashing import parse_algorithms
    from selective_imager.selection.rules import resolve

    code = EXIT_OK
    with _errors():
        try:
            hashes = parse_algorithms(hash_algorithms)
            disk_hashes = parse_algorithms(disk_hash)
        except ValueError as exc:
            raise _Unrecognised(str(exc)) from None
        if disk_hash_mode not in ("after", "concurrent"):
            raise _Unrecognised(f"--disk-hash-mode {disk_hash_mode!r}: use after or concurrent")
        if strategy not in ("auto", "walk", "scan"):
            raise _Unrecognised(f"--strategy {strategy!r}: use auto, walk or scan")
        pieces = _parse_size(piece_size)
        if not dry_run and output is None:
            raise _Unrecognised("--output is required (or use --dry-run)")
        if output is not None and output.exists() and not force and not dry_run:
            raise _Unrecognised(f"{output}: exists (use --force to overwrite)")
        ruleset = resolve(rule or ["triage"])
        creds = credentials.build()
        with _open(source, creds) as disk:
            if dry_run:
                code = _dry_run(disk, ruleset, volume, strategy, json_output)
            else:
                assert output is not None
                options = CollectOptions(
                    hashes=hashes or ("sha256",),
                    disk_hash=disk_hashes,
                    disk_hash_mode=disk_hash_mode,
                    piece_size=pieces,
                    overwrite=force,
                    compress=False if store else None,
                    case=case,
                    evidence=evidence,
                    examiner=examiner,
                    notes=notes,
                    command_line=_redacted_argv(creds),
                    strategy=strategy,
                )
                interrupted = False
                with _RichProgress(quiet or json_output) as progress:
                    try:
                        report = run_collect(disk, ruleset, output, options, progress, volume)
                    except KeyboardInterrupt:
                        interrupted = True
                if interrupted:
                    err.print(f"interrupted: {output} was finished as incomplete")
                    raise typer.Exit(EXIT_PARTIAL)
                code = report.exit_code
                _print_collect_summary(report, json_output)
    raise typer.Exit(code)


def _print_collect_summary(report: Any, json_output: bool) -> None:
    disk = report.disk_hash
    summary = {
        "output": str(report.output),
        "status": report.status,
        "counts": report.counts,
        "bytes_collected": report.bytes_collected,
        "container_sha256": report.container_sha256,
        "disk_hash": None
        if disk is None
        else {
            "complete": disk.complete,
            "digests": disk.digests.as_dict() if disk.digests else None,
            "bytes_hashed": disk.bytes_hashed,
            "unreadable": [list(r) for r in disk.unreadable],
        },
        "volume_errors": report.volume_errors,
    }
    if json_output:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title="Collection summary", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("container", _escape(str(report.output)))
    table.add_row("status", report.status)
    for outcome, count in report.counts.items():
        table.add_row(outcome, str(count))
    table.add_row("bytes collected", f"{report.bytes_collected} ({_human(report.bytes_collected)})")
    if disk is not None:
        if disk.digests:
            for alg, value in disk.digests.as_dict().items():
                table.add_row(f"disk {alg}", value)
        else:
            table.add_row("disk hash", f"incomplete: {disk.bytes_hashed} of {disk.size} bytes")
        if disk.unreadable:
            table.add_row("unreadable", ", ".join(f"{o}+{n}" for o, n in disk.unreadable))
    for problem in report.volume_errors:
        table.add_row("[red]volume error[/]", _escape(problem))
    out.print(table)
    out.print(f"container sha256 {report.container_sha256}")


def _dry_run(
    disk: Disk, ruleset: Any, volumes: list[int] | None, strategy: str, json_output: bool
) -> int:
    from selective_imager.selection.matcher import match_all

    code = EXIT_OK
    rows: list[dict[str, Any]] = []
    for vol in disk.volumes:
        if volumes is not None and vol.report.volume.index not in volumes:
            continue
        fs = vol.filesystem
        if fs is None:
            if not json_output:
                err.print(
                    f"[yellow]volume {vol.report.volume.index} skipped: {_escape(vol.report.error)}[/]"
                )
            continue
        result = match_all(fs, ruleset, strategy=strategy)
        for problem in result.errors:
            code = EXIT_PARTIAL
            err.print(
                f"[red]volume {vol.report.volume.index}: cannot read {_escape(problem.path or '/')}: {_escape(str(problem.error))}[/]"
            )
        for m in result.matches:
            rows.append(
                {
                    "volume": vol.report.volume.index,
                    "path": m.entry.path,
                    "stream": m.stream,
                    "size": m.size,
                    "rules": list(m.rules),
                    "targets": list(m.targets),
                    "entry": m.entry.entry,
                }
            )
    if json_output:
        print(
            json.dumps(
                {"items": rows, "count": len(rows), "bytes": sum(r["size"] for r in rows)},
                indent=2,
                ensure_ascii=False,
            )
        )
        return code
    table = Table(title="Would collect")
    for col in ("vol", "path", "size", "rules"):
        table.add_column(col)
    for row in rows:
        name = row["path"] + (f":{row['stream']}" if row["stream"] else "")
        table.add_row(str(row["volume"]), _escape(name), str(row["size"]), ", ".join(row["rules"]))
    out.print(table)
    out.print(f"{len(rows)} items, {_human(sum(r['size'] for r in rows))}")
    return code


# -- hash -------------------------------------------------------------------
@app.command("hash")
def hash_command(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01) or device.")],
    algorithms: Annotated[
        str, typer.Option("--disk-hash", "--hash", help="Algorithms.")
    ] = "md5,sha1,sha256",
    piece_size: Annotated[
        str,
        typer.Option(
            "--piece-size",
            help="Also a SHA-256 per piece, e.g. 1GiB (0: off; a 4th pass).",
        ),
    ] = "0",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Hash the whole source (raw bytes), optionally with piecewise SHA-256."""
    import threading

    from selective_imager.collect.hashing import hash_source, parse_algorithms
    from selective_imager.sources import open_source

    with _errors():
        try:
            algs = parse_algorithms(algorithms)
        except ValueError as exc:
            raise _Unrecognised(str(exc)) from None
        if not algs:
            raise _Unrecognised("--disk-hash none: nothing to do")
        pieces = _parse_size(piece_size)
        with open_source(source) as src, _RichProgress(quiet or json_output) as progress:
            progress.phase("disk-hash", src.info.size, None)
            last = [0]

            def update(total: int) -> None:
                progress.advance(total - last[0])
                last[0] = total

            cancel = threading.Event()
            try:
                result = hash_source(
                    src.stream,
                    algs,
                    piece_size=pieces,
                    sector_size=src.info.sector_size,
                    progress=update,
                    cancel=cancel,
                )
            except KeyboardInterrupt:
                cancel.set()
                raise
            progress.done()
            stored = {
                k.split(".", 1)[1]: v
                for k, v in src.info.details.items()
                if k.startswith("stored_hash.")
            }
    data: dict[str, Any] = {
        "source": source,
        "size": result.size,
        "complete": result.complete,
        "bytes_hashed": result.bytes_hashed,
        "digests": result.digests.as_dict() if result.digests else None,
        "pieces": [
            {"index": p.index, "offset": p.offset, "length": p.length, "sha256": p.sha256}
            for p in result.pieces
        ],
        "unreadable": [list(r) for r in result.unreadable],
        "stored_hashes": stored,
        "seconds": round(result.seconds, 3),
    }
    mismatch = [
        alg
        for alg, value in stored.items()
        if result.digests and result.digests.get(alg) and result.digests.get(alg) != value
    ]
    data["stored_hash_mismatch"] = mismatch
    if json_output:
        print(json.dumps(data, indent=2))
    else:
        for alg, value in (data["digests"] or {}).items():
            print(f"{alg}  {value}  {source}")
        for alg, value in stored.items():
            state = "MISMATCH" if alg in mismatch else "matches"
            print(f"stored {alg} {value}: {state}")
        if result.unreadable:
            print(
                "unreadable ranges (zero-filled): "
                + ", ".join(f"{o}+{n}" for o, n in result.unreadable)
            )
    raise typer.Exit(
        EXIT_PARTIAL if mismatch or result.unreadable or not result.complete else EXIT_OK
    )


# -- verify / extract / show -------------------------------------------------
@app.command()
@_with_credentials
def verify(
    container: Annotated[Path, typer.Argument(help="Evidence container (.zip).")],
    source: Annotated[
        str | None,
        typer.Option("--source", help="Also re-read every item and re-hash the disk from it."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Re-hash every member against the manifest and the seal (and the source)."""
    from selective_imager.container.reader import open_container
    from selective_imager.container.reader import verify as verify_container

    differences: list[dict[str, Any]] = []
    with _errors():
        report = verify_container(container)
        differences = [
            {
                "what": d.member,
                "kind": d.kind,
                "expected": d.expected,
                "found": d.found,
                "detail": d.detail,
            }
            for d in report.differences
        ]
        source_checked = None
        if source is not None:
            from selective_imager.collect.reverify import reverify_disk, reverify_items

            with open_container(container) as box:
                records = [
                    json.loads(line)
                    for line in box.read("manifest.jsonl").decode("utf-8").splitlines()
                    if line
                ]
                acquisition = box.acquisition() or {}
            creds = credentials.build()
            with _open(source, creds) as disk:
                source_checked, item_diffs = reverify_items(disk, records)
                disk_diffs = reverify_disk(disk, acquisition)
            differences += [
                {
                    "what": d.what,
                    "kind": f"source-{d.kind}",
                    "expected": d.expected,
                    "found": d.found,
                    "detail": d.detail,
                }
                for d in (*item_diffs, *disk_diffs)
            ]
    ok = not differences
    data = {
        "container": str(container),
        "ok": ok,
        "seal_present": report.seal_present,
        "members_checked": report.members_checked,
        "items_checked": report.items_checked,
        "source_items_checked": source_checked,
        "differences": differences,
    }
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for d in differences:
            out.print(
                f"[red]{d['kind']}[/] {_escape(d['what'])}"
                + (
                    f" expected {d['expected']} found {d['found']}"
                    if d["expected"] or d["found"]
                    else ""
                )
                + (f" ({_escape(d['detail'])})" if d["detail"] else "")
            )
        verdict = "[green]OK[/]" if ok else f"[red]FAILED[/] ({len(differences)} difference(s))"
        extra = (
            f", {source_checked} items re-read from the source"
            if source_checked is not None
            else ""
        )
        out.print(
            f"{verdict}: {report.members_checked} members, {report.items_checked} items checked{extra}"
        )
    raise typer.Exit(EXIT_OK if ok else EXIT_PARTIAL)


@app.command()
def extract(
    container: Annotated[Path, typer.Argument(help="Evidence container (.zip).")],
    dest: Annotated[Path, typer.Argument(help="Destination folder.")],
    path: Annotated[
        str | None, typer.Option("--path", help="Only items whose original path matches this glob.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Restore collected files under their original names, with modification times."""
    from selective_imager.container.reader import extract as extract_container

    with _errors():
        report = extract_container(container, dest, pattern=path)
    if json_output:
        print(
            json.dumps(
                {
                    "dest": report.dest,
                    "files": report.files,
                    "bytes": report.bytes,
                    "refused": [list(r) for r in report.refused],
                    "failed": [list(f) for f in report.failed],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for name, reason in report.refused:
            err.print(f"[yellow]refused[/] {_escape(name)}: {_escape(reason)}")
        for name, error in report.failed:
            err.print(f"[red]failed[/] {_escape(name)}: {_escape(error)}")
        out.print(
            f"{report.files} files, {_human(report.bytes)} restored under {_escape(report.dest)}"
        )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PARTIAL)


@app.command()
def show(
    container: Annotated[Path, typer.Argument(help="Evidence container (.zip).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Summarise a container: source, volumes, counts, hashes, seal status."""
    from selective_imager.container.reader import summary

    with _errors():
        data = summary(container)
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    acq = data.get("acquisition") or {}
    out.print(
        f"[bold]Container[/] {_escape(str(data.get('path')))} ({_human(int(data.get('container_bytes') or 0))})"
    )
    if acq:
        src = acq.get("source") or {}
        out.print(
            f"  tool {acq.get('tool')} {acq.get('version')}, {acq.get('started')} → {acq.get('ended')}, status {acq.get('status')}"
        )
        out.print(
            f"  source {_escape(str(src.get('path')))} ({src.get('format')}, {src.get('size')} bytes)"
        )
        case = acq.get("case") or {}
        if any(case.values()):
            out.print("  case " + ", ".join(f"{k}={_escape(str(v))}" for k, v in case.items() if v))
        for vol in acq.get("volumes", []):
            fs = vol.get("filesystem") or {}
            enc = vol.get("encryption") or {}
            out.print(
                f"  volume {vol.get('index')}: {fs.get('type', '-')} {_escape(fs.get('label', '') or '')}"
                + (f", BitLocker {enc.get('state')}" if enc else "")
                + (f" [red]{_escape(vol['error'])}[/]" if vol.get("error") else "")
            )
        disk = acq.get("disk_hash") or {}
        for alg, value in (disk.get("digests") or {}).items():
            out.print(f"  disk {alg} {value}")
        if disk and not disk.get("complete"):
            out.print(
                f"  [yellow]disk hash incomplete: {disk.get('bytes_hashed')} of {disk.get('size')} bytes[/]"
            )
    for key, value in sorted((data.get("counts") or {}).items()):
        out.print(f"  {key}: {value}")
    seal = data.get("seal") or {}
    out.print(f"  seal: {json.dumps(seal, default=str)}")


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


@rules_app.command("show")
def rules_show(
    name: Annotated[str, typer.Argument(help="Rule name or rule file.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A rule with its includes expanded: every target and path it selects."""
    from selective_imager.selection.rules import resolve

    with _errors():
        ruleset = resolve([name])
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


def main() -> None:
    """Console-script entry point.

    Usage errors are printed by us, not by click: click quotes unexpected arguments,
    and a secret typed after ``--password`` must not be echoed back.
    """
    # typer vendors click; its UsageError is the base of the public BadParameter.
    usage_error: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
    )
    try:
        rc = app(standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except usage_error as exc:
        message = str(getattr(exc, "format_message", exc.__str__)())
        if "extra argument" in message:
            message = (
                "unexpected extra argument(s) (not shown). Secrets are never taken on the "
                "command line: use --password to be prompted, --password-file or --password-env"
            )
        err.print(f"[bold red]error:[/] {_escape(message)}")
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            err.print(f"see '{ctx.command_path} --help'")
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)

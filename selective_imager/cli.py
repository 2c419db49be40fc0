"""The command line: the only module that imports typer and rich.

Exit codes: 0 success, 1 partial (some items or volumes failed), 2 usage or input
error, 3 fatal. Errors print one line, never a traceback, never a secret.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
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
    from collections.abc import Iterator

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


def _credentials(
    password: bool,
    recovery_password: bool,
    password_file: list[Path] | None,
    recovery_password_file: list[Path] | None,
    password_env: list[str] | None,
    recovery_password_env: list[str] | None,
    bek: list[Path] | None,
) -> PromptingCredentials:
    static: list[Credential] = []
    for path in password_file or []:
        static.append(credential_from_file(PASSWORD, path))
    for path in recovery_password_file or []:
        static.append(credential_from_file(RECOVERY_PASSWORD, path))
    for var in password_env or []:
        static.append(credential_from_env(PASSWORD, var))
    for var in recovery_password_env or []:
        static.append(credential_from_env(RECOVERY_PASSWORD, var))
    for path in bek or []:
        static.append(credential_from_file(STARTUP_KEY, path))
    ask = tuple(k for k, on in ((PASSWORD, password), (RECOVERY_PASSWORD, recovery_password)) if on)
    return PromptingCredentials(static=static, ask=ask, prompt=_prompt_secret if ask else None)


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
def info(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01) or device.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    password: PasswordPrompt = False,
    recovery_password: RecoveryPrompt = False,
    password_file: PasswordFile = None,
    recovery_password_file: RecoveryFile = None,
    password_env: PasswordEnv = None,
    recovery_password_env: RecoveryEnv = None,
    bek: BekFile = None,
) -> None:
    """Show the source, its partitions, encrypted volumes and file systems."""
    with _errors():
        creds = _credentials(
            password,
            recovery_password,
            password_file,
            recovery_password_file,
            password_env,
            recovery_password_env,
            bek,
        )
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
            )
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
    password: PasswordPrompt = False,
    recovery_password: RecoveryPrompt = False,
    password_file: PasswordFile = None,
    recovery_password_file: RecoveryFile = None,
    password_env: PasswordEnv = None,
    recovery_password_env: RecoveryEnv = None,
    bek: BekFile = None,
) -> None:
    """List a directory (or the tree) of a volume with entry numbers, sizes, times and ADS."""
    code = EXIT_OK
    with _errors():
        creds = _credentials(
            password,
            recovery_password,
            password_file,
            recovery_password_file,
            password_env,
            recovery_password_env,
            bek,
        )
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

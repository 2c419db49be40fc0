"""What every command shares: the typer app, the consoles, one-line errors, opening a disk."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from selective_imager import __version__
from selective_imager.errors import (
    ContainerError,
    RuleError,
    SelectiveImagerError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selective_imager.credentials import (
        PromptingCredentials,
    )
    from selective_imager.discovery import Disk, OpenVolume



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

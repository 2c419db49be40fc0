"""What every command shares: the typer app, the consoles, one-line errors, opening a disk."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
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
    from selective_imager.sources import SourceOptions
    from selective_imager.volumes.base import DiscoveryOptions



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
    except ImportError as exc:
        # Format modules import their binding (pyvmdk, pyfsapfs...) on first use.
        _fail(
            f"a library this needs is not installed: the Python module {exc.name or exc!s} "
            "(scripts/setup.sh installs it)",
            EXIT_FATAL,
        )



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
# --parent: the parent files of a differencing virtual disk (VHD/VHDX/QCOW/VMDK).
ParentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--parent",
        help="Parent file of a differencing virtual disk (repeatable); by default each "
        "parent is looked for next to its child, by the name the child records.",
    ),
]


def _source_options(parents: list[str] | None, read_timeout: float | None) -> SourceOptions:
    from selective_imager.sources import SourceOptions

    return SourceOptions(parents=tuple(parents or ()), read_timeout=read_timeout)


def _open(
    source: str,
    creds: PromptingCredentials,
    options: DiscoveryOptions | None = None,
    parents: list[str] | None = None,
    read_timeout: float | None = None,
) -> Disk:
    from selective_imager.discovery import open_disk

    disk = open_disk(
        source, creds, options=options, source_options=_source_options(parents, read_timeout)
    )
    if not disk.recognised():
        # A recognised but damaged layer (an APFS container) says why itself.
        why = [v.report.error for v in disk.volumes if v.report.error]
        disk.close()
        if why and not why[0].startswith("no supported file system"):
            raise _Unrecognised(f"{source}: {why[0]}")
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
def _pick_volume(disk: Disk, index: int | str | None) -> OpenVolume:
    if index is not None:
        try:
            vol = disk.volume(index)
        except KeyError:
            have = ", ".join(
                v.report.label if "/" in v.report.label else str(v.report.volume.index)
                for v in disk.volumes
            )
            raise _Unrecognised(f"no volume {index} (volumes: {have})") from None
        if vol.filesystem is None:
            raise _Unrecognised(f"volume {index}: {vol.report.error or 'no file system'}")
        return vol
    # Shadow-copy stores are picked with --vss, not by default.
    usable = [v for v in disk.volumes if v.filesystem is not None and v.report.snapshot is None]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        reasons = "; ".join(f"{v.report.volume.index}: {v.report.error}" for v in disk.volumes)
        raise _Unrecognised(f"no volume with a readable file system ({reasons})")
    choices = ", ".join(
        f"{v.report.label if '/' in v.report.label else v.report.volume.index} "
        f"({v.report.filesystem.type if v.report.filesystem else '?'})"
        for v in usable
    )
    raise _Unrecognised(
        f"several volumes have file systems: choose one with --volume N ({choices})"
    )


# -- shadow copies ------------------------------------------------------------
def _vss_options(spec: str | None, since: str | None = None) -> DiscoveryOptions:
    """``--vss`` (``all``, ``latest``, ``1,3``) and ``--vss-since DATE`` as discovery options."""
    from selective_imager.volumes.base import DiscoveryOptions

    if spec is None and since is None:
        return DiscoveryOptions()
    select: tuple[int, ...] = ()
    latest = False
    text = (spec or "all").strip().lower()
    if text == "latest":
        latest = True
    elif text != "all":
        try:
            select = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
        except ValueError:
            raise _Unrecognised(
                f"--vss {spec!r}: use all, latest, or store indexes such as 1,3"
            ) from None
        if not select or min(select) < 1:
            raise _Unrecognised(f"--vss {spec!r}: store indexes start at 1")
    since_ns = _parse_since(since) if since is not None else None
    return DiscoveryOptions(vss=True, vss_select=select, vss_latest=latest, vss_since_ns=since_ns)


def _parse_since(text: str) -> int:
    """An ISO date or date-time (UTC when no zone is given) as ns since 1970."""
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _Unrecognised(
            f"--vss-since {text!r}: use an ISO date such as 2013-12-03 or 2013-12-03T06:36:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _pick_store(disk: Disk, live: OpenVolume, index: int) -> OpenVolume:
    """Store ``index`` of the live volume ``live`` (opened with ``--vss``)."""
    for vol in disk.volumes:
        snap = vol.report.snapshot
        if (
            snap is not None
            and snap.get("type") == "vss"
            and snap["index"] == index
            and vol.report.locator[: len(live.report.locator) - 1] == live.report.locator[:-1]
        ):
            if vol.filesystem is None:
                raise _Unrecognised(f"{vol.report.label}: {vol.report.error or 'no file system'}")
            return vol
    listing = live.report.details.get("shadow_copies")
    if not listing:
        raise _Unrecognised(f"volume {live.report.volume.index}: has no shadow copies")
    for store in listing:
        if store["index"] == index and store.get("error"):
            raise _Unrecognised(f"volume {live.report.volume.index}: {store['error']}")
    have = ", ".join(str(s["index"]) for s in listing)
    raise _Unrecognised(
        f"volume {live.report.volume.index}: no shadow copy {index} (stores: {have})"
    )

RulePathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rule-path",
        help="Folder of rule files (ours, KAPE .tkape, ForensicArtifacts) whose rules "
        "--rule may name (repeatable; also $SELECTIVE_IMAGER_RULE_PATH).",
    ),
]


def _rule_specs(rules: list[str], rule_paths: list[Path] | None) -> tuple[list[str], list[Path]]:
    """Split ``--rule`` values into names/files and folders; add the env rule paths.

    A folder given as ``--rule`` is a rule path: it names no rule itself.
    """
    from selective_imager.selection.rulepath import rule_paths_from_env

    specs = [r for r in rules if not Path(r).is_dir()]
    folders = [Path(r) for r in rules if Path(r).is_dir()]
    for folder in rule_paths or []:
        if not folder.is_dir():
            raise _Unrecognised(f"--rule-path {folder}: not a folder")
    return specs, [*folders, *(rule_paths or []), *rule_paths_from_env()]

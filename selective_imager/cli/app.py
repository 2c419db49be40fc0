"""The console-script entry point: every command module registers on the one app.

Importing this module imports each command module, whose decorators register the
commands; the modules import their heavy libraries only inside the commands.
"""

from __future__ import annotations

import re
import sys

import typer

from selective_imager.cli import collect_cmds, container_cmds, image_cmds, inspect_cmds, rules_cmds
from selective_imager.cli.common import EXIT_OK, EXIT_USAGE, _escape, app, err
from selective_imager.cli.rules_cmds import rules_app

__all__ = [
    "app", "collect_cmds", "container_cmds", "image_cmds", "inspect_cmds", "main", "rules_app",
    "rules_cmds",
]  # fmt: skip


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
        rc = app(args=bare_vss_as_all(sys.argv[1:]), standalone_mode=False)
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


_VSS_SPEC = re.compile(r"(?i)^(all|latest|\d+(,\d+)*)$")


def bare_vss_as_all(args: list[str]) -> list[str]:
    """``collect --vss`` with no value means every store (``--vss all``).

    The vendored click has no options with an optional value, so a bare ``--vss``
    (last, or followed by another option or the source path) gets ``all`` here.
    """
    if "collect" not in args:
        return args
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg == "--vss" and (nxt is None or not _VSS_SPEC.match(nxt)):
            out.append("all")
    return out


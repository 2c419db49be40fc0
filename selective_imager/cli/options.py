"""Credential options: declared once, handed to each command as one value; secrets never on the command line."""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from selective_imager.credentials import (
    APFS_PASSWORD,
    APFS_RECOVERY_KEY,
    FVEK,
    LUKS_KEY_FILE,
    LUKS_PASSPHRASE,
    PASSWORD,
    RECOVERY_PASSWORD,
    STARTUP_KEY,
    Credential,
    PromptingCredentials,
    credential_from_env,
    credential_from_file,
)

if TYPE_CHECKING:
    from collections.abc import Callable


from selective_imager.cli.common import (
    err,
)

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
ApfsPasswordPrompt = Annotated[
    bool, typer.Option("--apfs-password", help="Prompt (hidden) for an APFS volume password.")
]
ApfsPasswordFile = Annotated[
    list[Path] | None,
    typer.Option("--apfs-password-file", help="File whose first line is an APFS volume password."),
]
ApfsPasswordEnv = Annotated[
    list[str] | None,
    typer.Option("--apfs-password-env", help="Environment variable holding an APFS password."),
]
ApfsRecoveryFile = Annotated[
    list[Path] | None,
    typer.Option(
        "--apfs-recovery-key-file", help="File holding an APFS (FileVault) recovery key."
    ),
]
FvekFile = Annotated[
    list[Path] | None,
    typer.Option(
        "--fvek-file",
        help="File whose first line is a raw BitLocker full-volume key in hex (e.g. "
        "recovered from a memory image).",
    ),
]

LuksPrompt = Annotated[
    bool,
    typer.Option(
        "--luks-passphrase",
        help="Prompt (hidden) for a LUKS passphrase when a locked LUKS volume is met.",
    ),
]
LuksPassphraseFile = Annotated[
    list[Path] | None,
    typer.Option("--luks-passphrase-file", help="File whose first line is a LUKS passphrase."),
]
LuksPassphraseEnv = Annotated[
    list[str] | None,
    typer.Option("--luks-passphrase-env", help="Environment variable holding a LUKS passphrase."),
]
LuksKeyFile = Annotated[
    list[Path] | None,
    typer.Option("--luks-key-file", help="LUKS key file (its whole content is the key)."),
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
    luks_passphrase: bool = False
    luks_passphrase_file: list[Path] | None = None
    luks_passphrase_env: list[str] | None = None
    luks_key_file: list[Path] | None = None
    apfs_password: bool = False
    apfs_password_file: list[Path] | None = None
    apfs_password_env: list[str] | None = None
    apfs_recovery_key_file: list[Path] | None = None
    fvek_file: list[Path] | None = None

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
        static += [
            credential_from_file(LUKS_PASSPHRASE, p) for p in self.luks_passphrase_file or []
        ]
        static += [credential_from_env(LUKS_PASSPHRASE, v) for v in self.luks_passphrase_env or []]
        static += [credential_from_file(LUKS_KEY_FILE, p) for p in self.luks_key_file or []]
        static += [credential_from_file(APFS_PASSWORD, p) for p in self.apfs_password_file or []]
        static += [credential_from_env(APFS_PASSWORD, v) for v in self.apfs_password_env or []]
        static += [
            credential_from_file(APFS_RECOVERY_KEY, p) for p in self.apfs_recovery_key_file or []
        ]
        static += [credential_from_file(FVEK, p) for p in self.fvek_file or []]
        ask = tuple(
            kind
            for kind, on in (
                (PASSWORD, self.password),
                (RECOVERY_PASSWORD, self.recovery_password),
                (LUKS_PASSPHRASE, self.luks_passphrase),
                (APFS_PASSWORD, self.apfs_password),
            )
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
        ("luks_passphrase", LuksPrompt, False),
        ("luks_passphrase_file", LuksPassphraseFile, None),
        ("luks_passphrase_env", LuksPassphraseEnv, None),
        ("luks_key_file", LuksKeyFile, None),
        ("apfs_password", ApfsPasswordPrompt, False),
        ("apfs_password_file", ApfsPasswordFile, None),
        ("apfs_password_env", ApfsPasswordEnv, None),
        ("apfs_recovery_key_file", ApfsRecoveryFile, None),
        ("fvek_file", FvekFile, None),
    )
)


def _with_credentials(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command the credential options, handed over as one ``credentials`` value.

    typer has no option groups; this declares the credential options once instead of in
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

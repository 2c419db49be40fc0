"""Credentials for encrypted volumes, kept out of every log, report and repr.

A :class:`Credential` never shows its secret in ``repr()``/``str()``; only its kind
and where it came from (``file /path``, ``env VAR``, ``prompt``). The library asks a
:class:`CredentialProvider` for credentials when it meets a locked volume (the dfvfs
mediator idea): the CLI implements one that reads files, environment variables and
hidden prompts; tests pass a :class:`StaticCredentials`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from selective_imager.errors import CredentialsError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from selective_imager.models import VolumeInfo

PASSWORD = "password"
RECOVERY_PASSWORD = "recovery_password"
STARTUP_KEY = "startup_key"
# Other volume kinds: a raw BitLocker full-volume key (hex), LUKS passphrases and key
# files, APFS volume passwords and recovery keys.
FVEK = "fvek"
LUKS_PASSPHRASE = "luks_passphrase"
LUKS_KEY_FILE = "luks_key_file"
APFS_PASSWORD = "apfs_password"
APFS_RECOVERY_KEY = "apfs_recovery_key"
KINDS = (
    PASSWORD,
    RECOVERY_PASSWORD,
    STARTUP_KEY,
    FVEK,
    LUKS_PASSPHRASE,
    LUKS_KEY_FILE,
    APFS_PASSWORD,
    APFS_RECOVERY_KEY,
)


@dataclass(frozen=True, slots=True)
class Credential:
    """One secret: a password, a recovery password, or a startup key file path.

    For ``startup_key`` the secret is the path of the ``.BEK`` file (not itself secret,
    but the file is). ``origin`` says where it came from, for reports.
    """

    kind: str
    secret: str = field(repr=False, compare=False)
    origin: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown credential kind {self.kind!r}")

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, origin={self.origin!r}, secret=<redacted>)"

    __str__ = __repr__

    def describe(self) -> str:
        """``password from env VAR`` style description without the secret."""
        return f"{self.kind.replace('_', ' ')} from {self.origin}" if self.origin else self.kind


class CredentialProvider(Protocol):
    """Gives credentials to try on an encrypted volume."""

    def credentials_for(self, volume: VolumeInfo | None) -> Sequence[Credential]:
        """Credentials to try on ``volume`` (None for an unpartitioned source)."""
        ...


@dataclass(slots=True)
class StaticCredentials:
    """A fixed list of credentials, tried on every encrypted volume."""

    items: list[Credential] = field(default_factory=list)

    def credentials_for(self, volume: VolumeInfo | None) -> Sequence[Credential]:
        """Every credential, for every volume."""
        return list(self.items)


@dataclass(slots=True)
class PromptingCredentials:
    """Static credentials plus secrets asked for interactively, once, when first needed.

    ``prompt`` is called with the kind and a message and returns the secret (the CLI
    passes a hidden-input prompt). Nothing is asked until a locked volume is met.
    """

    static: list[Credential] = field(default_factory=list)
    ask: tuple[str, ...] = ()
    prompt: Callable[[str, str], str] | None = None
    _asked: list[Credential] | None = None

    def credentials_for(self, volume: VolumeInfo | None) -> Sequence[Credential]:
        """Static credentials, then the prompted ones (asked on first use)."""
        if self._asked is None:
            self._asked = []
            if self.prompt is not None:
                where = f"partition {volume.index}" if volume is not None else "the source"
                for kind in self.ask:
                    label = kind.replace("_", " ")
                    secret = self.prompt(kind, f"BitLocker {label} for {where}")
                    if secret:
                        self._asked.append(Credential(kind, secret, "prompt"))
        return [*self.static, *self._asked]


def credential_from_file(kind: str, path: str | os.PathLike[str]) -> Credential:
    """Read a password or recovery password from the first line of a file.

    A startup key is referenced by path and checked to exist.

    Raises:
        CredentialsError: the file cannot be read or is empty.
    """
    p = Path(path)
    if kind == STARTUP_KEY:
        if not p.is_file():
            raise CredentialsError(f"startup key file {p}: not found")
        return Credential(kind, str(p), f"file {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CredentialsError(f"{kind.replace('_', ' ')} file {p}: cannot read") from exc
    except UnicodeDecodeError as exc:
        raise CredentialsError(f"{kind.replace('_', ' ')} file {p}: not UTF-8 text") from exc
    # Only the line terminator is stripped: spaces can belong to a password.
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise CredentialsError(f"{kind.replace('_', ' ')} file {p}: empty")
    return Credential(kind, secret, f"file {p}")


def credential_from_env(kind: str, variable: str) -> Credential:
    """Read a password or recovery password from an environment variable.

    Raises:
        CredentialsError: the variable is unset or empty.
    """
    secret = os.environ.get(variable, "")
    if not secret:
        raise CredentialsError(f"environment variable {variable} is unset or empty")
    return Credential(kind, secret, f"env {variable}")

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
# What ``credentials_for(volume)`` without kinds prompts for.
_PROMPTED_BY_DEFAULT = (PASSWORD, RECOVERY_PASSWORD)
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

    def credentials_for(
        self, volume: VolumeInfo | None, kinds: Sequence[str] | None = None
    ) -> Sequence[Credential]:
        """Credentials to try on ``volume`` (None for an unpartitioned source).

        ``kinds`` names the credential kinds the volume can use (a LUKS volume asks for
        ``luks_passphrase`` and ``luks_key_file``); None means a BitLocker volume asks
        (the caller predates ``kinds``): every credential but the LUKS ones is given, and
        only the BitLocker kinds are prompted for.
        """
        ...


@dataclass(slots=True)
class StaticCredentials:
    """A fixed list of credentials, tried on every encrypted volume."""

    items: list[Credential] = field(default_factory=list)

    def credentials_for(
        self, volume: VolumeInfo | None, kinds: Sequence[str] | None = None
    ) -> Sequence[Credential]:
        """Every credential (of ``kinds``, if given), for every volume."""
        return [c for c in self.items if _offered(c.kind, kinds)]


@dataclass(slots=True)
class PromptingCredentials:
    """Static credentials plus secrets asked for interactively, once, when first needed.

    ``prompt`` is called with the kind and a message and returns the secret (the CLI
    passes a hidden-input prompt). Nothing is asked until a locked volume is met.
    """

    static: list[Credential] = field(default_factory=list)
    ask: tuple[str, ...] = ()
    prompt: Callable[[str, str], str] | None = None
    _asked: dict[str, Credential | None] = field(default_factory=dict)

    def credentials_for(
        self, volume: VolumeInfo | None, kinds: Sequence[str] | None = None
    ) -> Sequence[Credential]:
        """Static credentials, then the prompted ones of ``kinds`` (each asked once).

        A kind is prompted for only when a volume that uses it asks: a LUKS passphrase
        prompt waits for a locked LUKS volume, a BitLocker one for a BitLocker volume.
        """
        wanted = _PROMPTED_BY_DEFAULT if kinds is None else tuple(kinds)
        if self.prompt is not None:
            where = f"partition {volume.index}" if volume is not None else "the source"
            for kind in self.ask:
                if kind in wanted and kind not in self._asked:
                    secret = self.prompt(kind, f"{_prompt_label(kind)} for {where}")
                    self._asked[kind] = Credential(kind, secret, "prompt") if secret else None
        asked = [c for k, c in self._asked.items() if c is not None and k in wanted]
        static = [c for c in self.static if _offered(c.kind, kinds)]
        return [*static, *asked]


def _offered(kind: str, kinds: Sequence[str] | None) -> bool:
    """Whether a credential of ``kind`` goes to a volume asking for ``kinds``.

    Without ``kinds`` (BitLocker) everything but the LUKS kinds: a LUKS passphrase is
    never tried on, nor reported as failing on, a BitLocker volume.
    """
    if kinds is None:
        return kind not in (LUKS_PASSPHRASE, LUKS_KEY_FILE)
    return kind in kinds


def _prompt_label(kind: str) -> str:
    """``BitLocker recovery password``, ``LUKS passphrase``, ``APFS password``."""
    words = kind.split("_")
    if words[0] in ("luks", "apfs"):
        return " ".join([words[0].upper(), *words[1:]])
    return " ".join(["BitLocker", *words])


def credential_from_file(kind: str, path: str | os.PathLike[str]) -> Credential:
    """Read a password or passphrase from the first line of a file.

    A startup key or a LUKS key file is referenced by path and checked to exist (a LUKS
    key file is used whole, every byte, as cryptsetup does).

    Raises:
        CredentialsError: the file cannot be read or is empty.
    """
    p = Path(path)
    if kind in (STARTUP_KEY, LUKS_KEY_FILE):
        if not p.is_file():
            raise CredentialsError(f"{kind.replace('_', ' ')} {p}: not found")
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

"""Sending a container home over SFTP (paramiko), resumable and hash-checked.

This module sends a finished file (:meth:`SftpUploader.upload`); streaming a container
while it is written is :mod:`selective_imager.transfer.stream`, over the same
connection logic.

The host key must be known: it is checked against the known_hosts file given (or
``~/.ssh/known_hosts``) and an unknown or different key is refused, never accepted on
first use. Authentication is by key file or agent only: no password is ever taken. A
dropped connection is reopened, the remote size read back, and the upload continues from
there; the file is called delivered only when the remote file's SHA-256 (``sha256sum``
over an exec channel when the server allows it, else read back through SFTP) equals the
local one.

Reference: RFC 4251-4254 (SSH), draft-ietf-secsh-filexfer-02 (SFTP v3, as OpenSSH
implements it); OpenSSH sshd(8) ``AUTHORIZED_KEYS`` and ``SSH_KNOWN_HOSTS`` formats.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from selective_imager.errors import TransferError

if TYPE_CHECKING:
    from collections.abc import Callable

_PIECE = 1 << 20
_RETRYABLE = (OSError, EOFError, paramiko.SSHException)


@dataclass(frozen=True, slots=True)
class SftpTarget:
    """Where to upload: ``sftp://user@host[:port]/path``."""

    user: str
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{self.path}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of an upload.

    Attributes:
        target: where it went (no secret in it).
        size: bytes of the remote file.
        sha256: SHA-256 of the remote file, equal to the local one.
        checked_by: ``remote sha256sum`` or ``sftp read-back``.
        reconnects: how many times the connection was reopened and the upload resumed.
    """

    target: str
    size: int
    sha256: str
    checked_by: str
    reconnects: int
    streamed: bool = False


def parse_target(url: str) -> SftpTarget:
    """Parse ``sftp://user@host[:port]/path``; a password in it is refused.

    Raises:
        TransferError: not such a URL.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "sftp":
        raise TransferError(f"--upload {url.split('://')[0]}://: only sftp:// is supported")
    if parts.password is not None:
        raise TransferError("--upload: no password in the URL; use a key or the agent")
    if not parts.username or not parts.hostname or not parts.path or parts.path == "/":
        raise TransferError("--upload: give sftp://user@host[:port]/path/file")
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise TransferError(f"--upload: bad port in {url}") from exc
    return SftpTarget(
        urllib.parse.unquote(parts.username),
        parts.hostname,
        port,
        urllib.parse.unquote(parts.path),
    )


class SftpUploader:
    """Uploads one local file to an :class:`SftpTarget`.

    Args:
        target: where to.
        known_hosts: file of known host keys (default ``~/.ssh/known_hosts``).
        key_file: private key for authentication (else the agent and ~/.ssh keys).
        retries: reconnect attempts after a dropped connection, before giving up.
        retry_delay: seconds between attempts (doubling, at most 10 s).
        on_progress: called with the bytes the remote file holds after each piece.
    """

    def __init__(
        self,
        target: SftpTarget,
        *,
        known_hosts: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        retries: int = 8,
        retry_delay: float = 0.5,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.target = target
        self.known_hosts = Path(known_hosts or Path.home() / ".ssh" / "known_hosts")
        self.key_file = os.fspath(key_file) if key_file is not None else None
        self.retries = retries
        self.retry_delay = retry_delay
        self.on_progress = on_progress
        self._client: paramiko.SSHClient | None = None

    # -- connection -------------------------------------------------------------
    def connect(self) -> paramiko.SSHClient:
        """A new connection: host key checked, key or agent authentication.

        Raises:
            TransferError: host key unknown or different, or authentication failed.
            OSError, EOFError, paramiko.SSHException: the server cannot be reached (a
                caller may retry).
        """
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
        except OSError as exc:
            raise TransferError(
                f"cannot read known hosts {self.known_hosts}: {exc.strerror or exc}"
            ) from exc
        # An unknown host is refused: trust on first use would defeat the check.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.target.host,
                port=self.target.port,
                username=self.target.user,
                key_filename=self.key_file,
                allow_agent=True,
                look_for_keys=self.key_file is None,
                timeout=10,
                banner_timeout=10,
                auth_timeout=10,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise TransferError(
                f"{self.target.host}: the host key does not match {self.known_hosts}: refused"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise TransferError(f"{self.target}: authentication failed (key or agent)") from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise TransferError(
                    f"{self.target.host}: host key not in {self.known_hosts}: refused"
                ) from exc
            raise
        return client

    def _retrying(self, action: Callable[[paramiko.SSHClient], Any]) -> tuple[Any, int]:
        """Run ``action`` on a connection, reconnecting after a drop; (result, reconnects)."""
        reconnects = 0
        delay = self.retry_delay
        while True:
            try:
                if self._client is None:
                    self._client = self.connect()
                return action(self._client), reconnects
            except TransferError:
                raise
            except _RETRYABLE as exc:
                self.close()
                if reconnects >= self.retries:
                    raise TransferError(
                        f"{self.target}: connection lost and not regained after "
                        f"{reconnects} attempts: {exc}"
                    ) from exc
                reconnects += 1
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def check(self, *, absent: bool = False) -> None:
        """Connect once (host key and authentication) and close: fail before collecting.

        Args:
            absent: also refuse when the remote file exists (a stream starts a new file).
        """
        self._retrying(self._refuse_existing if absent else lambda client: None)
        self.close()

    def _refuse_existing(self, client: paramiko.SSHClient) -> None:
        sftp = client.open_sftp()
        try:
            sftp.stat(self.target.path)
        except FileNotFoundError:
            return
        finally:
            sftp.close()
        raise TransferError(f"{self.target}: the remote file exists: refusing to overwrite it")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- upload -------------------------------------------------------------------
    def upload(
        self, local: str | os.PathLike[str], local_sha256: str, *, trusted: int | None = None
    ) -> Delivery:
        """Send ``local`` (whose SHA-256 the caller computed while writing it).

        A remote file already there is refused unless it is a prefix of this upload
        (a resumed run): it is continued, and the final hash check covers it.

        Args:
            local: the file.
            local_sha256: its SHA-256.
            trusted: the remote bytes known to be this file's (a stream that stopped):
                anything past them is cut off and sent again.

        Raises:
            TransferError: host key refused, authentication failed, the connection could
                not be regained, or the remote hash differs.
        """
        local = Path(local)
        size = local.stat().st_size
        total_reconnects = 0
        with open(local, "rb") as src:
            _, reconnects = self._retrying(lambda c: self._send(c, src, size, trusted))
            total_reconnects += reconnects
        done = self.verify(local_sha256, size)
        return Delivery(str(self.target), size, done.sha256, done.checked_by,
                        total_reconnects + done.reconnects)  # fmt: skip

    def verify(self, sha256: str, size: int) -> Delivery:
        """Check the remote file's SHA-256 against ``sha256`` (reconnecting if needed).

        Raises:
            TransferError: it differs, or the server cannot be reached.
        """
        (digest, how), reconnects = self._retrying(self.remote_sha256)
        self.close()
        if digest != sha256:
            raise TransferError(
                f"{self.target}: the remote file's SHA-256 {digest} differs from the "
                f"container's {sha256}: not delivered"
            )
        return Delivery(str(self.target), size, digest, how, reconnects)

    def _send(self, client: paramiko.SSHClient, src: Any, size: int, trusted: int | None) -> None:
        sftp = client.open_sftp()
        try:
            try:
                have = sftp.stat(self.target.path).st_size or 0
            except FileNotFoundError:
                have = 0
            if trusted is not None and have > trusted:
                sftp.truncate(self.target.path, trusted)
                have = trusted
            if have > size:
                raise TransferError(
                    f"{self.target}: a larger remote file is in the way ({have} bytes)"
                )
            # Resumed at the remote size (an explicit offset: not every server appends).
            with sftp.open(self.target.path, "r+b" if have else "wb") as dst:
                dst.set_pipelined(True)
                dst.seek(have)
                src.seek(have)
                while have < size:
                    piece = src.read(min(_PIECE, size - have))
                    if not piece:
                        raise TransferError("the local container shrank while uploading")
                    dst.write(piece)
                    have += len(piece)
                    if self.on_progress is not None:
                        self.on_progress(have)
                dst.flush()
        finally:
            sftp.close()

    def remote_sha256(self, client: paramiko.SSHClient) -> tuple[str, str]:
        """(SHA-256 of the remote file, how it was computed)."""
        digest = _exec_sha256(client, self.target.path)
        if digest is not None:
            return digest, "remote sha256sum"
        sftp = client.open_sftp()
        try:
            h = hashlib.sha256()
            with sftp.open(self.target.path, "rb") as fh:
                fh.prefetch()
                while piece := fh.read(_PIECE):
                    h.update(piece)
            return h.hexdigest(), "sftp read-back"
        finally:
            sftp.close()


def _exec_sha256(client: paramiko.SSHClient, path: str) -> str | None:
    """``sha256sum PATH`` on the server, or None when it cannot run there."""
    try:
        _, stdout, _ = client.exec_command(f"sha256sum -- {shlex.quote(path)}", timeout=600)
        text = stdout.read().decode("ascii", "replace")
        status = stdout.channel.recv_exit_status()
    except (TimeoutError, paramiko.SSHException):
        return None
    words = text.split()
    if status != 0 or not words or len(words[0]) != 64:
        return None
    return str(words[0]).lower()


__all__ = ["Delivery", "SftpTarget", "SftpUploader", "parse_target"]

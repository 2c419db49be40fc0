"""age v1 encryption at rest: recipients, identities, an encrypting writer, a seekable reader.

The container can be written as an age-encrypted file, so that the evidence never lies in
plaintext on the collecting machine's disk and the reference ``age`` CLI (or any age
implementation) decrypts it. The ZIP writer patches each member's local header after the
member's data, so the writer here is not a plain stream: the plaintext is cut into the
STREAM's 64 KiB chunks, and a chunk is encrypted (once, with its final content: a STREAM
nonce is never reused) when it is full, is not the last one, and is not *held*. The ZIP
writer holds the chunks of the open member's local header until it has patched it, so
chunks may reach the file out of order, each at its fixed offset. Only held chunks and
the chunk being filled are in memory.

Given a ``sink`` (the ZIP writer's streaming mode, which never patches a header), the
chunks are sealed in order and the encrypted file goes to the sink strictly in order.

Reading decrypts chunk by chunk on demand, so ``zipfile`` seeks through the container
without any plaintext on disk.

Reference: the age format specification, https://age-encryption.org/v1 (C2SP age.md):
header (version line, recipient stanzas, HMAC-SHA-256 under HKDF(file key, "header")),
payload (16-byte nonce, HKDF(file key, nonce, "payload"), ChaCha20-Poly1305 chunks of
64 KiB with an 11-byte big-endian counter and a last-chunk flag as nonce); stanzas
X25519, ssh-ed25519 and ssh-rsa; BIP 173 (bech32) for ``age1`` / ``AGE-SECRET-KEY-1``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from selective_imager.container.zipwriter import StreamSink

MAGIC = b"age-encryption.org/v1\n"
CHUNK = 64 * 1024
_TAG = 16
_CT_CHUNK = CHUNK + _TAG
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_ED25519_LABEL = b"age-encryption.org/v1/ssh-ed25519"
_RSA_LABEL = b"age-encryption.org/v1/ssh-rsa"
_P = 2**255 - 19
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


# -- encodings ---------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if "=" in text or "\n" in text or "\r" in text:
        raise ContainerError("age header: non-canonical base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:
        raise ContainerError("age header: bad base64") from exc


def _bech32_polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], src: int, dst: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    for value in data:
        acc = (acc << src) | value
        bits += src
        while bits >= dst:
            bits -= dst
            out.append((acc >> bits) & ((1 << dst) - 1))
    if pad and bits:
        out.append((acc << (dst - bits)) & ((1 << dst) - 1))
    elif not pad and (bits >= src or (acc << (dst - bits)) & ((1 << dst) - 1)):
        raise ValueError("bad padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Bech32 (BIP 173, no length limit, as age uses it) of ``data`` under ``hrp``."""
    values = _convert_bits(data, 8, 5, True)
    poly = _bech32_polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    check = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[v] for v in values + check)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """(hrp, data) of a bech32 string (all lower or all upper case)."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise ValueError("no separator")
    hrp, rest = text[:pos], text[pos + 1 :]
    try:
        values = [_BECH32.index(c) for c in rest]
    except ValueError as exc:
        raise ValueError("bad character") from exc
    if _bech32_polymod([*_hrp_expand(hrp), *values]) != 1:
        raise ValueError("bad checksum")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, False))


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)


def _x25519(scalar: bytes, point: bytes) -> bytes:
    try:
        key = x25519.X25519PrivateKey.from_private_bytes(scalar)
        return key.exchange(x25519.X25519PublicKey.from_public_bytes(point))
    except ValueError as exc:  # a low-order point gives an all-zero secret
        raise ContainerError("age: invalid X25519 share") from exc


def _ed25519_to_x25519(public: bytes) -> bytes:
    """The Montgomery u-coordinate of an Ed25519 public key: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


def _wrap(key: bytes, data: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(b"\0" * 12, data, None)


def _unwrap(key: bytes, data: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(key).decrypt(b"\0" * 12, data, None)
    except InvalidTag:
        return None


# -- recipients ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stanza:
    """One recipient stanza of the header."""

    kind: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        """The stanza's header lines (body wrapped at 64 columns, last line short)."""
        text = _b64(self.body)
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        if not lines or len(lines[-1]) == 64:
            lines.append("")
        head = " ".join(("->", self.kind, *self.args))
        return ("\n".join([head, *lines]) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Recipient:
    """A public key to encrypt to: ``kind`` is X25519, ssh-ed25519 or ssh-rsa."""

    kind: str
    key: bytes  # X25519 point, Ed25519 public key, or the SSH wire form of an RSA key
    text: str  # as given, for the record (public keys are not secrets)

    def stanza(self, file_key: bytes) -> Stanza:
        """Wrap ``file_key`` for this recipient."""
        if self.kind == "ssh-rsa":
            public = serialization.load_ssh_public_key(self.text.encode())
            assert isinstance(public, rsa.RSAPublicKey)
            body = public.encrypt(
                file_key,
                padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), _RSA_LABEL),
            )
            return Stanza("ssh-rsa", (_b64(_ssh_tag(self.key)),), body)
        ephemeral = os.urandom(32)
        share = _x25519(ephemeral, _BASEPOINT)
        if self.kind == "X25519":
            shared = _x25519(ephemeral, self.key)
            wrap = _hkdf(shared, share + self.key, _X25519_LABEL)
            return Stanza("X25519", (_b64(share),), _wrap(wrap, file_key))
        wire = _ssh_string(b"ssh-ed25519") + _ssh_string(self.key)
        point = _ed25519_to_x25519(self.key)
        tweak = _hkdf(b"", wire, _ED25519_LABEL)
        shared = _x25519(tweak, _x25519(ephemeral, point))
        wrap = _hkdf(shared, share + point, _ED25519_LABEL)
        return Stanza("ssh-ed25519", (_b64(_ssh_tag(wire)), _b64(share)), _wrap(wrap, file_key))


_BASEPOINT = (9).to_bytes(32, "little")


def _ssh_tag(wire: bytes) -> bytes:
    return hashlib.sha256(wire).digest()[:4]


def parse_recipient(text: str) -> Recipient:
    """An ``age1…`` key or an OpenSSH public key line (ssh-ed25519 / ssh-rsa).

    Raises:
        ContainerError: anything else.
    """
    text = text.strip()
    if text.startswith("age1"):
        try:
            hrp, data = bech32_decode(text)
        except ValueError as exc:
            raise ContainerError(f"not an age recipient ({exc}): {text[:20]}…") from exc
        if hrp != "age" or len(data) != 32:
            raise ContainerError(f"not an X25519 age recipient: {text[:20]}…")
        return Recipient("X25519", data, text)
    if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
        try:
            public = serialization.load_ssh_public_key(" ".join(text.split()[:2]).encode())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ContainerError(f"not a valid SSH public key: {text[:30]}…") from exc
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return Recipient("ssh-ed25519", raw, text)
        if isinstance(public, rsa.RSAPublicKey):
            wire = base64.b64decode(text.split()[1])
            return Recipient("ssh-rsa", wire, text)
    raise ContainerError(
        f"unsupported recipient {text[:30]!r}: give an age1… key, ssh-ed25519 or ssh-rsa"
    )


def read_recipients_file(path: str | os.PathLike[str]) -> list[Recipient]:
    """Recipients from a file: one a line, ``#`` comments and blank lines ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContainerError(f"cannot read recipients file {path}: {exc}") from exc
    out = [parse_recipient(line) for line in lines if line.strip() and not line.startswith("#")]
    if not out:
        raise ContainerError(f"recipients file {path} lists no recipient")
    return out


# -- identities ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Identity:
    """A private key that may unwrap a stanza. ``repr`` never shows the key."""

    kind: str
    _secret: bytes
    _wire: bytes = b""  # SSH wire form of the public key (ssh-* kinds)

    def __repr__(self) -> str:
        return f"Identity({self.kind})"

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key when ``stanza`` is for this identity, else None."""
        if stanza.kind != self.kind:
            return None
        if self.kind == "X25519" and len(stanza.args) == 1:
            share = _unb64(stanza.args[0])
            public = _x25519(self._secret, _BASEPOINT)
            wrap = _hkdf(_x25519(self._secret, share), share + public, _X25519_LABEL)
            return _unwrap(wrap, stanza.body)
        if self.kind == "ssh-ed25519" and len(stanza.args) == 2:
            if _unb64(stanza.args[0]) != _ssh_tag(self._wire):
                return None
            share = _unb64(stanza.args[1])
            scalar = hashlib.sha512(self._secret).digest()[:32]
            tweak = _hkdf(b"", self._wire, _ED25519_LABEL)
            shared = _x25519(tweak, _x25519(scalar, share))
            point = _ed25519_to_x25519(self._wire[-32:])
            return _unwrap(_hkdf(shared, share + point, _ED25519_LABEL), stanza.body)
        if self.kind == "ssh-rsa" and len(stanza.args) == 1:
            if _unb64(stanza.args[0]) != _ssh_tag(self._wire):
                return None
            key = serialization.load_der_private_key(self._secret, None)
            assert isinstance(key, rsa.RSAPrivateKey)
            try:
                return key.decrypt(
                    stanza.body,
                    padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), _RSA_LABEL),
                )
            except ValueError:
                return None
        return None


def read_identities(path: str | os.PathLike[str]) -> list[Identity]:
    """Identities from an age identity file or an unencrypted OpenSSH private key.

    Raises:
        ContainerError: unreadable, passphrase-protected, or no identity in it.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ContainerError(f"cannot read identity file {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" in raw:
        return [_ssh_identity(raw, path)]
    out: list[Identity] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            hrp, data = bech32_decode(line)
        except ValueError:
            hrp, data = "", b""
        if hrp != "age-secret-key-" or len(data) != 32:
            raise ContainerError(f"{path}: a line is not an AGE-SECRET-KEY-1… identity")
        out.append(Identity("X25519", data))
    if not out:
        raise ContainerError(f"{path}: no identity in it")
    return out


def _ssh_identity(raw: bytes, path: str | os.PathLike[str]) -> Identity:
    try:
        key = serialization.load_ssh_private_key(raw, None)
    except TypeError as exc:
        raise ContainerError(f"{path}: the SSH key is passphrase-protected (not supported)") from exc
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(raw, None)  # type: ignore[assignment]
        except (TypeError, ValueError, UnsupportedAlgorithm):
            raise ContainerError(f"{path}: not a readable unencrypted private key") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return Identity("ssh-ed25519", seed, _ssh_string(b"ssh-ed25519") + _ssh_string(public))
    if isinstance(key, rsa.RSAPrivateKey):
        line = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Identity("ssh-rsa", der, base64.b64decode(line.split()[1]))
    raise ContainerError(f"{path}: only ssh-ed25519 and ssh-rsa keys are age identities")


# -- header ----------------------------------------------------------------------------
def _header(recipients: list[Recipient], file_key: bytes) -> bytes:
    body = MAGIC + b"".join(r.stanza(file_key).encode() for r in recipients) + b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), body, "sha256").digest()
    return body + b" " + _b64(mac).encode() + b"\n"


def _parse_header(fh: io.BufferedIOBase) -> tuple[list[Stanza], bytes, bytes]:
    """(stanzas, the bytes the MAC covers, the MAC)."""
    if fh.readline(64) != MAGIC:
        raise ContainerError("not an age v1 file")
    covered = bytearray(MAGIC)
    stanzas: list[Stanza] = []
    while True:
        line = fh.readline(4096)
        if not line.endswith(b"\n"):
            raise ContainerError("age header: truncated")
        if line.startswith(b"--- "):
            covered += b"---"
            return stanzas, bytes(covered), _unb64(line[4:-1].decode("ascii", "replace"))
        covered += line
        parts = line[:-1].decode("ascii", "replace").split(" ")
        if parts[0] != "->" or len(parts) < 2:
            raise ContainerError("age header: malformed stanza")
        body = bytearray()
        while True:
            chunk = fh.readline(80)
            if not chunk.endswith(b"\n") or len(chunk) > 65:
                raise ContainerError("age header: malformed stanza body")
            covered += chunk
            body += _unb64(chunk[:-1].decode("ascii", "replace"))
            if len(chunk) < 65:
                break
        stanzas.append(Stanza(parts[1], tuple(parts[2:]), bytes(body)))


def _chunk_nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# -- writing ----------------------------------------------------------------------------
class AgeWriter:
    """A write-mostly file object whose bytes land age-encrypted in ``path``.

    Seeking back is allowed only into chunks not yet encrypted (:meth:`hold` keeps them
    so); :meth:`can_truncate` says whether a truncation is still possible. With a
    ``sink`` the encrypted bytes go to it, in order, instead of to ``path``.
    """

    def __init__(
        self,
        path: str,
        recipients: list[Recipient],
        *,
        overwrite: bool,
        sink: StreamSink | None = None,
    ) -> None:
        if not recipients:
            raise ContainerError("no age recipient given")
        self._sink = sink
        self._out = 0  # bytes handed to the sink
        self._fd = -1
        if sink is None:
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
            try:
                self._fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o644)
            except OSError as exc:
                raise ContainerError(f"cannot create {path}: {exc.strerror or exc}") from exc
        self.path = path
        file_key = os.urandom(16)
        nonce = os.urandom(16)
        head = _header(recipients, file_key) + nonce
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._base = len(head)
        self._put(head, 0)
        self._chunks: dict[int, bytearray] = {0: bytearray()}
        self._next = 1  # chunks below this index exist (held in memory or encrypted)
        self._pos = 0
        self._size = 0
        self._held: tuple[int, int] | None = None  # chunk index range kept unencrypted
        self._closed = False

    def _put(self, data: bytes, offset: int) -> None:
        if self._sink is not None:
            if offset != self._out:
                raise ContainerError("age writer: a streamed chunk out of order")
            self._sink.write(data)
            self._out += len(data)
            return
        view = memoryview(data)
        while view:
            done = os.pwrite(self._fd, view, offset)
            view, offset = view[done:], offset + done

    # -- file-object protocol used by the ZIP writer --------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write at the current position (inside unencrypted chunks or at the end)."""
        view = memoryview(data).cast("B")
        total = view.nbytes
        while view:
            index, within = divmod(self._pos, CHUNK)
            chunk = self._chunk(index)
            if within > len(chunk):
                raise ContainerError("age writer: a write would leave a hole")
            take = min(CHUNK - within, view.nbytes)
            chunk[within : within + take] = view[:take]
            view = view[take:]
            self._pos += take
            self._size = max(self._size, self._pos)
        self._seal_ready()
        return total

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the position (``whence`` 0 only)."""
        if whence != 0:
            raise ContainerError("age writer: only absolute seeks")
        self._pos = offset
        return offset

    def tell(self) -> int:
        """The plaintext position."""
        return self._pos

    def flush(self) -> None:
        """Nothing to flush: encrypted chunks are written when sealed."""

    def fileno(self) -> int:
        """The encrypted file's descriptor (for fsync; not with a sink)."""
        return self._fd

    def plaintext_within(self, size: int) -> int:
        """Plaintext bytes wholly inside the first ``size`` bytes of the encrypted file
        (whole chunks only: a chunk is of no use without its tag)."""
        return max(0, size - self._base) // _CT_CHUNK * CHUNK

    def hold(self, start: int, end: int) -> None:
        """Keep the chunks of plaintext ``[start, end)`` unencrypted until :meth:`release`."""
        self._held = (start // CHUNK, (max(end, start + 1) - 1) // CHUNK)

    def release(self) -> None:
        """Let the held chunks be encrypted when ready."""
        self._held = None
        self._seal_ready()

    def can_truncate(self, size: int) -> bool:
        """Whether every chunk from ``size`` on is still unencrypted."""
        return all(i in self._chunks for i in range(size // CHUNK, self._next))

    def truncate(self, size: int | None = None) -> int:
        """Cut the plaintext to ``size`` (only when :meth:`can_truncate`)."""
        size = self._pos if size is None else size
        if not self.can_truncate(size):
            raise ContainerError("age writer: the data past the cut is already encrypted")
        last = size // CHUNK
        for index in [i for i in self._chunks if i > last]:
            del self._chunks[index]
        del self._chunks[last][size % CHUNK :]
        self._next = last + 1
        self._size = size
        return size

    def close(self) -> None:
        """Encrypt every remaining chunk (the last with the last-chunk flag)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._held = None
            last = max(0, (self._size - 1) // CHUNK)
            for index in sorted(self._chunks):
                if index <= last:
                    self._seal(index, last=index == last)
            if self._sink is not None:
                self._sink.close()
                return
            os.ftruncate(self._fd, self._base + self._size + _TAG * (last + 1))
        finally:
            if self._fd >= 0:
                os.close(self._fd)

    def abort(self) -> None:
        """Close without finishing (the file is then not a valid age file)."""
        if not self._closed:
            self._closed = True
            if self._sink is not None:
                self._sink.abort()
            else:
                os.close(self._fd)

    # -- internals ------------------------------------------------------------------
    def _chunk(self, index: int) -> bytearray:
        chunk = self._chunks.get(index)
        if chunk is not None:
            return chunk
        if index != self._next:
            raise ContainerError("age writer: that chunk is already encrypted")
        chunk = self._chunks[index] = bytearray()
        self._next += 1
        return chunk

    def _seal_ready(self) -> None:
        last = (self._size - 1) // CHUNK if self._size else 0
        for index in list(self._chunks):
            if index >= last or len(self._chunks[index]) < CHUNK:
                continue
            if self._held is not None and self._held[0] <= index <= self._held[1]:
                continue
            self._seal(index, last=False)

    def _seal(self, index: int, *, last: bool) -> None:
        plain = self._chunks.pop(index)
        if not last and len(plain) != CHUNK:
            raise ContainerError("age writer: a short chunk before the end")
        sealed = self._aead.encrypt(_chunk_nonce(index, last), bytes(plain), None)
        self._put(sealed, self._base + index * _CT_CHUNK)


# -- reading ------------------------------------------------------------------------------
class AgeReader(io.RawIOBase):
    """The plaintext of an age file, seekable, decrypted one chunk at a time.

    Raises:
        ContainerError: no identity unwraps the file key, the header MAC or a chunk does
            not authenticate, or the file is truncated.
    """

    def __init__(self, path: str | os.PathLike[str], identities: list[Identity]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ContainerError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        try:
            self._open(identities)
        except BaseException:
            self._fh.close()
            raise

    def _open(self, identities: list[Identity]) -> None:
        stanzas, covered, mac = _parse_header(self._fh)
        file_key = None
        for stanza in stanzas:
            for identity in identities:
                file_key = identity.unwrap(stanza)
                if file_key is not None:
                    break
            if file_key is not None:
                break
        if file_key is None or len(file_key) != 16:
            raise ContainerError(f"{self.path}: none of the identities given can decrypt it")
        expected = hmac.new(_hkdf(file_key, b"", b"header"), covered, "sha256").digest()
        if not hmac.compare_digest(expected, mac):
            raise ContainerError(f"{self.path}: the age header MAC does not match")
        nonce = self._fh.read(16)
        if len(nonce) != 16:
            raise ContainerError(f"{self.path}: truncated age payload")
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._base = self._fh.tell()
        payload = os.fstat(self._fh.fileno()).st_size - self._base
        self._count = max(1, -(-payload // _CT_CHUNK))
        self._size = payload - _TAG * self._count
        if self._size < 0 or (self._count > 1 and 0 < payload % _CT_CHUNK <= _TAG):
            raise ContainerError(f"{self.path}: truncated age payload")
        self._pos = 0
        self._cache: tuple[int, bytes] = (-1, b"")
        self._chunk(self._count - 1)  # authenticates the end: a truncation shows here
        if self._count > 1 and not self._cache[1]:
            raise ContainerError(f"{self.path}: empty last chunk in the age payload")

    @property
    def size(self) -> int:
        """Plaintext size."""
        return self._size

    def _chunk(self, index: int) -> bytes:
        if self._cache[0] == index:
            return self._cache[1]
        self._fh.seek(self._base + index * _CT_CHUNK)
        sealed = self._fh.read(_CT_CHUNK)
        last = index == self._count - 1
        try:
            plain = self._aead.decrypt(_chunk_nonce(index, last), sealed, None)
        except InvalidTag as exc:
            raise ContainerError(
                f"{self.path}: age chunk {index} does not authenticate (corrupt or truncated)"
            ) from exc
        self._cache = (index, plain)
        return plain

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        out = memoryview(buffer).cast("B")
        done = 0
        while done < out.nbytes and self._pos < self._size:
            index, within = divmod(self._pos, CHUNK)
            data = self._chunk(index)[within : within + out.nbytes - done]
            out[done : done + len(data)] = data
            done += len(data)
            self._pos += len(data)
        return done

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def is_age_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the age v1 version line."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_plaintext(
    path: str | os.PathLike[str], identities: list[Identity]
) -> io.BufferedReader:
    """A buffered, seekable reader of the decrypted content of an age file."""
    return io.BufferedReader(AgeReader(path, identities), buffer_size=CHUNK)


__all__ = [
    "CHUNK",
    "AgeReader",
    "AgeWriter",
    "Identity",
    "Recipient",
    "is_age_file",
    "open_plaintext",
    "parse_recipient",
    "read_identities",
    "read_recipients_file",
]

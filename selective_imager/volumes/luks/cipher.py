"""dm-crypt sector ciphers of LUKS (``aes-xts-plain64`` form), decrypted in bulk by OpenSSL.

References:
    - LUKS1 and LUKS2 On-Disk Format Specifications (cryptsetup project): cipher and
      IV-generator names.
    - The Linux kernel's dm-crypt documentation: ``plain`` is the sector number modulo
      2^32, ``plain64`` modulo 2^64 (both little-endian, zero-padded to the block size),
      ``essiv:HASH`` encrypts the sector number with ``HASH(volume key)`` as the key.

Each sector is its own data unit, so a read is decrypted with a few large OpenSSL calls
rather than one cipher object per sector, as the BitLocker fast path does: AES-XTS
reuses its engine (tweaks from one ECB call, masks by vectorised GF(2^128) doublings);
AES-CBC computes every sector's IV at once, decrypts the buffer in ECB and XORs the
chaining values with numpy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from selective_imager.errors import UnsupportedEncryptionError

# The XTS engine and its per-thread buffers are shared with BitLocker, whose sectors use
# the same XTS data-unit scheme (tweak = sector number).
from selective_imager.volumes.bitlocker.fast import _Scratch, _XtsSectors

if TYPE_CHECKING:
    import numpy.typing as npt

    U8Array = npt.NDArray[np.uint8]

_U64 = np.dtype("<u8")
_IV_MODULO = {"plain": 1 << 32, "plain64": 1 << 64}
_SCRATCH = _Scratch()


@dataclass(frozen=True, slots=True)
class CipherSpec:
    """A parsed cipher name: ``aes-cbc-essiv:sha256`` is (aes, cbc, essiv, sha256)."""

    cipher: str
    mode: str
    iv: str
    iv_hash: str

    @property
    def name(self) -> str:
        """The name as LUKS writes it."""
        iv = f"-{self.iv}:{self.iv_hash}" if self.iv_hash else (f"-{self.iv}" if self.iv else "")
        return f"{self.cipher}-{self.mode}{iv}"


def parse_spec(name: str) -> CipherSpec:
    """Parse and check a cipher name.

    Raises:
        UnsupportedEncryptionError: not AES in XTS, CBC or ECB with a supported IV.
    """
    parts = name.lower().split("-", 2)
    cipher = parts[0]
    mode = parts[1] if len(parts) > 1 else "cbc"
    iv, _, iv_hash = (parts[2] if len(parts) > 2 else "").partition(":")
    spec = CipherSpec(cipher, mode, iv, iv_hash)
    if cipher == "cipher_null":
        return spec
    if cipher != "aes":
        raise UnsupportedEncryptionError(f"cipher {name!r} is not supported (AES only)")
    if mode == "ecb" and not iv:
        return spec
    if mode == "xts" and iv in _IV_MODULO:
        return spec
    if mode == "cbc" and (iv in _IV_MODULO or (iv == "essiv" and iv_hash)):
        if iv_hash:
            try:
                hashlib.new(iv_hash)
            except ValueError as exc:
                raise UnsupportedEncryptionError(f"ESSIV hash {iv_hash!r} unknown") from exc
        return spec
    raise UnsupportedEncryptionError(f"cipher mode {name!r} is not supported")


class SectorCipher(Protocol):
    """Decrypts whole sectors given the IV number of the first.

    IV numbers count 512-byte units whatever the sector size: a 4096-byte sector's IV
    number is 8 more than the one before it (cryptsetup never sets dm-crypt's
    ``iv_large_sectors`` for LUKS; measured on a ``--sector-size 4096`` LUKS2 volume).
    """

    sector_size: int

    def decrypt(self, data: bytes, first_sector: int) -> bytes:
        """Decrypt ``data`` (whole sectors); ``first_sector`` is its first IV number."""
        ...


def sector_cipher(name: str, key: bytes, sector_size: int) -> SectorCipher:
    """The engine for cipher ``name`` with ``key``.

    Raises:
        UnsupportedEncryptionError: the cipher, mode or key size is not supported.
    """
    spec = parse_spec(name)
    if spec.cipher == "cipher_null":
        return _Null(sector_size)
    if spec.mode == "xts":
        if len(key) not in (32, 64):
            raise UnsupportedEncryptionError(f"{name}: a {len(key) * 8}-bit XTS key")
        return _Xts(key, sector_size, _IV_MODULO[spec.iv])
    if len(key) not in (16, 24, 32):
        raise UnsupportedEncryptionError(f"{name}: a {len(key) * 8}-bit AES key")
    if spec.mode == "ecb":
        return _EcbSectors(key, sector_size)
    iv_key = hashlib.new(spec.iv_hash, key).digest() if spec.iv == "essiv" else b""
    if iv_key and len(iv_key) not in (16, 24, 32):
        raise UnsupportedEncryptionError(f"{name}: ESSIV hash gives no AES key size")
    return _Cbc(key, sector_size, iv_key, _IV_MODULO.get(spec.iv, 1 << 64))


def _ecb(key: bytes, data: bytes | memoryview, encrypt: bool) -> bytes:
    ecb = Cipher(algorithms.AES(key), modes.ECB())
    ctx = ecb.encryptor() if encrypt else ecb.decryptor()
    return ctx.update(data) + ctx.finalize()


def _sector_numbers(first: int, count: int, step: int, modulo: int) -> npt.NDArray[np.uint64]:
    """(count, 2) u64: the IV numbers ``first + k * step`` as 128-bit little-endian values."""
    out = np.zeros((count, 2), _U64)
    numbers = np.arange(0, count * step, step, dtype=np.uint64)
    if modulo <= 1 << 32:
        # plain: numbers wrap at 2^32 (first is reduced so the sum stays exact).
        out[:, 0] = (numbers + np.uint64(first % modulo)) % np.uint64(modulo)
    else:
        out[:, 0] = numbers + np.uint64(first % modulo)
    return out


@dataclass(slots=True)
class _Null:
    """``cipher_null``: the data is stored in the clear."""

    sector_size: int

    def decrypt(self, data: bytes, first_sector: int) -> bytes:
        """The data as it is."""
        return data


class _Xts:
    """AES-XTS, tweak = the IV number (plain: modulo 2^32)."""

    def __init__(self, key: bytes, sector_size: int, modulo: int) -> None:
        half = len(key) // 2
        self.sector_size = sector_size
        self._key = key
        self._engine = _XtsSectors(key[:half], key[half:], 512)
        self._modulo = modulo

    def decrypt(self, data: bytes, first_sector: int) -> bytes:
        """Decrypt whole sectors (512-byte ones in bulk, bigger ones one call each)."""
        if self.sector_size != 512:
            return self._decrypt_large(data, first_sector)
        return self._decrypt_512(data, first_sector)

    def _decrypt_large(self, data: bytes, first_sector: int) -> bytes:
        # One OpenSSL context per 4 KiB sector costs little (~775 MB/s measured), and
        # the tweaks step by 8, which the shared bulk engine does not do.
        ss, step = self.sector_size, self.sector_size // 512
        out = bytearray(len(data))
        source, target = memoryview(data), memoryview(out)
        for k in range(len(data) // ss):
            tweak = ((first_sector + k * step) % self._modulo).to_bytes(16, "little")
            ctx = Cipher(algorithms.AES(self._key), modes.XTS(tweak)).decryptor()
            ctx.update_into(source[k * ss : (k + 1) * ss], target[k * ss : (k + 1) * ss])
        return bytes(out)

    def _decrypt_512(self, data: bytes, first_sector: int) -> bytes:
        """Bulk decryption; a run crossing the 2^32 wrap of ``plain`` is split."""
        count = len(data) // self.sector_size
        first = first_sector % self._modulo
        src = np.frombuffer(data, np.uint8)
        dst = np.empty_like(src)
        done = 0
        while done < count:
            start = (first + done) % self._modulo
            run = min(count - done, self._modulo - start)
            lo, hi = done * self.sector_size, (done + run) * self.sector_size
            self._engine.decrypt_into(src[lo:hi], start * self.sector_size, dst[lo:hi], _SCRATCH)
            done += run
        return dst.tobytes()


@dataclass(slots=True)
class _EcbSectors:
    """AES-ECB: no IV at all."""

    _key: bytes
    sector_size: int

    def decrypt(self, data: bytes, first_sector: int) -> bytes:
        """One ECB call over the whole buffer."""
        return _ecb(self._key, data, encrypt=False)


class _Cbc:
    """AES-CBC per sector; IV = sector number (plain, plain64) or its ESSIV encryption."""

    def __init__(self, key: bytes, sector_size: int, iv_key: bytes, modulo: int) -> None:
        self._key = key
        self._iv_key = iv_key
        self._modulo = modulo
        self._blocks = sector_size // 16
        self.sector_size = sector_size

    def decrypt(self, data: bytes, first_sector: int) -> bytes:
        """ECB-decrypt everything, then XOR each block with the one before (or the IV)."""
        count = len(data) // self.sector_size
        ivs = _sector_numbers(first_sector, count, self.sector_size // 512, self._modulo)
        if self._iv_key:
            ivs = np.frombuffer(_ecb(self._iv_key, ivs.tobytes(), encrypt=True), _U64).reshape(
                count, 2
            )
        cipher = np.frombuffer(data, _U64).reshape(count, self._blocks, 2)
        plain = np.frombuffer(bytearray(_ecb(self._key, data, encrypt=False)), _U64).reshape(
            cipher.shape
        )
        np.bitwise_xor(plain[:, 0], ivs, out=plain[:, 0])
        np.bitwise_xor(plain[:, 1:], cipher[:, :-1], out=plain[:, 1:])
        return plain.tobytes()

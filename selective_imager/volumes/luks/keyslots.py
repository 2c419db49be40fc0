"""Opening LUKS key slots: key derivation, key-material decryption, AF merge, digest check.

References:
    - LUKS1 On-Disk Format Specification (cryptsetup project): PBKDF2 key slots, the
      anti-forensic (AF) splitter and its diffusion function, the master-key digest.
    - LUKS2 On-Disk Format Specification (cryptsetup project): Argon2i/Argon2id key slots
      (RFC 9106, version 0x13) and PBKDF2 digests of the volume key.

A key slot keeps the volume key AF-split into ``stripes`` blocks, encrypted with a key
derived from the passphrase. Merging: ``d = 0``; for every block but the last
``d = H(d ^ s_i)``; the key is ``d ^ s_last``, where ``H`` hashes the block in
digest-sized pieces, each prefixed by its big-endian 32-bit index. A candidate key is
the volume key when its PBKDF2 equals the header's digest.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from selective_imager.errors import EncryptionError, UnsupportedEncryptionError
from selective_imager.volumes.luks.cipher import sector_cipher
from selective_imager.volumes.luks.header import SECTOR

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.luks.header import Digest, Keyslot, LuksHeader


@dataclass(frozen=True, slots=True)
class VolumeKey:
    """A recovered volume key and what it opened. ``repr()`` never shows the key."""

    keyslot: int
    digest: int
    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"VolumeKey(keyslot={self.keyslot}, digest={self.digest}, key=<redacted>)"


@dataclass(frozen=True, slots=True)
class SlotOutcome:
    """What trying one secret on one key slot gave: a key, or why not."""

    keyslot: int
    key: VolumeKey | None
    problem: str = ""


def derive(slot: Keyslot, secret: bytes) -> bytes:
    """The key-slot key: PBKDF2 or Argon2 of ``secret`` with the slot's parameters.

    Raises:
        UnsupportedEncryptionError: unknown KDF or hash.
    """
    if slot.kdf == "pbkdf2":
        try:
            return hashlib.pbkdf2_hmac(
                slot.hash, secret, slot.salt, slot.iterations, slot.area_key_size
            )
        except ValueError as exc:
            raise UnsupportedEncryptionError(f"PBKDF2 hash {slot.hash!r} unavailable") from exc
    if slot.kdf in ("argon2i", "argon2id"):
        from argon2.exceptions import HashingError
        from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw

        try:
            return hash_secret_raw(
                secret,
                slot.salt,
                time_cost=slot.iterations,
                memory_cost=slot.memory_kib,
                parallelism=slot.parallelism,
                hash_len=slot.area_key_size,
                type=Type.I if slot.kdf == "argon2i" else Type.ID,
                version=ARGON2_VERSION,
            )
        except HashingError as exc:
            raise EncryptionError(f"keyslot {slot.index}: Argon2 refused its parameters") from exc
    raise UnsupportedEncryptionError(f"key derivation {slot.kdf!r} is not supported")


def _diffuse(block: bytes, hash_name: str) -> bytes:
    size = hashlib.new(hash_name).digest_size
    out = bytearray()
    for i in range(0, len(block), size):
        piece = block[i : i + size]
        out += hashlib.new(hash_name, (i // size).to_bytes(4, "big") + piece).digest()[: len(piece)]
    return bytes(out)


def af_merge(material: bytes, key_size: int, stripes: int, hash_name: str) -> bytes:
    """Merge AF-split ``material`` (``stripes`` blocks of ``key_size``) into the key.

    Raises:
        UnsupportedEncryptionError: the AF hash is unknown.
    """
    try:
        hashlib.new(hash_name)
    except ValueError as exc:
        raise UnsupportedEncryptionError(f"AF hash {hash_name!r} unavailable") from exc
    d = 0
    for i in range(stripes - 1):
        block = int.from_bytes(material[i * key_size : (i + 1) * key_size], "big")
        d = int.from_bytes(_diffuse((d ^ block).to_bytes(key_size, "big"), hash_name), "big")
    last = int.from_bytes(material[(stripes - 1) * key_size : stripes * key_size], "big")
    return (d ^ last).to_bytes(key_size, "big")


def digest_matches(digest: Digest, key: bytes) -> bool:
    """Whether PBKDF2 of ``key`` equals the stored digest (compared in constant time).

    Raises:
        UnsupportedEncryptionError: the digest's hash is unknown.
    """
    try:
        got = hashlib.pbkdf2_hmac(
            digest.hash, key, digest.salt, digest.iterations, len(digest.value)
        )
    except ValueError as exc:
        raise UnsupportedEncryptionError(f"digest hash {digest.hash!r} unavailable") from exc
    return hmac.compare_digest(got, digest.value)


def read_material(stream: ByteStream, slot: Keyslot) -> bytes:
    """The encrypted AF-split key material of ``slot``.

    Raises:
        EncryptionError: the area lies (partly) beyond the end of the image.
    """
    need = slot.key_size * slot.stripes
    size = -(-need // SECTOR) * SECTOR
    if size > slot.area_size:
        raise EncryptionError(f"keyslot {slot.index}: key material larger than its area")
    data = stream.read_at(slot.area_offset, size)
    if len(data) < size:
        raise EncryptionError(
            f"keyslot {slot.index}: key material beyond the end of the image (truncated)"
        )
    return data


def try_keyslot(
    header: LuksHeader, stream: ByteStream, slot: Keyslot, secret: bytes
) -> SlotOutcome:
    """Try ``secret`` on one key slot; the key only if a digest of the header accepts it."""
    digests = [d for d in header.digests if slot.index in d.keyslots]
    if not digests:
        return SlotOutcome(slot.index, None, "no digest covers it")
    try:
        material = read_material(stream, slot)
        engine = sector_cipher(slot.area_cipher, derive(slot, secret), SECTOR)
        plain = engine.decrypt(material, 0)
        candidate = af_merge(plain, slot.key_size, slot.stripes, slot.af_hash)
        for digest in digests:
            if digest_matches(digest, candidate):
                return SlotOutcome(slot.index, VolumeKey(slot.index, digest.index, candidate))
    except EncryptionError as exc:
        return SlotOutcome(slot.index, None, str(exc))
    return SlotOutcome(slot.index, None, "wrong")


def unlock(header: LuksHeader, stream: ByteStream, secret: bytes) -> list[SlotOutcome]:
    """Try ``secret`` on every key slot (LUKS2 priority order) until a key is found.

    Slots of priority 0 ("ignore") are tried last, as cryptsetup does with an explicit
    slot, so that no slot is left untried.
    """
    order = sorted(header.keyslots, key=lambda s: (-s.priority if s.priority else 1, s.index))
    outcomes: list[SlotOutcome] = []
    for slot in order:
        outcome = try_keyslot(header, stream, slot, secret)
        outcomes.append(outcome)
        if outcome.key is not None:
            break
    return outcomes

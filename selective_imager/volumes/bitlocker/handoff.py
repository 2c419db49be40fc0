"""Hand a volume master key to libbde without its password stretch, for the cross-check.

The OpenSSL fast path is used only after pybde, decrypting on its own, reads the same
bytes. pybde unlocks only through a protector, and a password or recovery password
costs it the 2^20-round SHA-256 stretch (~0.5 s of C on its own thread), on top of the
same stretch the project's reader has just done to obtain the keys. Here the VMK that
the project's reader opened (authenticated by its AES-CCM tag) is handed over instead:
pybde is shown the volume through a read overlay whose metadata blocks carry one more
protector, a clear key of the kind a suspended volume has (a VMK entry with protection
0x0000 holding a random 256-bit key and the VMK wrapped with it). pybde then unlocks
without a stretch, unwraps the FVEK from the volume's own FVEK entry with that VMK and
decrypts every sector its own way, which is what the check compares against.

Nothing is written: the overlay lives in memory, beside the keys the fast path holds.

References:
    - libyal libbde, "BitLocker Drive Encryption (BDE) format" (FVE metadata block,
      dataset, VMK and key entries, clear-key protection).
"""

from __future__ import annotations

import os
import struct
import uuid
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from selective_imager.streams import OverlayStream

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.bitlocker.fve import FveMetadata, SecretBytes

_BLOCK_HEADER = 64
_ROLE_PROPERTY, _ROLE_VMK = 0x0000, 0x0002
_VALUE_KEY, _VALUE_AES_CCM, _VALUE_VMK = 0x0001, 0x0005, 0x0008
_KEY_TYPE_CLEAR, _KEY_TYPE_VMK = 0x2000, 0x2003
_PROTECTION_CLEAR_KEY = 0x0000


def _entry(role: int, value_type: int, payload: bytes) -> bytes:
    return struct.pack("<HHHH", 8 + len(payload), role, value_type, 1) + payload


def _clear_key_protector(vmk: bytes, created: int) -> bytes:
    """A VMK entry protected by a fresh random clear key."""
    clear = os.urandom(32)
    nonce = struct.pack("<QI", created, 0xFFFFFFFF)
    datum = _entry(_ROLE_PROPERTY, _VALUE_KEY, struct.pack("<HH", _KEY_TYPE_VMK, 0) + vmk)
    sealed = AESCCM(clear, tag_length=16).encrypt(nonce, datum, None)
    wrapped = _entry(_ROLE_PROPERTY, _VALUE_AES_CCM, nonce + sealed[-16:] + sealed[:-16])
    key = _entry(_ROLE_PROPERTY, _VALUE_KEY, struct.pack("<HH", _KEY_TYPE_CLEAR, 0) + clear)
    header = uuid.uuid4().bytes_le + struct.pack("<QHH", created, 0, _PROTECTION_CLEAR_KEY)
    return _entry(_ROLE_VMK, _VALUE_VMK, header + key + wrapped)


def clear_key_overlay(
    base: ByteStream, metadata: FveMetadata, vmk: SecretBytes
) -> ByteStream | None:
    """``base`` with every metadata copy given a clear-key protector for ``vmk``.

    None when a copy cannot be read or would not fit its area (the caller then lets
    pybde unlock with the credential itself).
    """
    protector = _clear_key_protector(vmk.reveal(), metadata.created)
    patches: dict[int, bytes] = {}
    for offset in metadata.metadata_offsets:
        head = base.read_at(offset, _BLOCK_HEADER + 16)
        if len(head) < _BLOCK_HEADER + 16 or head[:8] != b"-FVE-FS-":
            return None
        size = int(struct.unpack_from("<I", head, _BLOCK_HEADER)[0])
        block = bytearray(base.read_at(offset, _BLOCK_HEADER + size))
        grown = size + len(protector)
        units = -(-(_BLOCK_HEADER + grown) // 16)
        if len(block) != _BLOCK_HEADER + size or units * 16 > metadata.metadata_area_size:
            return None
        block += protector
        struct.pack_into("<H", block, 8, units)  # header + dataset, in 16-byte units
        struct.pack_into("<I", block, _BLOCK_HEADER, grown)  # dataset size
        struct.pack_into("<I", block, _BLOCK_HEADER + 12, grown)  # and its copy
        patches[offset] = bytes(block).ljust(units * 16, b"\0")
    return OverlayStream(base, patches, size=base.size)

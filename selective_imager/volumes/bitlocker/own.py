"""BitLocker opened without libbde: the project's FVE reader plus the OpenSSL decryptor.

Used where libbde cannot serve: it refuses the volume (some Windows Vista volumes, damaged
metadata it will not read), or the credential is a raw full-volume key (FVEK), which pybde
cannot take (its ``set_keys`` accepts text, not key bytes). Here the key chain is
authenticated by the AES-CCM tags of the metadata (:mod:`~selective_imager.volumes.bitlocker.fve`
checks them; libbde does not), and a raw FVEK is accepted only when it decrypts the volume's
boot sector to a known file system. Nothing cross-checks the decryption against libbde on
this path, and the volume's report says so.

References:
    - libyal libbde, "BitLocker Drive Encryption (BDE) format" (layout, key chain).
    - dissect.fve ``bde.py`` (facts only: a raw FVEK is checked by the file-system
      signature it decrypts sector 0 to).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from selective_imager.credentials import FVEK, PASSWORD, RECOVERY_PASSWORD, STARTUP_KEY
from selective_imager.errors import CredentialsError, SelectiveImagerError, short_error
from selective_imager.models import EncryptionState, Timestamp
from selective_imager.volumes.bitlocker import fve

if TYPE_CHECKING:
    from selective_imager.credentials import Credential
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.bitlocker.fast import FastBdeStream

# (offset, signature) of the file systems BitLocker encrypts, in a decrypted sector 0.
_FS_SIGNATURES = (
    (3, b"NTFS    "),
    (3, b"EXFAT   "),
    (3, b"MSWIN4.1"),
    (82, b"FAT32   "),
    (54, b"FAT16   "),
    (54, b"FAT12   "),
    (3, b"ReFS\0\0\0\0"),
)
# Bytes of the FVEK entry per method as a raw key may be given: data key (and tweak key).
_RAW_KEY_SIZES = {
    fve.METHOD_AES_128_CBC: (16,),
    fve.METHOD_AES_256_CBC: (32,),
    fve.METHOD_AES_128_XTS: (32,),
    fve.METHOD_AES_256_XTS: (64,),
    fve.METHOD_AES_128_CBC_DIFFUSER: (32, 64),
    fve.METHOD_AES_256_CBC_DIFFUSER: (64,),
}
_DERIVABLE = (PASSWORD, RECOVERY_PASSWORD, STARTUP_KEY)


@dataclass(frozen=True, slots=True)
class OwnUnlock:
    """A volume opened by this module: its stream and how it was unlocked.

    Attributes:
        stream: the decrypted volume.
        state: ``unlocked``, ``suspended`` or ``decrypted``.
        unlocked_with: the credential kind (``clear_key``/``none`` when none was needed).
        tried: what each credential that failed did, secret-free.
    """

    stream: FastBdeStream
    state: str
    unlocked_with: str
    tried: tuple[str, ...] = ()


def metadata_facts(metadata: fve.FveMetadata) -> dict[str, object]:
    """The EncryptionInfo facts the metadata gives (what pybde reports otherwise)."""
    return {
        "type": "bitlocker",
        "method": metadata.method_name,
        "protectors": tuple(p.kind for p in metadata.protectors),
        "volume_guid": str(metadata.volume_identifier),
        "description": metadata.description,
        "created": Timestamp.from_filetime(metadata.created) if metadata.created else None,
        "conversion": conversion(metadata),
    }


# FVE states (block header): 1 decrypted, 4 encrypted; others convert between them.
_STATE_NAMES = {1: "decrypted", 2: "switching (dirty)", 3: "paused", 4: "encrypted", 5: "switching"}


def conversion(metadata: fve.FveMetadata) -> str:
    """How far a paused or running conversion got, or "" for a settled volume."""
    if metadata.state == metadata.next_state and metadata.state in (1, 4):
        return ""
    way = "decryption" if metadata.next_state == 1 else "encryption"
    size = metadata.encrypted_volume_size
    done = f"{size:,} bytes from the start encrypted, the rest plain" if size else "size unknown"
    names = (_STATE_NAMES.get(s, str(s)) for s in (metadata.state, metadata.next_state))
    return f"{way} paused or in progress: {done} (FVE state {' to '.join(names)})"


def raw_full_volume_key(text: str, metadata: fve.FveMetadata) -> fve.FullVolumeKey:
    """A full-volume key given as hex (spaces, dashes and colons ignored).

    XTS: data key then tweak key; CBC: the key; diffuser: the FVEK then the tweak key,
    either as two halves of the key size or as the 64-byte FVEK entry.

    Raises:
        CredentialsError: not hex, or not a key size of the volume's method (the message
            never quotes the key).
    """
    cleaned = "".join(c for c in text if c not in " \t-:")
    try:
        raw = binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise CredentialsError("the full-volume key is not hexadecimal") from None
    sizes = _RAW_KEY_SIZES.get(metadata.method)
    if sizes is None:
        raise CredentialsError(f"no full-volume key is used by {metadata.method_name}")
    if len(raw) not in sizes:
        wanted = " or ".join(str(s) for s in sizes)
        raise CredentialsError(
            f"a full-volume key of {len(raw)} bytes does not fit {metadata.method_name} "
            f"({wanted} bytes)"
        )
    if metadata.method == fve.METHOD_AES_128_CBC_DIFFUSER and len(raw) == 32:
        # The FVEK entry keeps each 128-bit key in a 32-byte slot.
        raw = raw[:16] + bytes(16) + raw[16:] + bytes(16)
    return fve.FullVolumeKey(metadata.method, fve.SecretBytes(raw))


def volume_size(raw: ByteStream, metadata: fve.FveMetadata, key: fve.FullVolumeKey | None) -> int:
    """The decrypted volume's size, as libbde gives it: the NTFS size plus its backup
    boot sector, from the decrypted sector 0; else the encrypted stream's own size."""
    from selective_imager.volumes.bitlocker.fast import FastBdeStream

    fallback = max(raw.size, metadata.encrypted_volume_size)
    try:
        head = FastBdeStream(raw, metadata, key, fallback).read_at(0, 512)
    except (SelectiveImagerError, OSError):
        return fallback
    if head[3:11] != b"NTFS    ":
        return fallback
    bps = struct.unpack_from("<H", head, 11)[0]
    total = struct.unpack_from("<Q", head, 0x28)[0]
    return (total + 1) * bps if bps and total else fallback


def decrypts_to_a_file_system(stream: ByteStream) -> bool:
    """True when the decrypted sector 0 carries a known file-system signature."""
    try:
        head = stream.read_at(0, 512)
    except (SelectiveImagerError, OSError):
        return False
    return any(head[o : o + len(sig)] == sig for o, sig in _FS_SIGNATURES)


def key_from_credential(metadata: fve.FveMetadata, cred: Credential) -> fve.FullVolumeKey:
    """The FVEK a credential gives: derived through the metadata, or the raw key itself.

    Raises:
        CredentialsError: the credential does not open the volume (secret-free message).
        UnsupportedEncryptionError: a credential kind with no derivation here.
    """
    if cred.kind == FVEK:
        return raw_full_volume_key(cred.secret, metadata)
    return fve.derive_full_volume_key(metadata, cred.kind, cred.secret)


def stream_for(
    raw: ByteStream, metadata: fve.FveMetadata, key: fve.FullVolumeKey | None
) -> FastBdeStream:
    """The decrypted volume for ``key``, sized as libbde would size it."""
    from selective_imager.volumes.bitlocker.fast import FastBdeStream

    return FastBdeStream(raw, metadata, key, volume_size(raw, metadata, key))


def unlock_with_fvek(raw: ByteStream, metadata: fve.FveMetadata, cred: Credential) -> FastBdeStream:
    """The volume decrypted with a raw full-volume key.

    Raises:
        CredentialsError: the key is malformed or decrypts sector 0 to no file system.
    """
    key = raw_full_volume_key(cred.secret, metadata)
    stream = stream_for(raw, metadata, key)
    if not decrypts_to_a_file_system(stream):
        raise CredentialsError("the full-volume key does not decrypt the boot sector")
    return stream


def needs_credential(metadata: fve.FveMetadata) -> bool:
    """False for a decrypted volume (method none) or a suspended one (clear key)."""
    return metadata.method != fve.METHOD_NONE and not any(
        p.clear_key is not None for p in metadata.protectors
    )


def open_own(
    raw: ByteStream, metadata: fve.FveMetadata, credentials: list[Credential]
) -> OwnUnlock:
    """Unlock with the project's reader only.

    Raises:
        NoCredentialOpenedError: no credential opens the volume; ``tried`` says why,
            credential by credential, without a secret.
    """
    if metadata.method == fve.METHOD_NONE:
        return OwnUnlock(stream_for(raw, metadata, None), EncryptionState.DECRYPTED, "none")
    if any(p.clear_key is not None for p in metadata.protectors):
        key = fve.derive_full_volume_key(metadata, fve.CLEAR_KEY, None)
        return OwnUnlock(stream_for(raw, metadata, key), EncryptionState.SUSPENDED, fve.CLEAR_KEY)
    tried: list[str] = []
    for cred in credentials or []:
        try:
            if cred.kind == FVEK:
                stream = unlock_with_fvek(raw, metadata, cred)
            elif cred.kind in _DERIVABLE:
                stream = stream_for(raw, metadata, key_from_credential(metadata, cred))
            else:
                continue
        except SelectiveImagerError as exc:
            tried.append(f"{cred.describe()}: {short_error(exc)}")
            continue
        return OwnUnlock(stream, EncryptionState.UNLOCKED, cred.kind, tuple(tried))
    raise NoCredentialOpenedError(tuple(tried))


class NoCredentialOpenedError(CredentialsError):
    """No credential opened the volume; ``tried`` says what each did (secret-free)."""

    def __init__(self, tried: tuple[str, ...]) -> None:
        super().__init__("no credential unlocked it")
        self.tried = tried

"""BitLocker FVE metadata: parse it and derive the full-volume encryption key (FVEK).

This is the project's own reader of the BitLocker metadata, used by the OpenSSL fast
path (:mod:`selective_imager.volumes.bitlocker.fast`); pybde still decides whether a credential unlocks
a volume, and the fast path is checked against pybde before it is used.

Layout (integers little-endian, GUIDs in Microsoft ``bytes_le`` order, offsets relative
to the start of the volume)::

    boot sector     "-FVE-FS-" (Vista: jump EB 52 90; Windows 7+: EB 58 90 and the
                    BitLocker GUID at 160, metadata offsets at 176) or "MSWIN4.1"
                    (BitLocker To Go: GUID at 424, metadata offsets at 440)
    block header    64 bytes: "-FVE-FS-", u16 size, u16 version (1 Vista, 2 later),
                    u16 state, u16 next state, u64 encrypted volume size, u32, u32 volume
                    header sectors, 3 x u64 metadata offsets, u64 volume header offset
                    (version 1: the MFT mirror cluster)
    dataset header  48 bytes: u32 size, u32 version 1, u32 header size 48, u32 size copy,
                    volume GUID, u32 next nonce counter, u16 method, u16, FILETIME
    entries         u16 size, u16 role, u16 value type, u16 version, payload

Key chain: a credential opens one volume master key (VMK) entry (stretched password or
recovery password, startup key, or the clear key stored in the entry itself); the VMK
opens the FVEK entry. Both are AES-CCM blobs: 12-byte nonce, 16-byte MAC, ciphertext;
the plaintext is a key entry (u16 key type, u16 flags, key bytes). The MAC is checked
here (libbde does not), so a wrong credential never yields a key.

Secrets (VMK, FVEK, stretched keys, clear keys) are held in :class:`SecretBytes`, whose
``repr`` shows only the length; exception messages never quote a secret.

References:
    - libyal libbde, "BitLocker Drive Encryption (BDE) format".
    - ../shared/NOTES.md, "Building a BitLocker volume from scratch".
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from selective_imager.credentials import PASSWORD, RECOVERY_PASSWORD, STARTUP_KEY
from selective_imager.errors import CredentialsError, EncryptionError, UnsupportedEncryptionError

if TYPE_CHECKING:
    import os

    from selective_imager.streams import ByteStream

FVE_SIGNATURE = b"-FVE-FS-"
TO_GO_SIGNATURE = b"MSWIN4.1"
# {4967d63b-2e29-4ad8-8399-f6a339e3d001} in bytes_le order.
BITLOCKER_IDENTIFIER = bytes.fromhex("3bd66749292ed84a8399f6a339e3d001")
# {92a84d3b-dd80-4d0e-9e4e-b1e3284eaed8}: the identifier Windows leaves on a volume it has
# decrypted ("encrypt on write" information); the metadata offsets stay at 176.
EOW_IDENTIFIER = bytes.fromhex("3b4da89280dd0e4d9e4eb1e3284eaed8")
_VISTA_ENTRY_POINT = b"\xeb\x52\x90"

CLEAR_KEY = "clear_key"  # the credential kind of a suspended volume (no secret needed)

# Boot sector layouts.
LAYOUT_VISTA = "vista"
LAYOUT_WINDOWS_7 = "windows7"
LAYOUT_TO_GO = "to_go"

# Encryption methods (dataset header).
METHOD_NONE = 0x0000
METHOD_AES_128_CBC_DIFFUSER = 0x8000
METHOD_AES_256_CBC_DIFFUSER = 0x8001
METHOD_AES_128_CBC = 0x8002
METHOD_AES_256_CBC = 0x8003
METHOD_AES_128_XTS = 0x8004
METHOD_AES_256_XTS = 0x8005
METHOD_NAMES = {
    METHOD_NONE: "none",
    METHOD_AES_128_CBC_DIFFUSER: "AES-CBC 128 + Elephant diffuser",
    METHOD_AES_256_CBC_DIFFUSER: "AES-CBC 256 + Elephant diffuser",
    METHOD_AES_128_CBC: "AES-CBC 128",
    METHOD_AES_256_CBC: "AES-CBC 256",
    METHOD_AES_128_XTS: "AES-XTS 128",
    METHOD_AES_256_XTS: "AES-XTS 256",
}

# VMK protection types.
PROTECTION_CLEAR_KEY = 0x0000
PROTECTION_TPM = 0x0100
PROTECTION_STARTUP_KEY = 0x0200
PROTECTION_TPM_AND_PIN = 0x0500
PROTECTION_RECOVERY_PASSWORD = 0x0800
PROTECTION_PASSWORD = 0x2000
PROTECTION_NAMES = {
    PROTECTION_CLEAR_KEY: "clear_key",
    PROTECTION_TPM: "tpm",
    PROTECTION_STARTUP_KEY: "startup_key",
    PROTECTION_TPM_AND_PIN: "tpm_and_pin",
    PROTECTION_RECOVERY_PASSWORD: "recovery_password",
    PROTECTION_PASSWORD: "password",
}
_PROTECTION_OF_KIND = {
    PASSWORD: PROTECTION_PASSWORD,
    RECOVERY_PASSWORD: PROTECTION_RECOVERY_PASSWORD,
    STARTUP_KEY: PROTECTION_STARTUP_KEY,
    CLEAR_KEY: PROTECTION_CLEAR_KEY,
}

# Entry roles ("entry types").
ROLE_PROPERTY = 0x0000
ROLE_VMK = 0x0002
ROLE_FVEK = 0x0003
ROLE_VALIDATION = 0x0004
ROLE_STARTUP_KEY = 0x0006
ROLE_DESCRIPTION = 0x0007
ROLE_VOLUME_HEADER_BLOCK = 0x000F

# Entry value types.
VALUE_ERASED = 0x0000
VALUE_KEY = 0x0001
VALUE_UNICODE = 0x0002
VALUE_STRETCH_KEY = 0x0003
VALUE_USE_KEY = 0x0004
VALUE_AES_CCM = 0x0005
VALUE_TPM_ENCODED = 0x0006
VALUE_VALIDATION = 0x0007
VALUE_VMK = 0x0008
VALUE_EXTERNAL_KEY = 0x0009
VALUE_OFFSET_AND_SIZE = 0x000F

# Bytes of each value type's fixed part before its nested entries.
_NESTED_AFTER = {
    VALUE_STRETCH_KEY: 20,  # u16 method, u16 flags, salt
    VALUE_USE_KEY: 4,  # u16 key type, u16 flags
    VALUE_VMK: 28,  # GUID, FILETIME, u16, u16 protection
    VALUE_EXTERNAL_KEY: 24,  # GUID, FILETIME
}

KEY_TYPE_VMK = 0x2003
STRETCH_ROUNDS = 0x100000
_BLOCK_HEADER_SIZE = 64
_DATASET_HEADER_SIZE = 48
_METADATA_AREA_VISTA = 16384
_METADATA_AREA = 65536
_MAX_DEPTH = 4


class SecretBytes:
    """Key material that never shows itself in ``repr``/``str``, logs or tracebacks.

    Use :meth:`reveal` where the bytes are really needed (a cipher).
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The secret bytes."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"<secret {len(self._value)} bytes>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]  # a secret is no dictionary key

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the secret out of the process unannounced.
        raise TypeError("SecretBytes cannot be pickled")


@dataclass(frozen=True, slots=True)
class FullVolumeKey:
    """The FVEK as stored in its key entry, with the method it belongs to.

    Attributes:
        method: the encryption method (``METHOD_*``) of the volume.
        key: every key byte of the FVEK entry (XTS: data key then tweak key; diffuser
            methods: the FVEK in the first 32 bytes, the tweak key in the next 32).
    """

    method: int
    key: SecretBytes

    @property
    def method_name(self) -> str:
        """``AES-XTS 128`` style name of the method."""
        return METHOD_NAMES.get(self.method, f"0x{self.method:04x}")

    def data_key(self) -> bytes:
        """The AES key that en/decrypts sector data.

        Raises:
            UnsupportedEncryptionError: the key is too short for the method or the
                method is unknown.
        """
        raw = self.key.reveal()
        size = _DATA_KEY_SIZES.get(self.method)
        if size is None:
            raise UnsupportedEncryptionError(f"unsupported encryption method {self.method_name}")
        need = 2 * size if self.method in _XTS_METHODS else size
        if len(raw) < need:
            raise UnsupportedEncryptionError(
                f"FVEK of {len(raw)} bytes is too short for {self.method_name}"
            )
        return raw[:size]

    def tweak_key(self) -> bytes:
        """The XTS tweak key, or the Elephant diffuser's sector key.

        Raises:
            UnsupportedEncryptionError: the method has no tweak key or the key is short.
        """
        raw = self.key.reveal()
        size = _DATA_KEY_SIZES.get(self.method, 0)
        if self.method in _XTS_METHODS:
            start = size
        elif self.method in (METHOD_AES_128_CBC_DIFFUSER, METHOD_AES_256_CBC_DIFFUSER):
            start = 32
        else:
            raise UnsupportedEncryptionError(f"{self.method_name} has no tweak key")
        if len(raw) < start + size:
            raise UnsupportedEncryptionError(
                f"FVEK of {len(raw)} bytes is too short for {self.method_name}"
            )
        return raw[start : start + size]


_DATA_KEY_SIZES = {
    METHOD_AES_128_CBC_DIFFUSER: 16,
    METHOD_AES_256_CBC_DIFFUSER: 32,
    METHOD_AES_128_CBC: 16,
    METHOD_AES_256_CBC: 32,
    METHOD_AES_128_XTS: 16,
    METHOD_AES_256_XTS: 32,
}
_XTS_METHODS = (METHOD_AES_128_XTS, METHOD_AES_256_XTS)


@dataclass(frozen=True, slots=True)
class Entry:
    """One FVE metadata entry; ``children`` are the entries nested in its payload."""

    role: int
    value_type: int
    version: int
    payload: bytes = field(repr=False)
    children: tuple[Entry, ...] = ()

    def first(self, value_type: int) -> Entry | None:
        """The first direct child of ``value_type``, or None."""
        return next((c for c in self.children if c.value_type == value_type), None)

    def text(self) -> str:
        """The payload of a UTF-16LE string entry, without the terminating NUL."""
        return self.payload.decode("utf-16-le", errors="replace").split("\0", 1)[0]


@dataclass(frozen=True, slots=True)
class AesCcmKey:
    """An AES-CCM encrypted key: nonce (FILETIME + counter), MAC, ciphertext."""

    nonce: bytes
    mac: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)

    @property
    def nonce_counter(self) -> int:
        """The counter in the last four bytes of the nonce."""
        return int(struct.unpack_from("<I", self.nonce, 8)[0])


@dataclass(frozen=True, slots=True)
class KeyProtector:
    """One VMK entry: a protector and the VMK encrypted for it.

    Attributes:
        identifier: the protector GUID (a startup key file carries the same GUID).
        protection: ``PROTECTION_*`` type.
        created: FILETIME of the protector.
        salt: the stretch-key salt (password and recovery-password protectors).
        encrypted_keys: the AES-CCM blobs directly inside the entry (one holds the VMK).
        clear_key: the unencrypted key of a clear-key protector (suspended volume).
        name: the protector's name property (``DiskPassword``, ``ExternalKey``), if any.
    """

    identifier: uuid.UUID
    protection: int
    created: int
    salt: bytes | None
    encrypted_keys: tuple[AesCcmKey, ...]
    clear_key: SecretBytes | None = None
    name: str = ""

    @property
    def kind(self) -> str:
        """``password``, ``recovery_password``, ``startup_key``, ``clear_key``, ``tpm``..."""
        return PROTECTION_NAMES.get(self.protection, f"0x{self.protection:04x}")


@dataclass(frozen=True, slots=True)
class BootSector:
    """The facts of the BitLocker boot sector.

    Attributes:
        layout: ``vista``, ``windows7`` or ``to_go``.
        bytes_per_sector: the sector size (the XTS data unit).
        sectors_per_cluster: as stored.
        total_sectors: 0 when the boot sector leaves it out.
        metadata_offsets: FVE metadata offsets (Vista: only the first is in the boot
            sector).
        encrypt_on_write: the boot sector carries the "encrypt on write" identifier
            (a decrypted volume, or a used-space-only conversion): parts of the volume
            are described by EOW bitmaps this module does not read.
    """

    layout: str
    bytes_per_sector: int
    sectors_per_cluster: int
    total_sectors: int
    metadata_offsets: tuple[int, ...]
    encrypt_on_write: bool = False


@dataclass(frozen=True, slots=True)
class FveMetadata:
    """One FVE metadata block (block header, dataset header and entries).

    Attributes:
        boot: the boot sector.
        block_offset: where the block that was parsed lies.
        version: block header version: 1 (Windows Vista) or 2 (Windows 7 and later).
        state: current encryption state (1 decrypted, 4 encrypted, others converting).
        next_state: the state being converted to.
        encrypted_volume_size: bytes from the start that are encrypted (0: all).
        metadata_offsets: the three metadata block offsets.
        metadata_area_size: bytes readers show as zeros at each metadata offset.
        volume_header_offset: where the encrypted copy of the first sectors lies
            (version 2).
        volume_header_size: how many bytes from the start are kept there (version 2).
        mft_mirror_cluster: the NTFS MFT mirror cluster (version 1 only).
        volume_identifier: the FVE volume GUID.
        next_nonce_counter: the dataset's next nonce counter.
        method: ``METHOD_*``.
        created: FILETIME of the dataset.
        description: the description entry.
        protectors: every VMK entry, in order.
        fvek: the FVEK entry (encrypted with the VMK), None when there is none.
        entries: every top-level entry, parsed.
    """

    boot: BootSector
    block_offset: int
    version: int
    state: int
    next_state: int
    encrypted_volume_size: int
    metadata_offsets: tuple[int, int, int]
    metadata_area_size: int
    volume_header_offset: int
    volume_header_size: int
    mft_mirror_cluster: int
    volume_identifier: uuid.UUID
    next_nonce_counter: int
    method: int
    created: int
    description: str
    protectors: tuple[KeyProtector, ...]
    fvek: AesCcmKey | None
    entries: tuple[Entry, ...] = field(repr=False)

    @property
    def bytes_per_sector(self) -> int:
        """The sector size from the boot sector."""
        return self.boot.bytes_per_sector

    @property
    def method_name(self) -> str:
        """``AES-XTS 128`` style name of the method."""
        return METHOD_NAMES.get(self.method, f"0x{self.method:04x}")


@dataclass(frozen=True, slots=True)
class ExternalKey:
    """The key of a startup key (.BEK) file and the protector GUID it belongs to."""

    identifier: uuid.UUID
    key: SecretBytes
    created: int = 0


# --------------------------------------------------------------------------- parsing


def parse_boot_sector(data: bytes) -> BootSector:
    """Parse a BitLocker boot sector.

    Raises:
        UnsupportedEncryptionError: not a BitLocker boot sector libbde would accept.
    """
    if len(data) < 512:
        raise UnsupportedEncryptionError("BitLocker boot sector is truncated")
    bps, spc = struct.unpack_from("<HB", data, 11)
    total = struct.unpack_from("<H", data, 19)[0] or struct.unpack_from("<I", data, 32)[0]
    if data[3:11] == FVE_SIGNATURE:
        if data[160:176] in (BITLOCKER_IDENTIFIER, EOW_IDENTIFIER):
            layout = LAYOUT_WINDOWS_7
            offsets: tuple[int, ...] = struct.unpack_from("<3Q", data, 176)
        elif data[0:3] == _VISTA_ENTRY_POINT:
            layout = LAYOUT_VISTA
            if not total:
                total = struct.unpack_from("<Q", data, 40)[0]
            cluster = struct.unpack_from("<Q", data, 56)[0]
            offsets = (cluster * spc * bps,)
        else:
            raise UnsupportedEncryptionError("BitLocker boot sector without identifier")
    elif data[3:11] == TO_GO_SIGNATURE and data[424:440] == BITLOCKER_IDENTIFIER:
        layout = LAYOUT_TO_GO
        offsets = struct.unpack_from("<3Q", data, 440)
    else:
        raise UnsupportedEncryptionError("not a BitLocker boot sector")
    if bps not in (512, 1024, 2048, 4096):
        raise UnsupportedEncryptionError(f"unsupported BitLocker sector size {bps}")
    return BootSector(
        layout,
        bps,
        spc,
        int(total),
        tuple(int(o) for o in offsets),
        encrypt_on_write=layout == LAYOUT_WINDOWS_7 and data[160:176] == EOW_IDENTIFIER,
    )


def parse_entries(data: bytes, depth: int = 0) -> tuple[Entry, ...]:
    """Parse a run of FVE metadata entries (and, recursively, their nested entries).

    Parsing stops at a zero-sized entry or at the end of ``data``.

    Raises:
        EncryptionError: an entry runs past the end of ``data``.
    """
    entries: list[Entry] = []
    pos = 0
    while pos + 8 <= len(data):
        size, role, value_type, version = struct.unpack_from("<HHHH", data, pos)
        if size == 0:
            break  # padding after the last entry
        if size < 8 or pos + size > len(data):
            raise EncryptionError(f"FVE metadata entry at +{pos} has an invalid size {size}")
        payload = data[pos + 8 : pos + size]
        children: tuple[Entry, ...] = ()
        nested_at = _NESTED_AFTER.get(value_type)
        if nested_at is not None and depth < _MAX_DEPTH and len(payload) >= nested_at:
            children = parse_entries(payload[nested_at:], depth + 1)
        entries.append(Entry(role, value_type, version, payload, children))
        pos += size
    return tuple(entries)


def _aes_ccm(entry: Entry) -> AesCcmKey:
    payload = entry.payload
    if len(payload) < 12 + 16 + 1:
        raise EncryptionError("FVE AES-CCM entry is truncated")
    return AesCcmKey(payload[:12], payload[12:28], payload[28:])


def _key_entry(entry: Entry) -> tuple[int, bytes]:
    """(key type, key bytes) of a key (value type 1) entry."""
    if len(entry.payload) < 4:
        raise EncryptionError("FVE key entry is truncated")
    return int(struct.unpack_from("<H", entry.payload, 0)[0]), entry.payload[4:]


def _protector(entry: Entry) -> KeyProtector:
    payload = entry.payload
    if len(payload) < 28:
        raise EncryptionError("FVE VMK entry is truncated")
    identifier = uuid.UUID(bytes_le=payload[:16])
    created, _unknown, protection = struct.unpack_from("<QHH", payload, 16)
    salt = None
    stretch = entry.first(VALUE_STRETCH_KEY)
    if stretch is not None and len(stretch.payload) >= 20:
        salt = stretch.payload[4:20]
    clear_key = None
    plain = entry.first(VALUE_KEY)
    if plain is not None:
        clear_key = SecretBytes(_key_entry(plain)[1])
    name_entry = entry.first(VALUE_UNICODE)
    return KeyProtector(
        identifier=identifier,
        protection=int(protection),
        created=int(created),
        salt=salt,
        encrypted_keys=tuple(_aes_ccm(c) for c in entry.children if c.value_type == VALUE_AES_CCM),
        clear_key=clear_key,
        name=name_entry.text() if name_entry is not None else "",
    )


def parse_metadata_block(block: bytes, boot: BootSector, block_offset: int = 0) -> FveMetadata:
    """Parse one FVE metadata block: block header, dataset header and entries.

    Raises:
        EncryptionError: the block is damaged.
        UnsupportedEncryptionError: an unknown metadata version.
    """
    if len(block) < _BLOCK_HEADER_SIZE + _DATASET_HEADER_SIZE:
        raise EncryptionError("FVE metadata block is truncated")
    if block[:8] != FVE_SIGNATURE:
        raise EncryptionError("FVE metadata block has no -FVE-FS- signature")
    version, state, next_state = struct.unpack_from("<HHH", block, 10)
    offsets = struct.unpack_from("<3Q", block, 32)
    mft_mirror = 0
    if version == 2:
        encrypted_size, _conversion, header_sectors = struct.unpack_from("<QII", block, 16)
        header_offset = struct.unpack_from("<Q", block, 56)[0]
        area_size = _METADATA_AREA
    elif version == 1:
        # Vista: the volume header stays in place, unencrypted. The encrypted size is
        # 0 on a fully encrypted volume and marks the conversion point otherwise
        # (fvevol.sys's state offset, as dissect.fve reads it).
        encrypted_size = struct.unpack_from("<Q", block, 16)[0]
        header_sectors, header_offset = 0, 0
        mft_mirror = struct.unpack_from("<Q", block, 56)[0]
        # The metadata area is 16 KiB rounded up to whole clusters.
        cluster = max(1, boot.bytes_per_sector * boot.sectors_per_cluster)
        area_size = -(-_METADATA_AREA_VISTA // cluster) * cluster
    else:
        raise UnsupportedEncryptionError(f"unsupported FVE metadata version {version}")

    ds = _BLOCK_HEADER_SIZE
    size, ds_version, header_size, size_copy = struct.unpack_from("<IIII", block, ds)
    if ds_version != 1 or header_size != _DATASET_HEADER_SIZE or size != size_copy:
        raise EncryptionError("FVE dataset header is damaged")
    if size < _DATASET_HEADER_SIZE or ds + size > len(block):
        raise EncryptionError("FVE dataset size is out of bounds")
    volume_guid = uuid.UUID(bytes_le=block[ds + 16 : ds + 32])
    next_nonce, method, _method2, created = struct.unpack_from("<IHHQ", block, ds + 32)
    entries = parse_entries(block[ds + _DATASET_HEADER_SIZE : ds + size])

    description = ""
    protectors: list[KeyProtector] = []
    fvek: AesCcmKey | None = None
    header_size_bytes = header_sectors * boot.bytes_per_sector
    for entry in entries:
        if entry.role == ROLE_VMK and entry.value_type == VALUE_VMK:
            protectors.append(_protector(entry))
        elif entry.role == ROLE_FVEK and entry.value_type == VALUE_AES_CCM and fvek is None:
            fvek = _aes_ccm(entry)
        elif entry.role == ROLE_DESCRIPTION and entry.value_type == VALUE_UNICODE:
            description = entry.text()
        elif (
            entry.role == ROLE_VOLUME_HEADER_BLOCK
            and entry.value_type == VALUE_OFFSET_AND_SIZE
            and len(entry.payload) >= 16
        ):
            entry_offset, entry_size = struct.unpack_from("<QQ", entry.payload, 0)
            if version == 2 and entry_offset != header_offset:
                # libbde refuses such a volume too.
                raise EncryptionError("FVE volume header offsets disagree")
            header_offset, header_size_bytes = int(entry_offset), int(entry_size)
    return FveMetadata(
        boot=boot,
        block_offset=block_offset,
        version=int(version),
        state=int(state),
        next_state=int(next_state),
        encrypted_volume_size=int(encrypted_size),
        metadata_offsets=(int(offsets[0]), int(offsets[1]), int(offsets[2])),
        metadata_area_size=area_size,
        volume_header_offset=int(header_offset),
        volume_header_size=int(header_size_bytes) if version == 2 else 0,
        mft_mirror_cluster=int(mft_mirror),
        volume_identifier=volume_guid,
        next_nonce_counter=int(next_nonce),
        method=int(method),
        created=int(created),
        description=description,
        protectors=tuple(protectors),
        fvek=fvek,
        entries=entries,
    )


def read_metadata(stream: ByteStream) -> FveMetadata:
    """Read the boot sector and the first intact FVE metadata block of a volume.

    Raises:
        UnsupportedEncryptionError: not a BitLocker volume, or an unknown version.
        EncryptionError: no metadata copy is readable.
    """
    boot = parse_boot_sector(stream.read_at(0, 512))
    candidates = list(boot.metadata_offsets)
    problems: list[str] = []
    seen: set[int] = set()
    while candidates:
        offset = candidates.pop(0)
        if offset in seen or offset <= 0:
            continue
        seen.add(offset)
        head = stream.read_at(offset, _BLOCK_HEADER_SIZE + _DATASET_HEADER_SIZE)
        if len(head) < _BLOCK_HEADER_SIZE + 4 or head[:8] != FVE_SIGNATURE:
            problems.append(f"no metadata block at 0x{offset:x}")
            continue
        dataset_size = struct.unpack_from("<I", head, _BLOCK_HEADER_SIZE)[0]
        area = _METADATA_AREA_VISTA if boot.layout == LAYOUT_VISTA else _METADATA_AREA
        size = min(_BLOCK_HEADER_SIZE + dataset_size, area)
        block = stream.read_at(offset, size)
        try:
            metadata = parse_metadata_block(block, boot, offset)
        except UnsupportedEncryptionError:
            raise
        except EncryptionError as exc:
            problems.append(f"0x{offset:x}: {exc}")
            # Vista keeps the other offsets only in the block header.
            continue
        return metadata
    detail = "; ".join(problems) or "no metadata offsets"
    raise EncryptionError(f"no readable FVE metadata block ({detail})")


def parse_startup_key(data: bytes) -> ExternalKey:
    """Parse a startup key (.BEK) file: an FVE dataset holding an external key entry.

    Raises:
        CredentialsError: the data is not a startup key file.
    """
    try:
        size, version, header_size, size_copy = struct.unpack_from("<IIII", data, 0)
        if version != 1 or header_size != _DATASET_HEADER_SIZE or size != size_copy:
            raise CredentialsError("not a BitLocker startup key file")
        entries = parse_entries(data[_DATASET_HEADER_SIZE : min(size, len(data))])
    except (struct.error, EncryptionError) as exc:
        raise CredentialsError("not a BitLocker startup key file") from exc
    for entry in entries:
        if entry.value_type != VALUE_EXTERNAL_KEY or len(entry.payload) < 24:
            continue
        key_entry = entry.first(VALUE_KEY)
        if key_entry is None:
            continue
        try:
            _key_type, key = _key_entry(key_entry)
        except EncryptionError as exc:
            raise CredentialsError("startup key file has a damaged key") from exc
        if len(key) != 32:
            raise CredentialsError(f"startup key of {len(key)} bytes, expected 32")
        created = struct.unpack_from("<Q", entry.payload, 16)[0]
        return ExternalKey(uuid.UUID(bytes_le=entry.payload[:16]), SecretBytes(key), created)
    raise CredentialsError("startup key file holds no external key")


def read_startup_key_file(path: str | os.PathLike[str]) -> ExternalKey:
    """Read and parse a startup key (.BEK) file.

    Raises:
        CredentialsError: the file cannot be read or is not a startup key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"startup key file {path}: cannot read") from exc
    return parse_startup_key(data)


# -------------------------------------------------------------------- key derivation


def password_hash(password: str) -> bytes:
    """The stretching input of a user password: SHA256(SHA256(UTF-16LE(password)))."""
    return hashlib.sha256(hashlib.sha256(password.encode("utf-16-le")).digest()).digest()


def recovery_password_hash(recovery_password: str) -> bytes:
    """The stretching input of a 48-digit recovery password.

    Each of the 8 dash-separated groups must be a multiple of 11 below 720896; the
    groups divided by 11 make 8 little-endian u16, whose SHA-256 is returned.

    Raises:
        CredentialsError: the recovery password is malformed (the message does not
            quote it).
    """
    groups = recovery_password.strip().split("-")
    if len(groups) != 8 or not all(len(g) == 6 and g.isascii() and g.isdigit() for g in groups):
        raise CredentialsError("malformed recovery password: expected 8 groups of 6 digits")
    binary = bytearray()
    for index, group in enumerate(groups, 1):
        value = int(group)
        if value % 11 or value >= 720896:
            raise CredentialsError(f"malformed recovery password: group {index} is invalid")
        binary += struct.pack("<H", value // 11)
    return hashlib.sha256(binary).digest()


def stretch_key(initial: bytes, salt: bytes, rounds: int = STRETCH_ROUNDS) -> SecretBytes:
    """BitLocker key stretching: the AES-256 key that wraps a protector's VMK.

    ``last = SHA256(last || initial || salt || u64 round)`` for ``rounds`` rounds from
    32 zero bytes. Each round hashes 88 bytes whose first 64 change, so there is no
    prefix to precompute; a plain loop over hashlib is the fastest pure-Python form
    measured (~0.5 s for the default rounds).
    """
    if len(initial) != 32 or len(salt) != 16:
        raise ValueError("initial hash must be 32 bytes and salt 16 bytes")
    suffix = initial + salt
    sha256 = hashlib.sha256
    pack = struct.Struct("<Q").pack
    last = bytes(32)
    for i in range(rounds):
        last = sha256(last + suffix + pack(i)).digest()
    return SecretBytes(last)


def unwrap_key(blob: AesCcmKey, key: SecretBytes | bytes) -> tuple[int, SecretBytes]:
    """Decrypt and authenticate an AES-CCM key; returns (key type, key bytes).

    Raises:
        CredentialsError: ``key`` is not the key of this blob (the MAC does not match).
        EncryptionError: the plaintext is not a key entry.
    """
    raw = key.reveal() if isinstance(key, SecretBytes) else key
    if len(raw) != 32:
        raise EncryptionError(f"AES-CCM key of {len(raw)} bytes, expected 32")
    try:
        plain = AESCCM(raw, tag_length=16).decrypt(blob.nonce, blob.ciphertext + blob.mac, None)
    except InvalidTag:
        raise CredentialsError("the key does not open this AES-CCM entry") from None
    if len(plain) < 12:
        raise EncryptionError("decrypted key entry is truncated")
    size, _role, value_type, _version = struct.unpack_from("<HHHH", plain, 0)
    if value_type != VALUE_KEY or not 12 <= size <= len(plain):
        raise EncryptionError("decrypted AES-CCM entry is not a key")
    key_type = int(struct.unpack_from("<H", plain, 8)[0])
    return key_type, SecretBytes(plain[12:size])


def _open_vmk(protector: KeyProtector, wrap_key: SecretBytes) -> SecretBytes:
    for blob in protector.encrypted_keys:
        try:
            _key_type, vmk = unwrap_key(blob, wrap_key)
        except CredentialsError:
            continue  # other blobs of the entry are wrapped with other keys
        if len(vmk) != 32:
            raise EncryptionError(f"VMK of {len(vmk)} bytes, expected 32")
        return vmk
    raise CredentialsError(f"the credential does not open {protector.kind} protector")


def volume_master_key(
    metadata: FveMetadata, kind: str, secret: str | bytes | ExternalKey | None = None
) -> SecretBytes:
    """Open the VMK with a credential.

    Args:
        metadata: the volume's metadata.
        kind: ``password``, ``recovery_password``, ``startup_key`` or ``clear_key``.
        secret: the password or recovery password; for a startup key the .BEK path,
            its bytes or a parsed :class:`ExternalKey`; None for the clear key.

    Raises:
        CredentialsError: no protector of that kind, or the credential does not open it.
        UnsupportedEncryptionError: an unknown credential kind.
    """
    protection = _PROTECTION_OF_KIND.get(kind)
    if protection is None:
        raise UnsupportedEncryptionError(f"no key derivation for a {kind} credential")
    candidates = [p for p in metadata.protectors if p.protection == protection]
    if kind == STARTUP_KEY:
        if isinstance(secret, ExternalKey):
            external = secret
        elif isinstance(secret, bytes):
            external = parse_startup_key(secret)
        elif isinstance(secret, str):
            external = read_startup_key_file(secret)
        else:
            raise CredentialsError("a startup key credential needs the key file")
        candidates = [p for p in candidates if p.identifier == external.identifier]
        if not candidates:
            raise CredentialsError("the startup key belongs to no protector of this volume")
        return _open_vmk(candidates[0], external.key)
    if not candidates:
        raise CredentialsError(f"the volume has no {kind.replace('_', ' ')} protector")
    if kind == CLEAR_KEY:
        for protector in candidates:
            if protector.clear_key is not None:
                return _open_vmk(protector, protector.clear_key)
        raise CredentialsError("the clear-key protector holds no key")
    if not isinstance(secret, str):
        raise CredentialsError(f"a {kind.replace('_', ' ')} credential needs text")
    initial = password_hash(secret) if kind == PASSWORD else recovery_password_hash(secret)
    stretched: dict[bytes, SecretBytes] = {}
    for protector in candidates:
        if protector.salt is None:
            continue
        if protector.salt not in stretched:
            stretched[protector.salt] = stretch_key(initial, protector.salt)
        try:
            return _open_vmk(protector, stretched[protector.salt])
        except CredentialsError:
            continue
    raise CredentialsError(f"the {kind.replace('_', ' ')} does not open the volume")


def full_volume_key(metadata: FveMetadata, vmk: SecretBytes) -> FullVolumeKey:
    """Open the FVEK entry with the VMK.

    Raises:
        CredentialsError: the VMK does not open the FVEK entry.
        EncryptionError: the volume has no FVEK entry.
    """
    if metadata.fvek is None:
        raise EncryptionError("the FVE metadata has no FVEK entry")
    _key_type, key = unwrap_key(metadata.fvek, vmk)
    return FullVolumeKey(metadata.method, key)


def derive_full_volume_key(
    metadata: FveMetadata, kind: str, secret: str | bytes | ExternalKey | None = None
) -> FullVolumeKey:
    """Credential → VMK → FVEK (see :func:`volume_master_key`)."""
    return full_volume_key(metadata, volume_master_key(metadata, kind, secret))


def derive_keys(
    metadata: FveMetadata, kind: str, secret: str | bytes | ExternalKey | None = None
) -> tuple[SecretBytes, FullVolumeKey]:
    """Credential → (VMK, FVEK), both authenticated by their AES-CCM tags."""
    vmk = volume_master_key(metadata, kind, secret)
    return vmk, full_volume_key(metadata, vmk)

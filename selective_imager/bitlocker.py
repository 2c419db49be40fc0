"""BitLocker: detect, unlock through pybde, and hand back the decrypted volume.

A pybde volume object must never be shared between threads; each
:class:`BitLockerVolume` owns its own and serialises reads through a lock.

References:
    - libyal libbde, "BitLocker Drive Encryption (BDE) format" (FVE metadata layout).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.credentials import PASSWORD, RECOVERY_PASSWORD, STARTUP_KEY, Credential
from selective_imager.errors import short_error
from selective_imager.models import EncryptionInfo, EncryptionState, Timestamp
from selective_imager.streams import ByteStream, LibyalStream, OverlayStream, RangeStream

if TYPE_CHECKING:
    from selective_imager.credentials import CredentialProvider
    from selective_imager.models import VolumeInfo

FVE_SIGNATURE = b"-FVE-FS-"
# BitLocker To Go volumes keep a FAT32 boot sector ("MSWIN4.1") and carry this GUID.
_TO_GO_GUID = bytes.fromhex("3bd66749292ed84a8399f6a339e3d001")
_METADATA_AREA = 65536

METHOD_NAMES = {
    0x0000: "none",
    0x8000: "AES-CBC 128 + Elephant diffuser",
    0x8001: "AES-CBC 256 + Elephant diffuser",
    0x8002: "AES-CBC 128",
    0x8003: "AES-CBC 256",
    0x8004: "AES-XTS 128",
    0x8005: "AES-XTS 256",
}
PROTECTOR_NAMES = {
    0x0000: "clear_key",
    0x0100: "tpm",
    0x0200: "startup_key",
    0x0500: "tpm_and_pin",
    0x0800: "recovery_password",
    0x2000: "password",
}


@dataclass(slots=True)
class BitLockerVolume:
    """The outcome of opening a BitLocker volume.

    ``stream`` is the decrypted volume when ``info.state`` is not ``locked``.
    """

    info: EncryptionInfo
    stream: ByteStream | None
    _handle: Any = None

    def close(self) -> None:
        """Close the pybde volume."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def is_bitlocker(stream: ByteStream) -> bool:
    """True when ``stream`` starts with a BitLocker boot sector (position-safe)."""
    head = stream.read_at(0, 512)
    if len(head) < 512:
        return False
    if head[3:11] == FVE_SIGNATURE:
        return True
    return head[3:11] == b"MSWIN4.1" and head[424:440] == _TO_GO_GUID


def metadata_offsets(stream: ByteStream) -> tuple[int, ...]:
    """The three FVE metadata block offsets from the boot sector (Windows 7+ layout)."""
    head = stream.read_at(0, 512)
    if head[3:11] == FVE_SIGNATURE:
        offsets = struct.unpack_from("<3Q", head, 176)
    else:  # BitLocker To Go keeps them at 440
        offsets = struct.unpack_from("<3Q", head, 440)
    return tuple(int(o) for o in offsets)


def _metadata_block(stream: ByteStream, offset: int) -> bytes | None:
    """The FVE metadata block (header + dataset) at ``offset``, or None if unreadable."""
    head = stream.read_at(offset, 72)
    if len(head) < 72 or head[:8] != FVE_SIGNATURE:
        return None
    dataset_size = struct.unpack_from("<I", head, 64)[0]
    size = min(64 + dataset_size, _METADATA_AREA)
    block = stream.read_at(offset, size)
    return block if len(block) == size else None


def _repair_overlay(stream: ByteStream) -> tuple[ByteStream, str] | None:
    """Present the first readable metadata block where another copy is unreadable.

    libbde refuses a volume when any of the three copies is missing (a truncated or
    damaged disk). Nothing is written: reads at the damaged offsets return the copy.
    """
    offsets = metadata_offsets(stream)
    blocks = [_metadata_block(stream, off) for off in offsets]
    good = next((b for b in blocks if b is not None), None)
    if good is None:
        return None
    patches = {off: good for off, b in zip(offsets, blocks, strict=True) if b is None}
    if not patches:
        return None
    end = max(off + _METADATA_AREA for off in patches)
    overlay = OverlayStream(stream, patches, size=max(stream.size, end))
    damaged = ", ".join(
        f"copy {i + 1} at 0x{off:x}" for i, off in enumerate(offsets) if off in patches
    )
    return overlay, (
        f"FVE metadata {damaged} unreadable; the first readable copy was presented in "
        "its place (read overlay, nothing written)"
    )


def _encryption_state(stream: ByteStream, method: int, protectors: tuple[str, ...]) -> str:
    if method == 0:
        return EncryptionState.DECRYPTED
    if "clear_key" in protectors:
        return EncryptionState.SUSPENDED
    return EncryptionState.UNLOCKED


def open_bitlocker(
    stream: ByteStream,
    provider: CredentialProvider | None,
    volume: VolumeInfo | None = None,
) -> BitLockerVolume:
    """Open the BitLocker volume on ``stream`` and unlock it if a credential works.

    A wrong or missing credential is not an error: the result says ``locked`` and why.
    """
    import pybde

    base: ByteStream = RangeStream(stream, 0, stream.size)  # own position for pybde
    fallback = ""
    try:
        handle = _open_handle(pybde, base, None)
    except OSError as exc:
        repaired = _repair_overlay(stream)
        if repaired is None:
            return BitLockerVolume(
                EncryptionInfo(
                    type="bitlocker",
                    state=EncryptionState.LOCKED,
                    reason=f"cannot read the BitLocker metadata: {short_error(exc)}",
                ),
                None,
            )
        base, fallback = repaired
        try:
            handle = _open_handle(pybde, base, None)
        except OSError as exc2:
            return BitLockerVolume(
                EncryptionInfo(
                    type="bitlocker",
                    state=EncryptionState.LOCKED,
                    fallback=fallback,
                    reason=f"cannot read the BitLocker metadata: {short_error(exc2)}",
                ),
                None,
            )
    method = int(handle.get_encryption_method() or 0)
    protectors = tuple(
        PROTECTOR_NAMES.get(
            int(handle.get_key_protector(i).type), f"0x{handle.get_key_protector(i).type:04x}"
        )
        for i in range(handle.get_number_of_key_protectors())
    )
    created_raw = handle.get_creation_time_as_integer()
    facts: dict[str, Any] = {
        "type": "bitlocker",
        "method": METHOD_NAMES.get(method, f"0x{method:04x}"),
        "protectors": protectors,
        "volume_guid": str(handle.get_volume_identifier() or ""),
        "description": str(handle.get_description() or ""),
        "created": Timestamp.from_filetime(created_raw) if created_raw else None,
        "fallback": fallback,
    }
    unlocked_with = ""
    tried: list[str] = []
    if not handle.is_locked():
        unlocked_with = (
            "clear_key" if "clear_key" in protectors else ("none" if method == 0 else "")
        )
    else:
        credentials = list(provider.credentials_for(volume)) if provider is not None else []
        for cred in credentials:
            ok, handle, why = _try_credential(pybde, base, handle, cred)
            tried.append(f"{cred.describe()}: {why}" if why else cred.describe())
            if ok:
                unlocked_with = cred.kind
                break
    if handle.is_locked():
        handle.close()
        if not tried:
            reason = "no credential given"
        else:
            reason = f"no credential unlocked it (tried: {'; '.join(tried)})"
        wanted = ", ".join(p.replace("_", " ") for p in protectors) or "unknown"
        return BitLockerVolume(
            EncryptionInfo(
                state=EncryptionState.LOCKED,
                reason=f"{reason}; protectors: {wanted}",
                **facts,
            ),
            None,
        )
    size = int(handle.get_size())
    state = _encryption_state(stream, method, protectors)
    info = EncryptionInfo(state=EncryptionState(state), unlocked_with=unlocked_with, **facts)
    return BitLockerVolume(info, _BdeStream(handle, size), handle)


def _open_handle(pybde: Any, stream: ByteStream, startup_key: str | None) -> Any:
    handle = pybde.volume()
    if startup_key is not None:
        # libbde only uses a startup key read before the volume is opened.
        handle.read_startup_key(startup_key)
    stream.seek(0)
    handle.open_file_object(stream)
    return handle


def _try_credential(
    pybde: Any, stream: ByteStream, handle: Any, cred: Credential
) -> tuple[bool, Any, str]:
    """Try one credential; returns (unlocked, handle to keep using, why it failed)."""
    if cred.kind == STARTUP_KEY:
        try:
            fresh = _open_handle(pybde, stream, cred.secret)
        except OSError:
            return False, handle, "not a readable startup key"
        if fresh.is_locked():
            fresh.close()
            return False, handle, "does not match"
        handle.close()
        return True, fresh, ""
    try:
        if cred.kind == PASSWORD:
            handle.set_password(cred.secret)
        elif cred.kind == RECOVERY_PASSWORD:
            handle.set_recovery_password(cred.secret)
    except OSError:
        # libbde's message may quote the input, so it is not passed on.
        return False, handle, f"malformed {cred.kind.replace('_', ' ')}"
    try:
        ok = bool(handle.unlock()) and not handle.is_locked()
    except OSError:
        return False, handle, "unlock failed"
    return ok, handle, "" if ok else "wrong"


class _BdeStream(LibyalStream):
    """The decrypted volume."""

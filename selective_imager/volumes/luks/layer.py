"""LUKS1 and LUKS2 as a volume layer: the decrypted data segments are the one child.

References:
    - LUKS1 On-Disk Format Specification and LUKS2 On-Disk Format Specification
      (cryptsetup project); libyal libluksde, "Linux Unified Key Setup (LUKS) Disk
      Encryption format".

The project's own reader (:mod:`.header`, :mod:`.keyslots`, :mod:`.cipher`) opens both
versions. libluksde (pyluksde) reads LUKS1 only; on every LUKS1 volume it is unlocked with
the same credential and the same windows are decrypted by both: if they differ, pyluksde
decrypts the volume and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager.credentials import LUKS_KEY_FILE, LUKS_PASSPHRASE, Credential
from selective_imager.errors import EncryptionError, UnsupportedEncryptionError, short_error
from selective_imager.models import EncryptionInfo, EncryptionState, LayerRef
from selective_imager.streams import ByteStream, LibyalStream
from selective_imager.volumes.base import Child, LayerResult, VolumeLayer
from selective_imager.volumes.luks.cipher import sector_cipher
from selective_imager.volumes.luks.header import looks_like_luks, read_header
from selective_imager.volumes.luks.keyslots import unlock

if TYPE_CHECKING:
    from selective_imager.credentials import CredentialProvider
    from selective_imager.models import VolumeInfo
    from selective_imager.volumes.base import LayerContext
    from selective_imager.volumes.luks.cipher import SectorCipher
    from selective_imager.volumes.luks.header import LuksHeader, Segment
    from selective_imager.volumes.luks.keyslots import VolumeKey

KINDS = (LUKS_PASSPHRASE, LUKS_KEY_FILE)
DECRYPTOR_OWN = "openssl"
DECRYPTOR_PYLUKSDE = "pyluksde"
# Bytes per raw read while decrypting (1-4 MiB measured best for the BitLocker path).
_CHUNK = 4 << 20
# The windows compared with pyluksde: this many bytes at the start, middle and end.
_WINDOW = 64 << 10
_MAX_SECTOR = 4096


@dataclass(frozen=True, slots=True)
class _Run:
    """One data segment as it appears in the decrypted volume."""

    start: int  # logical offset in the child
    size: int
    offset: int  # physical offset on the LUKS device
    first_iv: int  # IV number of the segment's first sector (512-byte units: iv_tweak)
    engine: SectorCipher | None  # None: stored in the clear (linear)
    sector_size: int


class LuksStream(ByteStream):
    """The decrypted LUKS volume: its data segments, one after the other."""

    def __init__(self, raw: ByteStream, runs: list[_Run]) -> None:
        super().__init__(sum(r.size for r in runs))
        self._raw = raw
        self._runs = runs

    def __repr__(self) -> str:
        return f"LuksStream(size={self.size}, segments={len(self._runs)})"

    def _read_at(self, offset: int, size: int) -> bytes:
        end = offset + size
        parts = [
            self._read_run(run, lo - run.start, hi - run.start)
            for run in self._runs
            if (lo := max(offset, run.start)) < (hi := min(end, run.start + run.size))
        ]
        # One part is the usual case: no copy to join it.
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_run(self, run: _Run, lo: int, hi: int) -> bytes:
        ss = run.sector_size
        first, last = lo - lo % ss, hi + (-hi) % ss
        pieces = []
        for start in range(first, last, _CHUNK):
            length = min(_CHUNK, last - start)
            data = self._raw.read_at(run.offset + start, length)
            if len(data) < length:
                raise OSError(
                    f"LUKS ciphertext at byte {run.offset + start + len(data)} cannot be read"
                )
            if run.engine is not None:
                data = run.engine.decrypt(data, run.first_iv + start // 512)
            pieces.append(data)
        whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if lo == first and hi == last:
            return whole
        return whole[lo - first : hi - first]


@dataclass(slots=True)
class LuksVolume:
    """An opened (or locked) LUKS volume."""

    info: EncryptionInfo
    stream: ByteStream | None
    details: dict[str, Any] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Close pyluksde, if it was kept."""
        for handle in self.handles:
            handle.close()
        self.handles.clear()


def _runs(header: LuksHeader, raw: ByteStream, key: bytes) -> tuple[list[_Run], list[str]]:
    """The child's layout; notes say where the image ends before a segment does."""
    runs: list[_Run] = []
    notes: list[str] = []
    start = 0
    for seg in header.segments:
        ss = seg.sector_size
        available = max(0, raw.size - seg.offset)
        size = available if seg.size is None else min(seg.size, available)
        if seg.size is not None and seg.size > available:
            notes.append(
                f"segment {seg.index} is cut short: {seg.size} bytes declared, "
                f"{available} in the image (truncated)"
            )
        if size % ss:
            notes.append(f"segment {seg.index}: the last {size % ss} bytes are not a whole sector")
            size -= size % ss
        engine = _engine(seg, key)
        runs.append(_Run(start, size, seg.offset, seg.iv_tweak, engine, ss))
        start += size
    return runs, notes


def _engine(seg: Segment, key: bytes) -> SectorCipher | None:
    if seg.kind == "linear":
        return None
    if seg.kind != "crypt":
        raise UnsupportedEncryptionError(
            f"segment {seg.index} of type {seg.kind!r} is not supported"
        )
    if seg.integrity:
        # dm-integrity interleaves tags with the data: the sectors are not where a plain
        # crypt segment has them.
        raise UnsupportedEncryptionError(
            f"segment {seg.index} has dm-integrity ({seg.integrity}): not supported"
        )
    return sector_cipher(seg.cipher, key, seg.sector_size)


def _facts(header: LuksHeader) -> dict[str, Any]:
    crypt = [s for s in header.segments if s.kind == "crypt"]
    return {
        "version": header.version,
        "uuid": header.uuid,
        "label": header.label,
        "subsystem": header.subsystem or None,
        "cipher": header.cipher,
        "key_bits": header.key_size * 8,
        "sector_size": crypt[0].sector_size if crypt else None,
        "payload_offset": header.segments[0].offset if header.segments else None,
        "keyslots": [slot.facts() for slot in header.keyslots],
        "segments": [
            {
                "index": s.index,
                "type": s.kind,
                "offset": s.offset,
                "size": s.size if s.size is not None else "dynamic",
                "cipher": s.cipher,
                "sector_size": s.sector_size,
                "iv_tweak": s.iv_tweak,
            }
            for s in header.segments
        ],
        "header_copy": header.copy,
        "notes": list(header.notes),
        "requirements": list(header.requirements),
    }


def _secret(cred: Credential) -> bytes:
    """The bytes cryptsetup would use: the passphrase in UTF-8, or a key file's content.

    Raises:
        OSError: the key file cannot be read.
    """
    if cred.kind == LUKS_KEY_FILE:
        return Path(cred.secret).read_bytes()
    return cred.secret.encode("utf-8")


def _try(
    header: LuksHeader, stream: ByteStream, credentials: list[Credential]
) -> tuple[VolumeKey | None, Credential | None, list[str]]:
    tried: list[str] = []
    for cred in credentials:
        try:
            secret = _secret(cred)
        except OSError:
            tried.append(f"{cred.describe()}: cannot read the key file")
            continue
        outcomes = unlock(header, stream, secret)
        key = next((o.key for o in outcomes if o.key is not None), None)
        if key is not None:
            return key, cred, tried
        problems = sorted({o.problem for o in outcomes if o.problem != "wrong"})
        tried.append(
            f"{cred.describe()}: wrong" + (f" ({'; '.join(problems)})" if problems else "")
        )
    return None, None, tried


def open_luks(
    stream: ByteStream, provider: CredentialProvider | None, volume: VolumeInfo | None
) -> LuksVolume:
    """Read the header, unlock with the first credential a key slot accepts, decrypt."""
    try:
        header = read_header(stream)
    except EncryptionError as exc:
        info = EncryptionInfo(type="luks", state=EncryptionState.LOCKED, reason=str(exc))
        return LuksVolume(info, None)
    details = _facts(header)
    facts: dict[str, Any] = {
        "type": "luks",
        "method": f"{header.cipher} {header.key_size * 8}-bit",
        "protectors": tuple(slot.describe() for slot in header.keyslots),
        "volume_guid": header.uuid,
        "description": header.label,
        "fallback": "; ".join(n for n in header.notes if "header" in n),
    }
    credentials = (
        [c for c in provider.credentials_for(volume, KINDS) if c.kind in KINDS]
        if provider is not None
        else []
    )
    key, cred, tried = _try(header, stream, credentials)
    if key is None or cred is None:
        reason = (
            f"no credential unlocked it (tried: {'; '.join(tried)})"
            if tried
            else "no credential given"
        )
        slots = ", ".join(s.describe() for s in header.keyslots) or "no active key slot"
        info = EncryptionInfo(state=EncryptionState.LOCKED, reason=f"{reason}; {slots}", **facts)
        return LuksVolume(info, None, details)
    others = [
        s.index
        for s in header.segments
        if s.kind == "crypt"
        and (d := header.segment_digest(s)) is not None
        and d.index != key.digest
    ]
    try:
        if others:
            raise EncryptionError(
                f"segments {others} use another volume key (a reencryption in progress)"
            )
        runs, notes = _runs(header, stream, key.key)
    except EncryptionError as exc:
        info = EncryptionInfo(state=EncryptionState.LOCKED, reason=str(exc), **facts)
        return LuksVolume(info, None, details)
    details["notes"] += notes
    details["unlocked_keyslot"] = key.keyslot
    own = LuksStream(stream, runs)
    unlocked_with = f"{cred.kind} (keyslot {key.keyslot})"
    if header.version != 1:
        info = EncryptionInfo(
            state=EncryptionState.UNLOCKED,
            unlocked_with=unlocked_with,
            decryptor=DECRYPTOR_OWN,
            decryptor_note="LUKS2: libluksde reads LUKS1 only, so nothing cross-checks it",
            **facts,
        )
        return LuksVolume(info, own, details)
    chosen, handles, note = _cross_check(stream, own, cred)
    details["cross_check"] = note
    info = EncryptionInfo(
        state=EncryptionState.UNLOCKED,
        unlocked_with=unlocked_with,
        decryptor=DECRYPTOR_OWN if chosen is own else DECRYPTOR_PYLUKSDE,
        decryptor_note="" if chosen is own else note,
        **facts,
    )
    return LuksVolume(info, chosen, details, handles)


def _windows(size: int) -> list[tuple[int, int]]:
    if size <= 3 * _WINDOW:
        return [(0, size)]
    middle = (size // 2) - (size // 2) % 4096
    return [(0, _WINDOW), (middle, _WINDOW), (size - _WINDOW, _WINDOW)]


def _cross_check(
    raw: ByteStream, own: LuksStream, cred: Credential
) -> tuple[ByteStream, list[Any], str]:
    """Unlock pyluksde with the same credential; compare the start, middle and end.

    Returns the stream to use, the handles to close, and what the check found.
    """
    import pyluksde

    try:
        text = cred.secret if cred.kind == LUKS_PASSPHRASE else _secret(cred).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        # pyluksde takes text passwords only; its set_key cannot help: the binding
        # passes the key size in bits where libluksde expects bytes, so every key is
        # refused ("unsupported master key size", libluksde-python 20240114).
        return (
            own,
            [],
            "pyluksde takes text passphrases only (a binary key file): not cross-checked",
        )
    handle = pyluksde.volume()
    try:
        handle.open_file_object(raw)
        handle.set_password(text)
        if not handle.unlock() or handle.is_locked():
            handle.close()
            return own, [], "pyluksde did not unlock it with the same credential: not cross-checked"
        size = int(handle.get_size())
    except (OSError, TypeError, ValueError) as exc:
        handle.close()
        return own, [], f"pyluksde could not open it ({short_error(exc)}): not cross-checked"
    theirs = LibyalStream(handle, size)
    # pyluksde also counts a partial last sector (a truncated image), which no reader
    # can decrypt; any other difference in size is a disagreement.
    partial = size - own.size
    if partial and not 0 < partial < _MAX_SECTOR:
        return (
            theirs,
            [handle],
            f"own reader's size {own.size} differs from pyluksde's {size}: pyluksde used",
        )
    compared = 0
    for start, length in _windows(own.size):
        try:
            mine, other = own.read_at(start, length), theirs.read_at(start, length)
        except OSError as exc:
            return (
                theirs,
                [handle],
                f"own reader failed at {start} ({short_error(exc)}): pyluksde used",
            )
        if mine != other:
            return theirs, [handle], f"own reader differs from pyluksde at {start}: pyluksde used"
        compared += length
    handle.close()
    how = "passphrase" if cred.kind == LUKS_PASSPHRASE else "key file"
    windows = len(_windows(own.size))
    note = f"equal to pyluksde (same {how}) on {compared} bytes in {windows} windows"
    if partial:
        note += f"; pyluksde also counts the {partial} bytes of a partial last sector"
    return own, [], note


class LuksLayer(VolumeLayer):
    """A LUKS1 or LUKS2 volume, unlocked with a passphrase or key file."""

    name = "luks"
    kind = "encryption"

    @classmethod
    def detect(cls, stream: ByteStream, context: LayerContext) -> bool:
        """``LUKS\\xba\\xbe`` at 0, or a LUKS2 secondary header where one may lie."""
        return looks_like_luks(stream)

    @classmethod
    def open_layer(cls, stream: ByteStream, context: LayerContext) -> LayerResult:
        """Unlock; a volume no credential opens is reported locked, with the reason."""
        volume = context.volume if context.volume.scheme != "none" else None
        luks = open_luks(stream, context.credentials, volume)
        info = luks.info
        details = {"luks": luks.details} if luks.details else {}
        if luks.stream is None:
            return LayerResult(
                encryption=info, details=details, error=f"LUKS volume locked: {info.reason}"
            )
        child = Child(luks.stream, LayerRef("luks", 0, 0, info.volume_guid))
        return LayerResult(children=[child], encryption=info, details=details, handles=[luks])

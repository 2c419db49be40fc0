"""LUKS1 and LUKS2 headers read into one secret-free description.

References:
    - Clemens Fruhwirth, "LUKS1 On-Disk Format Specification", version 1.2.3
      (cryptsetup project).
    - Milan Broz, "LUKS2 On-Disk Format Specification", version 1.1.x (cryptsetup project).
    - libyal libluksde, "Linux Unified Key Setup (LUKS) Disk Encryption format".

LUKS1 is one big-endian 592-byte header with eight key slots. LUKS2 is a 4 KiB binary
header followed by a JSON area, stored twice (the secondary copy, magic ``SKUL\\xba\\xbe``,
right after the primary); each copy carries a SHA-256 over itself. Both are mapped here to
the same :class:`LuksHeader`: key slots (where the AF-split volume key lies and how its
key is derived), digests (how a recovered volume key is recognised) and data segments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from selective_imager.errors import EncryptionError

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream

MAGIC = b"LUKS\xba\xbe"
MAGIC_SECONDARY = b"SKUL\xba\xbe"
SECTOR = 512
# LUKS1: magic, version, cipher name, cipher mode, hash, payload offset (sectors), key
# bytes, MK digest, its salt and iterations, UUID; then 8 key slots of 48 bytes.
_LUKS1 = struct.Struct(">6sH32s32s32sII20s32sI40s")
_LUKS1_SLOT = struct.Struct(">II32sII")
_LUKS1_SLOTS_AT = 208
_LUKS1_ACTIVE = 0x00AC71F3
_LUKS1_DIGEST_SIZE = 20
# LUKS2 binary header: magic, version, header size, sequence id, label, checksum
# algorithm, salt, UUID, subsystem, header offset; the checksum at 448.
_LUKS2 = struct.Struct(">6sHQQ48s32s64s40s48sQ")
_LUKS2_CSUM_AT = 448
_LUKS2_CSUM_SIZE = 64
_LUKS2_BINARY = 4096
# Where a secondary LUKS2 header may lie (the specification's list of JSON-area sizes).
SECONDARY_OFFSETS = tuple(0x4000 << i for i in range(9))
_MAX_HEADER = 4 << 20
# Sanity bounds against damaged headers (cryptsetup writes 4000 stripes, keys <= 512 bits,
# PBKDF2 counts in the millions, Argon2 at most 4 GiB): key material stays below 8 MiB.
_MAX_STRIPES = 1 << 16
_MAX_KEY = 128
_MAX_ITERATIONS = 1 << 32
_MAX_ARGON2_KIB = 4 << 20


@dataclass(frozen=True, slots=True)
class Keyslot:
    """Where one key slot keeps its copy of the volume key, and how to open it.

    Attributes:
        index: slot number.
        kdf: ``pbkdf2``, ``argon2i`` or ``argon2id``.
        hash: the PBKDF2 hash (empty for Argon2).
        iterations: PBKDF2 iterations, or the Argon2 time cost.
        memory_kib: Argon2 memory cost in KiB (0 for PBKDF2).
        parallelism: Argon2 lanes (0 for PBKDF2).
        salt: the KDF salt.
        key_size: bytes of the volume key it holds.
        area_offset: byte offset of the AF-split key material.
        area_size: bytes of that area.
        area_cipher: cipher of the area, ``aes-xts-plain64`` form.
        area_key_size: bytes of the key the KDF must give.
        stripes: AF stripes.
        af_hash: hash of the AF diffusion.
        priority: LUKS2 priority (0 ignore, 1 normal, 2 high); 1 for LUKS1.
    """

    index: int
    kdf: str
    hash: str
    iterations: int
    memory_kib: int
    parallelism: int
    salt: bytes = field(repr=False)
    key_size: int
    area_offset: int
    area_size: int
    area_cipher: str
    area_key_size: int
    stripes: int
    af_hash: str
    priority: int = 1

    def problem(self) -> str:
        """Why the slot's numbers cannot be right (a damaged header), or ""."""
        if not 0 < self.key_size <= _MAX_KEY or not 0 < self.area_key_size <= _MAX_KEY:
            return f"key size {self.key_size}/{self.area_key_size} bytes out of range"
        if not 0 < self.stripes <= _MAX_STRIPES:
            return f"{self.stripes} AF stripes out of range"
        if not 0 < self.iterations <= _MAX_ITERATIONS:
            return f"{self.iterations} KDF iterations out of range"
        if self.kdf != "pbkdf2" and not (
            0 < self.memory_kib <= _MAX_ARGON2_KIB and 0 < self.parallelism <= 255
        ):
            return f"Argon2 memory {self.memory_kib} KiB / {self.parallelism} lanes out of range"
        return ""

    def describe(self) -> str:
        """``keyslot 0 (argon2id)``."""
        return f"keyslot {self.index} ({self.kdf})"

    def facts(self) -> dict[str, Any]:
        """Secret-free facts for reports (the salt is not secret but is left out)."""
        out: dict[str, Any] = {"index": self.index, "kdf": self.kdf, "key_bits": self.key_size * 8}
        if self.kdf == "pbkdf2":
            out |= {"hash": self.hash, "iterations": self.iterations}
        else:
            out |= {
                "time": self.iterations,
                "memory_kib": self.memory_kib,
                "parallelism": self.parallelism,
            }
        out |= {"area_cipher": self.area_cipher, "af_stripes": self.stripes}
        return out


@dataclass(frozen=True, slots=True)
class Digest:
    """How a volume key is recognised: PBKDF2 of the key equals ``value``."""

    index: int
    hash: str
    iterations: int
    salt: bytes = field(repr=False)
    value: bytes = field(repr=False)
    keyslots: tuple[int, ...]
    segments: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of the data area.

    Attributes:
        index: segment number.
        kind: ``crypt`` or ``linear`` (plain).
        offset: byte offset on the LUKS device.
        size: bytes, or None for "up to the end of the device".
        iv_tweak: added to the sector number of the IV, in 512-byte sectors.
        cipher: ``aes-xts-plain64`` form (empty for linear).
        sector_size: encryption sector size (512 or 4096).
        integrity: the dm-integrity algorithm of an authenticated segment ("" if none).
    """

    index: int
    kind: str
    offset: int
    size: int | None
    iv_tweak: int
    cipher: str
    sector_size: int
    integrity: str = ""


@dataclass(frozen=True, slots=True)
class LuksHeader:
    """One LUKS header, version 1 or 2, read from the copy that was usable.

    Attributes:
        version: 1 or 2.
        uuid: the volume UUID.
        label: the LUKS2 label ("" for LUKS1).
        subsystem: the LUKS2 subsystem.
        keyslots: the active key slots, in slot order.
        digests: the volume-key digests.
        segments: the data segments, in device order.
        metadata_size: bytes the header area takes (one copy for LUKS2).
        copy: ``primary`` or ``secondary``: the copy read.
        notes: what was wrong with the other copy, or other remarks.
        requirements: LUKS2 mandatory requirements (``online-reencrypt``...).
    """

    version: int
    uuid: str
    label: str
    subsystem: str
    keyslots: tuple[Keyslot, ...]
    digests: tuple[Digest, ...]
    segments: tuple[Segment, ...]
    metadata_size: int
    copy: str = "primary"
    notes: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()

    @property
    def cipher(self) -> str:
        """The first crypt segment's cipher (``aes-xts-plain64``)."""
        return next((s.cipher for s in self.segments if s.kind == "crypt"), "")

    @property
    def key_size(self) -> int:
        """Bytes of the volume key of the first crypt segment."""
        digest = self.segment_digest(next((s for s in self.segments if s.kind == "crypt"), None))
        slot = next((k for k in self.keyslots if digest and k.index in digest.keyslots), None)
        return slot.key_size if slot is not None else 0

    def segment_digest(self, segment: Segment | None) -> Digest | None:
        """The digest that recognises the key of ``segment``."""
        if segment is None:
            return None
        return next((d for d in self.digests if segment.index in d.segments), None)


def looks_like_luks(stream: ByteStream) -> bool:
    """A LUKS1/LUKS2 primary magic at 0, or a LUKS2 secondary one (damaged primary)."""
    head = stream.read_at(0, 8)
    if head[:6] == MAGIC and head[6:8] in (b"\0\1", b"\0\2"):
        return True
    return any(stream.read_at(off, 8) == MAGIC_SECONDARY + b"\0\2" for off in SECONDARY_OFFSETS)


def read_header(stream: ByteStream) -> LuksHeader:
    """Read the LUKS header of ``stream`` (LUKS2: the newest valid copy).

    Raises:
        EncryptionError: no copy of the header is readable.
    """
    head = stream.read_at(0, 8)
    if head[:6] == MAGIC and head[6:8] == b"\0\1":
        return _read_luks1(stream)
    return _read_luks2(stream)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def _read_luks1(stream: ByteStream) -> LuksHeader:
    raw = stream.read_at(0, _LUKS1_SLOTS_AT + 8 * _LUKS1_SLOT.size)
    if len(raw) < _LUKS1_SLOTS_AT + 8 * _LUKS1_SLOT.size:
        raise EncryptionError("LUKS1 header is cut short (truncated image)")
    (_, _, name, mode, hash_spec, payload, key_bytes, mk_digest, mk_salt, mk_iter, uuid) = (
        _LUKS1.unpack_from(raw)
    )
    cipher = f"{_text(name)}-{_text(mode)}"
    hash_name = _text(hash_spec)
    if not 0 < key_bytes <= 128:
        raise EncryptionError(f"LUKS1 header: key size {key_bytes} bytes is out of range")
    slots: list[Keyslot] = []
    notes: list[str] = []
    for i in range(8):
        active, iterations, salt, km_offset, stripes = _LUKS1_SLOT.unpack_from(
            raw, _LUKS1_SLOTS_AT + i * _LUKS1_SLOT.size
        )
        if active != _LUKS1_ACTIVE:
            continue
        area = -(-key_bytes * stripes // SECTOR) * SECTOR
        slot = Keyslot(
            index=i,
            kdf="pbkdf2",
            hash=hash_name,
            iterations=iterations,
            memory_kib=0,
            parallelism=0,
            salt=salt,
            key_size=key_bytes,
            area_offset=km_offset * SECTOR,
            area_size=area,
            area_cipher=cipher,
            area_key_size=key_bytes,
            stripes=stripes,
            af_hash=hash_name,
        )
        problem = slot.problem()
        if problem:
            notes.append(f"keyslot {i} ignored: {problem} (damaged header?)")
        else:
            slots.append(slot)
    digest = Digest(
        0, hash_name, mk_iter, mk_salt, mk_digest[:_LUKS1_DIGEST_SIZE], tuple(range(8)), (0,)
    )
    segment = Segment(0, "crypt", payload * SECTOR, None, 0, cipher, SECTOR)
    return LuksHeader(
        version=1,
        uuid=_text(uuid),
        label="",
        subsystem="",
        keyslots=tuple(slots),
        digests=(digest,),
        segments=(segment,),
        metadata_size=payload * SECTOR,
        notes=tuple(notes),
    )


@dataclass(frozen=True, slots=True)
class _Copy:
    """One LUKS2 header copy: its sequence id and parsed JSON, or why it is unusable."""

    offset: int
    seqid: int = 0
    binary: tuple[Any, ...] = ()
    metadata: dict[str, Any] | None = None
    problem: str = ""


def _read_copy(stream: ByteStream, offset: int, magic: bytes) -> _Copy:
    raw = stream.read_at(offset, _LUKS2_BINARY)
    if len(raw) < _LUKS2_BINARY:
        return _Copy(offset, problem="cut short (truncated image)")
    fields = _LUKS2.unpack_from(raw)
    if fields[0] != magic or fields[1] != 2:
        return _Copy(offset, problem="no LUKS2 signature")
    hdr_size, seqid, hdr_offset = fields[2], fields[3], fields[9]
    if not _LUKS2_BINARY < hdr_size <= _MAX_HEADER or hdr_offset != offset:
        return _Copy(offset, problem=f"implausible header size {hdr_size} or offset {hdr_offset}")
    area = bytearray(stream.read_at(offset, hdr_size))
    if len(area) < hdr_size:
        return _Copy(offset, problem="cut short (truncated image)")
    algorithm = _text(fields[5])
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        return _Copy(offset, problem=f"unknown checksum algorithm {algorithm!r}")
    stored = bytes(area[_LUKS2_CSUM_AT : _LUKS2_CSUM_AT + digest.digest_size])
    area[_LUKS2_CSUM_AT : _LUKS2_CSUM_AT + _LUKS2_CSUM_SIZE] = bytes(_LUKS2_CSUM_SIZE)
    digest.update(area)
    if digest.digest() != stored:
        return _Copy(offset, problem=f"{algorithm} checksum mismatch (damaged)")
    try:
        text = bytes(area[_LUKS2_BINARY:]).split(b"\0", 1)[0].decode("utf-8")
        metadata = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _Copy(offset, problem=f"JSON area unreadable ({exc})")
    if not isinstance(metadata, dict):
        return _Copy(offset, problem="JSON area is not an object")
    return _Copy(offset, seqid, fields, metadata)


def _read_luks2(stream: ByteStream) -> LuksHeader:
    primary = _read_copy(stream, 0, MAGIC)
    secondary: _Copy | None = None
    if primary.metadata is not None:
        secondary = _read_copy(stream, primary.binary[2], MAGIC_SECONDARY)
    else:
        for offset in SECONDARY_OFFSETS:
            candidate = _read_copy(stream, offset, MAGIC_SECONDARY)
            if candidate.metadata is not None:
                secondary = candidate
                break
    notes: list[str] = []
    if primary.metadata is None and (secondary is None or secondary.metadata is None):
        why = secondary.problem if secondary is not None else "not found"
        raise EncryptionError(
            f"LUKS2 header unreadable: primary {primary.problem}; secondary {why}"
        )
    if primary.metadata is None:
        assert secondary is not None
        chosen, copy = secondary, "secondary"
        notes.append(f"primary LUKS2 header {primary.problem}: the secondary copy was used")
    elif secondary is None or secondary.metadata is None:
        chosen, copy = primary, "primary"
        why = secondary.problem if secondary is not None else "not found"
        notes.append(f"secondary LUKS2 header {why}")
    elif secondary.seqid > primary.seqid:
        chosen, copy = secondary, "secondary"
        notes.append(
            f"LUKS2 header copies differ (seqid {primary.seqid} and {secondary.seqid}): "
            "the newer, secondary copy was used"
        )
    else:
        chosen, copy = primary, "primary"
        if secondary.seqid != primary.seqid:
            notes.append(
                f"LUKS2 header copies differ (seqid {primary.seqid} and {secondary.seqid}): "
                "the newer, primary copy was used"
            )
    try:
        return _luks2_from_json(chosen, copy, tuple(notes))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise EncryptionError(f"LUKS2 {copy} header JSON is malformed ({exc!r})") from exc


def _int(value: Any) -> int:
    # The specification stores 64-bit numbers as decimal strings (JSON has no u64).
    return int(value)


def _b64(value: Any) -> bytes:
    return base64.b64decode(str(value), validate=True)


def _luks2_from_json(chosen: _Copy, copy: str, notes: tuple[str, ...]) -> LuksHeader:
    meta = chosen.metadata
    assert meta is not None
    binary = chosen.binary
    slots: list[Keyslot] = []
    skipped: list[str] = []
    for key, slot in sorted(meta["keyslots"].items(), key=lambda kv: int(kv[0])):
        area, kdf, af = slot.get("area", {}), slot.get("kdf", {}), slot.get("af", {})
        if slot.get("type") != "luks2" or area.get("type") != "raw" or af.get("type") != "luks1":
            skipped.append(f"keyslot {key} of type {slot.get('type')!r} is not a passphrase slot")
            continue
        kdf_type = str(kdf["type"])
        is_pbkdf2 = kdf_type == "pbkdf2"
        luks2_slot = Keyslot(
            index=int(key),
            kdf=kdf_type,
            hash=str(kdf["hash"]) if is_pbkdf2 else "",
            iterations=_int(kdf["iterations"] if is_pbkdf2 else kdf["time"]),
            memory_kib=0 if is_pbkdf2 else _int(kdf["memory"]),
            parallelism=0 if is_pbkdf2 else _int(kdf["cpus"]),
            salt=_b64(kdf["salt"]),
            key_size=_int(slot["key_size"]),
            area_offset=_int(area["offset"]),
            area_size=_int(area["size"]),
            area_cipher=str(area["encryption"]),
            area_key_size=_int(area["key_size"]),
            stripes=_int(af["stripes"]),
            af_hash=str(af["hash"]),
            priority=_int(slot.get("priority", 1)),
        )
        problem = luks2_slot.problem()
        if problem:
            skipped.append(f"keyslot {key} ignored: {problem} (damaged header?)")
        else:
            slots.append(luks2_slot)
    digests = tuple(
        Digest(
            index=int(key),
            hash=str(d["hash"]),
            iterations=_int(d["iterations"]),
            salt=_b64(d["salt"]),
            value=_b64(d["digest"]),
            keyslots=tuple(int(k) for k in d["keyslots"]),
            segments=tuple(int(s) for s in d["segments"]),
        )
        for key, d in sorted(meta["digests"].items(), key=lambda kv: int(kv[0]))
        if d.get("type") == "pbkdf2"
    )
    segments: list[Segment] = []
    for key, seg in sorted(meta["segments"].items(), key=lambda kv: int(kv[0])):
        # Backup segments of a reencryption describe the old layout, not the data.
        if any(str(flag).startswith("backup-") for flag in seg.get("flags", [])):
            continue
        size = None if seg["size"] == "dynamic" else _int(seg["size"])
        segments.append(
            Segment(
                index=int(key),
                kind=str(seg["type"]),
                offset=_int(seg["offset"]),
                size=size,
                iv_tweak=_int(seg.get("iv_tweak", 0)),
                cipher=str(seg.get("encryption", "")),
                sector_size=_int(seg.get("sector_size", SECTOR)),
                integrity=str(seg["integrity"].get("type", "?")) if seg.get("integrity") else "",
            )
        )
    requirements = tuple(
        str(r) for r in meta.get("config", {}).get("requirements", {}).get("mandatory", [])
    )
    return LuksHeader(
        version=2,
        uuid=_text(binary[7]),
        label=binary[4].split(b"\0", 1)[0].decode("utf-8", "replace"),
        subsystem=binary[8].split(b"\0", 1)[0].decode("utf-8", "replace"),
        keyslots=tuple(slots),
        digests=digests,
        segments=tuple(segments),
        metadata_size=int(binary[2]),
        copy=copy,
        notes=(*notes, *skipped),
        requirements=requirements,
    )

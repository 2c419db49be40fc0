"""Reversible, extraction-safe ZIP member names.

A collected file ``Windows/System32/config/SYSTEM`` of volume ``p3`` is stored as
``files/p3/Windows/System32/config/SYSTEM``; its alternate data stream ``$J`` of
``$Extend/$UsnJrnl`` as ``files/p3/$Extend/$UsnJrnl%3A$J``. Names are built so that
extracting the container with any common tool (Info-ZIP, 7-Zip, Windows Explorer,
macOS Archive Utility) can neither fail on a forbidden name nor write outside the
target directory, and :func:`decode_member_path` gives back the exact original.

Rules, applied per ``/``-separated segment to the UTF-8 bytes (``%XX``, uppercase
hex):

* ``< > : " | ? * \\``, control characters 0x00-0x1F and 0x7F are
  percent-encoded everywhere. ``%`` itself is kept as it is (so
  ``Microsoft-Windows-TerminalServices-LocalSessionManager%4Operational.evtx`` reads as
  Windows names it) unless it could be read as an escape or a marker: it is written
  ``%25`` when two hex digits, or ``+``, ``H`` or ``h``, follow it, or it ends the text. A ``:`` that is part of a name is written ``%3a``
  (lowercase hex); ``%3A`` (uppercase) is reserved for the separator before a stream
  name, so ``a:b`` (a Linux file name) and ``a`` + stream ``b`` stay distinct.
* A trailing dot or space is encoded (Windows strips them), as are the segments
  ``.`` and ``..`` (``%2E``, ``%2E%2E``).
* Windows device names (CON, PRN, AUX, NUL, COM0-9, LPT0-9, their superscript-digit
  forms and CONIN$/CONOUT$), alone or followed by an extension, in any case, get their
  first character encoded: ``CON`` → ``%43ON``, ``nul.txt`` → ``%6Eul.txt``.
* An empty segment (``a//b``) is written as a lone ``%``.
* Unpaired UTF-16 surrogates (possible in NTFS names) are encoded from their
  "surrogatepass" UTF-8 bytes, so every Python string round-trips.
* A segment longer than :data:`MAX_SEGMENT_BYTES` after encoding is split into
  several segments; every piece except the last ends with the continuation marker
  ``%+``. Splits never cut an escape or a multi-byte character.
* A whole name longer than ``max_bytes`` (default :data:`MAX_NAME_BYTES`, chosen to
  stay under Linux's 4096-byte PATH_MAX with room for a destination directory) cannot
  be kept: it becomes ``files/<volume>/%H/<sha256>``, the SHA-256 of the original
  ``path`` and ``stream``. Such a name is not reversible: decoding raises
  :class:`IrreversibleNameError` and the exact original lives only in the manifest
  (whose ``container_path`` names the member).

* The last segment's suffixes ``.sparse`` and ``.sparse.map.json`` (any case) are
  reserved: a file really named so gets the dot escaped (``x%2Esparse``). The member
  holding only the allocated ranges of a sparse stream is named ``<name>.sparse``
  (:func:`sparse_member_name`) and the map of those ranges ``<name>.sparse.map.json``,
  so nobody mistakes the compacted member for the logical file.

The volume label is one segment; a ``/`` in it (``p2/bitlocker``) is encoded as
``%2F``.

Decoding accepts any ``%XX`` escape (either case, except the ``%3A``/``%3a``
distinction above), so it is lenient; callers that write to disk must still check
the decoded segments (``..``, absolute paths), as :mod:`~selective_imager.container.reader`
does.
"""

from __future__ import annotations

import hashlib
import re

FILES_PREFIX = "files"
MAX_SEGMENT_BYTES = 255
MAX_NAME_BYTES = 3800

_RESERVED_CHARS = frozenset('<>:"|?*\\')
# A literal "%" followed by two hex digits would read as an escape, by these as the
# continuation marker or the hashed-name segment.
_HEX = frozenset("0123456789ABCDEFabcdef")
_PERCENT_MARKERS = frozenset("+Hh")
_STREAM_SEP = "%3A"
_NAME_COLON = "%3a"
_EMPTY = "%"
_CONTINUE = "%+"
_HASHED = "%H"
_PIECE_BYTES = MAX_SEGMENT_BYTES - len(_CONTINUE) - 2  # room to escape a piece's 1st char

_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{base}{digit}" for base in ("COM", "LPT") for digit in "0123456789¹²³"]
)

_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")

SPARSE_SUFFIX = ".sparse"
SPARSE_MAP_SUFFIX = ".sparse.map.json"
_RESERVED_SUFFIX_RE = re.compile(r"(?i)\.(sparse(\.map\.json)?)$")


class IrreversibleNameError(ValueError):
    """A hash-based member name: the original path is only in the manifest.

    Attributes:
        volume: the volume label (still encoded in the name).
        digest: the SHA-256 hex in the name.
    """

    def __init__(self, name: str, volume: str, digest: str) -> None:
        super().__init__(f"{name!r} is a hash-based name; look the path up in the manifest")
        self.volume = volume
        self.digest = digest


def _escape_bytes(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8", "surrogatepass"))


def _is_device_name(segment: str) -> bool:
    stem = segment.split(".", 1)[0].rstrip(" ")
    return stem.upper() in _DEVICE_NAMES


def _percent_is_literal(text: str, index: int) -> bool:
    """Whether the ``%`` at ``index`` can stay as it is (nothing reads it as a marker)."""
    following = text[index + 1 : index + 3]
    if not following or following[0] in _PERCENT_MARKERS:
        return False
    return not (len(following) == 2 and all(c in _HEX for c in following))


def _encode_chars(text: str) -> str:
    out: list[str] = []
    for index, char in enumerate(text):
        code = ord(char)
        if char == "%":
            out.append("%" if _percent_is_literal(text, index) else "%25")
        elif char == ":":
            out.append(_NAME_COLON)
        elif char in _RESERVED_CHARS or code < 0x20 or code == 0x7F:
            out.append(f"%{code:02X}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(_escape_bytes(char))
        else:
            out.append(char)
    return "".join(out)


def _encode_tail(text: str) -> str:
    """Encode text that ends a segment (a stream name, a volume label).

    ``/`` is encoded too, and a trailing dot or space (Windows strips them).
    """
    body = text
    tail = ""
    if body and body[-1] in ". ":
        tail = f"%{ord(body[-1]):02X}"
        body = body[:-1]
    return _encode_chars(body).replace("/", "%2F") + tail


def _encode_segment(segment: str) -> str:
    """Encode one segment (no length handling); never returns an unsafe name."""
    if segment == "":
        return _EMPTY
    if segment in (".", ".."):
        return "%2E" * len(segment)
    encoded = _encode_tail(segment)
    if _is_device_name(segment):
        first = segment[0]
        encoded = _escape_bytes(first) + encoded[len(first) :]
    return encoded


def _split_long(encoded: str) -> list[str]:
    """Split an encoded segment into pieces of at most MAX_SEGMENT_BYTES."""
    if len(encoded.encode("utf-8", "surrogatepass")) <= MAX_SEGMENT_BYTES:
        return [encoded]
    # Tokens are escapes or single characters, so no split cuts one.
    tokens = re.findall(r"%[0-9A-Fa-f]{2}|%\+|.", encoded, flags=re.DOTALL)
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for token in tokens:
        size = len(token.encode("utf-8", "surrogatepass"))
        if current and used + size > _PIECE_BYTES:
            pieces.append("".join(current))
            current, used = [], 0
        current.append(token)
        used += size
    pieces.append("".join(current))
    safe: list[str] = []
    for i, piece in enumerate(pieces):
        # A piece may itself look like a device name ("CON.txt" after a cut).
        if _is_device_name(piece):
            piece = _escape_bytes(piece[0]) + piece[1:]
        safe.append(piece + _CONTINUE if i < len(pieces) - 1 else piece)
    return safe


def _decode_text(text: str) -> str:
    """Undo percent escapes (``%3a``/``%3A`` both give ``:``)."""
    if "%" not in text:
        return text
    out = bytearray()
    pos = 0
    for match in _ESCAPE_RE.finditer(text):
        out += text[pos : match.start()].encode("utf-8", "surrogatepass")
        out.append(int(match.group(1), 16))
        pos = match.end()
    rest = text[pos:]
    plain = _ESCAPE_RE.sub("\0", text)
    for index, char in enumerate(plain):
        if char == "%" and not _percent_is_literal(plain, index):
            raise ValueError(f"stray '%' in member name segment {text!r}")
    out += rest.encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "surrogatepass")


def _hashed_name(volume_label: str, path: str, stream: str) -> str:
    key = (path + "\0" + stream).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).hexdigest()
    return f"{FILES_PREFIX}/{_encode_volume(volume_label)}/{_HASHED}/{digest}"


# A volume label is ``p3`` or, for a volume inside another (a shadow-copy store), ``p3/vss2``:
# its later segments look like this, and a path whose first segment does is escaped.
_NESTED_VOLUME_RE = re.compile(r"(?i)(vss|apfs|lvm|snapshot)[0-9]+")


def split_volume_label(volume_label: str) -> list[str]:
    """``p3/vss2`` -> ``["p3", "vss2"]`` (a volume inside a volume); any other label whole."""
    parts = volume_label.split("/")
    if len(parts) > 1 and all(_NESTED_VOLUME_RE.fullmatch(part) for part in parts[1:]):
        return parts
    return [volume_label]


def _encode_volume(volume_label: str) -> str:
    first, *nested = split_volume_label(volume_label)
    return "/".join([*_split_long(_encode_segment(first)), *nested])


def _encode_first(segment: str) -> str:
    """The first path segment, escaped when it would read as part of the volume label."""
    if _NESTED_VOLUME_RE.fullmatch(segment):
        return _escape_bytes(segment[0]) + segment[1:]
    return segment


def encode_member_path(
    volume_label: str, path: str, stream: str = "", *, max_bytes: int = MAX_NAME_BYTES
) -> str:
    """The member name of a collected file or stream.

    Args:
        volume_label: the volume's label, e.g. ``p3``.
        path: ``/``-separated path relative to the volume root, as stored.
        stream: alternate data stream name, ``""`` for the default stream.
        max_bytes: longest name (UTF-8 bytes) kept reversible; longer ones become a
            hash-based name (see the module docstring).

    Returns:
        ``files/<volume>/<encoded path>[%3A<encoded stream>]``.
    """
    segments = [_encode_segment(seg) for seg in path.split("/")]
    segments[0] = _encode_first(segments[0])
    if stream:
        encoded_stream = _encode_tail(stream)
        segments[-1] = (segments[-1] if path else _EMPTY) + _STREAM_SEP + encoded_stream
    segments[-1] = _RESERVED_SUFFIX_RE.sub(r"%2E\1", segments[-1])
    pieces: list[str] = []
    for seg in segments:
        pieces.extend(_split_long(seg))
    name = "/".join([FILES_PREFIX, _encode_volume(volume_label), *pieces])
    if len(name.encode("utf-8", "surrogatepass")) > max_bytes:
        return _hashed_name(volume_label, path, stream)
    return name


def sparse_member_name(name: str) -> str:
    """The member name of a sparse stream's allocated ranges (see the module docstring)."""
    return name + SPARSE_SUFFIX


def sparse_map_name(name: str) -> str:
    """The member name of the range map beside a sparse member (``name`` without suffix)."""
    return name + SPARSE_MAP_SUFFIX


def sparse_role(name: str) -> str:
    """``"member"``, ``"map"`` or ``""``: whether ``name`` is a sparse member or its map."""
    if name.endswith(SPARSE_MAP_SUFFIX):
        return "map"
    if name.endswith(SPARSE_SUFFIX):
        return "member"
    return ""


def is_hashed_name(name: str) -> bool:
    """Whether ``name`` is a hash-based (irreversible) member name."""
    parts = name.split("/")
    return len(parts) >= 4 and parts[0] == FILES_PREFIX and parts[-2] == _HASHED


def _join_continued(parts: list[str]) -> list[str]:
    joined: list[str] = []
    pending = ""
    for part in parts:
        if part.endswith(_CONTINUE):
            pending += part[: -len(_CONTINUE)]
            continue
        joined.append(pending + part)
        pending = ""
    if pending:
        raise ValueError("member name ends with a continuation marker")
    return joined


def _decode_segment(segment: str) -> str:
    if segment == _EMPTY:
        return ""
    return _decode_text(segment)


def decode_member_path(name: str) -> tuple[str, str, str]:
    """Invert :func:`encode_member_path` (a sparse member or map gives its file's identity).

    Args:
        name: a member name under ``files/``.

    Returns:
        ``(volume_label, path, stream)``.

    Raises:
        IrreversibleNameError: a hash-based name.
        ValueError: not a member name this module produces.
    """
    role = sparse_role(name)
    if role:
        name = name[: -len(SPARSE_MAP_SUFFIX if role == "map" else SPARSE_SUFFIX)]
    raw_parts = name.split("/")
    if len(raw_parts) < 3 or raw_parts[0] != FILES_PREFIX:
        raise ValueError(f"{name!r} is not under {FILES_PREFIX}/")
    if any(part in ("", ".", "..") for part in raw_parts):
        # The encoder never writes these: such a name was crafted, not made by us.
        raise ValueError(f"{name!r} has an empty, '.' or '..' segment")
    parts = _join_continued(raw_parts[1:])
    if len(parts) < 2:
        raise ValueError(f"{name!r} has no path after the volume")
    volume = _decode_segment(parts[0])
    while len(parts) > 2 and _NESTED_VOLUME_RE.fullmatch(parts[1]):
        volume += "/" + parts[1]
        parts = [parts[0], *parts[2:]]
    if len(parts) == 3 and parts[1] == _HASHED and re.fullmatch(r"[0-9a-f]{64}", parts[2]):
        raise IrreversibleNameError(name, volume, parts[2])
    last = parts[-1]
    stream = ""
    if _STREAM_SEP in last:
        last, _, encoded_stream = last.partition(_STREAM_SEP)
        stream = _decode_text(encoded_stream)
        if not stream:
            raise ValueError(f"{name!r} has an empty stream name")
    segments = [_decode_segment(seg) for seg in parts[1:-1]]
    if len(parts) == 2 and last == _EMPTY and stream:
        return volume, "", stream  # a stream of the volume root
    segments.append(_decode_segment(last))
    return volume, "/".join(segments), stream


def encode_segment(segment: str) -> str:
    """One path segment in its portable, reversible form (long segments not split)."""
    return _encode_segment(segment)


def is_portable_segment(segment: str) -> bool:
    """Whether a decoded segment can be created as-is on Windows, Linux and macOS."""
    return _encode_segment(segment) == segment and len(segment.encode("utf-8")) <= 255


__all__ = [
    "FILES_PREFIX",
    "MAX_NAME_BYTES",
    "MAX_SEGMENT_BYTES",
    "SPARSE_MAP_SUFFIX",
    "SPARSE_SUFFIX",
    "IrreversibleNameError",
    "decode_member_path",
    "encode_member_path",
    "encode_segment",
    "is_hashed_name",
    "is_portable_segment",
    "sparse_map_name",
    "sparse_member_name",
    "sparse_role",
    "split_volume_label",
]

"""EWF (E01/Ex01/S01) images through libewf (pyewf).

References:
    - libyal libewf, "Expert Witness Compression Format (EWF)" (segment file header:
      signature, then a u8 1 and the u16 segment number).
"""

from __future__ import annotations

import struct
from typing import Any

from selective_imager.errors import SourceError, short_error
from selective_imager.models import ChainFile, SourceInfo
from selective_imager.sources.base import Source, SourceFormat, SourceOptions
from selective_imager.streams import LibyalStream

# E01 (EWF-E01/EWF-S01 "EVF") and Ex01 ("EVF2"), L01 (logical: "LVF") signatures.
_EVF1 = b"EVF\x09\x0d\x0a\xff\x00"
_EVF2 = b"EVF2\x0d\x0a\x81\x00"
_LVF = b"LVF\x09\x0d\x0a\xff\x00"


class EwfFormat(SourceFormat):
    """An EWF segment set, given by its first segment."""

    name = "ewf"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """The EVF/EVF2 signature (LVF is refused with a message)."""
        return head.startswith((_EVF1, _EVF2, _LVF))

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open the whole segment set."""
        from selective_imager.sources.base import read_head

        head = read_head(path, 13)
        if head.startswith(_LVF):
            raise SourceError(
                f"{path}: is an L01 logical evidence file (files, not a disk image): "
                "open it with a logical-evidence tool"
            )
        if head.startswith(_EVF1) and len(head) >= 11:
            segment = struct.unpack_from("<H", head, 9)[0]
            if segment > 1:
                raise SourceError(
                    f"{path}: is segment {segment} of an EWF set: give the first segment "
                    "(.E01) instead"
                )
        return _open_ewf(path)


def _open_ewf(path: str) -> Source:
    import pyewf

    try:
        segments = [str(s) for s in pyewf.glob(path)]
    except OSError as exc:
        raise SourceError(f"{path}: cannot find the E01 segments: {exc}") from exc
    handle = pyewf.handle()
    try:
        handle.open(segments)
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot open E01 ({len(segments)} segment(s) found; "
            f"a segment may be missing or damaged): {short_error(exc)}"
        ) from exc
    try:
        size = handle.get_media_size()
        sector = handle.get_bytes_per_sector() or 512
        details: dict[str, str] = {"segment_count": str(len(segments))}
        for key, value in sorted((handle.get_header_values() or {}).items()):
            if value:
                details[f"header.{key}"] = str(value)
        for key, value in sorted((handle.get_hash_values() or {}).items()):
            if value:
                details[f"stored_hash.{str(key).lower()}"] = str(value).lower()
        details["ewf.format"] = str(handle.get_format())
        details["ewf.compression_method"] = str(handle.get_compression_method())
    except OSError as exc:
        handle.close()
        raise SourceError(f"{path}: cannot read E01 metadata: {short_error(exc)}") from exc
    if size == 0:
        handle.close()
        raise SourceError(f"{path}: E01 holds no media data")
    try:
        # libewf opens a set with missing segments; reading the last sector finds out.
        handle.read_buffer_at_offset(1, size - 1)
    except OSError as exc:
        handle.close()
        raise SourceError(
            f"{path}: E01 is incomplete: a segment is missing or damaged "
            f"({len(segments)} segment(s) found): {short_error(exc)}"
        ) from exc
    stream = _EwfStream(handle, size, path)
    info = SourceInfo(
        path=path,
        format="ewf",
        size=size,
        sector_size=sector,
        segments=tuple(segments),
        details=details,
        chain=tuple(ChainFile(s, _file_size(s), "segment", "ewf") for s in segments),
    )
    return Source(info, stream, handle)


def _file_size(path: str) -> int:
    from pathlib import Path

    return Path(path).stat().st_size


class _EwfStream(LibyalStream):
    """pyewf handle as a ByteStream; a read error names the image."""

    def __init__(self, handle: Any, size: int, path: str) -> None:
        super().__init__(handle, size)
        self.path = path

    def _read_at(self, offset: int, size: int) -> bytes:
        try:
            return super()._read_at(offset, size)
        except OSError as exc:
            raise SourceError(
                f"{self.path}: E01 read error at {offset}: {short_error(exc)}"
            ) from exc



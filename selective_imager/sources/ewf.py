"""EWF (E01/Ex01/S01) images: the own reader (:mod:`.ewf_reader`) or libewf (pyewf).

The own reader inflates chunks in parallel with zlib-ng (pyewf's wheel inflates with
libewf's own decoder, ~115 MiB/s). It is compared with pyewf on every image before use
(:func:`compare_with_pyewf`); pyewf serves what it does not know (Ex01, L01, sessions,
encryption, damaged structures) or when the two differ.
``SELECTIVE_IMAGER_EWF_BACKEND=pyewf|own`` forces either.

References:
    - libyal libewf, "Expert Witness Compression Format (EWF)" (segment file header:
      signature, then a u8 1 and the u16 segment number).
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

from selective_imager.errors import SourceError, short_error
from selective_imager.models import ChainFile, SourceInfo
from selective_imager.sources import ewf_reader
from selective_imager.sources.base import Source, SourceFormat, SourceOptions
from selective_imager.streams import LibyalStream

# E01 (EWF-E01/EWF-S01 "EVF") and Ex01 ("EVF2"), L01 (logical: "LVF") signatures.
_EVF1 = b"EVF\x09\x0d\x0a\xff\x00"
_EVF2 = b"EVF2\x0d\x0a\x81\x00"
_LVF = b"LVF\x09\x0d\x0a\xff\x00"

# Which reader serves the media: auto (the own reader, checked against pyewf on every
# image, pyewf for what it does not know), own (unchecked) or pyewf.
BACKEND_ENV = "SELECTIVE_IMAGER_EWF_BACKEND"
BACKEND_AUTO = "auto"
BACKEND_OWN = "own"
BACKEND_PYEWF = "pyewf"


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
    backend = os.environ.get(BACKEND_ENV, BACKEND_AUTO).strip().lower() or BACKEND_AUTO
    if backend not in (BACKEND_AUTO, BACKEND_OWN, BACKEND_PYEWF):
        raise SourceError(
            f"{BACKEND_ENV}={backend!r} is not a known EWF backend: use own, pyewf or auto"
        )
    if backend == BACKEND_PYEWF:
        return _open_pyewf(path, segments, "pyewf backend requested")
    try:
        image = ewf_reader.parse_image(segments)
    except ewf_reader.EwfUnsupportedError as exc:
        if backend == BACKEND_OWN:
            raise SourceError(f"{path}: the own EWF reader cannot read it: {exc}") from exc
        return _open_pyewf(path, segments, f"own reader not used: {exc}")
    stream = ewf_reader.EwfStream(image)
    if backend == BACKEND_OWN:
        return _own_source(path, image, stream, None, "own reader (forced, not checked)")
    handle = _pyewf_handle(path, segments)
    try:
        difference = compare_with_pyewf(stream, handle)
    except SourceError:
        handle.close()
        stream.close()
        raise
    if difference:
        stream.close()
        handle.close()
        return _open_pyewf(
            path, segments, f"own reader not used: it differs from pyewf ({difference})"
        )
    source = _own_source(path, image, stream, handle, "own reader, checked against pyewf")
    handle.close()
    return source


def _own_source(
    path: str,
    image: ewf_reader.EwfImage,
    stream: ewf_reader.EwfStream,
    handle: Any,
    note: str,
) -> Source:
    details: dict[str, str] = {"segment_count": str(len(image.segments))}
    for key, value in sorted(image.headers.items()):
        details[f"header.{key}"] = value
    if image.md5:
        details["stored_hash.md5"] = image.md5
    if image.sha1:
        details["stored_hash.sha1"] = image.sha1
    if handle is not None:
        details["ewf.format"] = str(handle.get_format())
        details["ewf.compression_method"] = str(handle.get_compression_method())
    details["ewf.variant"] = image.variant
    details["ewf.chunk_size"] = str(image.volume.chunk_size)
    details["ewf.backend"] = "own"
    details["ewf.backend_note"] = note
    if image.acquisition_errors:
        details["ewf.acquisition_errors"] = ",".join(
            f"{start}+{count}" for start, count in image.acquisition_errors
        )
    info = SourceInfo(
        path=path,
        format="ewf",
        size=image.media_size,
        sector_size=image.volume.bytes_per_sector,
        segments=image.segments,
        details=details,
        chain=tuple(ChainFile(s, _file_size(s), "segment", "ewf") for s in image.segments),
    )
    return Source(info, stream)


def compare_with_pyewf(stream: ewf_reader.EwfStream, handle: Any) -> str:
    """Compare the own reader with pyewf; "" when they agree, else what differs.

    Compared: the media size, sector size and stored MD5, then whole chunks (the first,
    the last, both sides of every segment boundary, random ones) and unaligned windows
    across chunk boundaries. A chunk the own reader finds damaged is left out: libewf
    returns it zero-filled without an error, the own reader reports it.

    Raises:
        SourceError: pyewf cannot read a window the own reader can.
    """
    image = stream.image
    try:
        size = handle.get_media_size()
        sector = handle.get_bytes_per_sector() or 512
        stored = {
            str(k).lower(): str(v).lower() for k, v in (handle.get_hash_values() or {}).items()
        }
    except OSError as exc:
        raise SourceError(
            f"{image.segments[0]}: cannot read E01 metadata: {short_error(exc)}"
        ) from exc
    if size != stream.size:
        return f"media size {stream.size} against {size}"
    if sector != image.volume.bytes_per_sector:
        return f"sector size {image.volume.bytes_per_sector} against {sector}"
    if stored.get("md5", "") != image.md5 and stored.get("md5"):
        return f"stored MD5 {image.md5 or 'none'} against {stored['md5']}"
    count = len(image.chunks)
    rng = random.Random(stream.size)
    chunks = {0, count - 1}
    for first in image.segment_first_chunks[1:]:
        chunks.update({first - 1, first})
    chunks.update(rng.randrange(count) for _ in range(6))
    cs = stream.chunk_size
    windows = [
        (i * cs, stream.chunk_length(i)) for i in sorted(c for c in chunks if 0 <= c < count)
    ]
    for _ in range(4):
        length = rng.randrange(1, 3 * cs)
        windows.append((rng.randrange(max(1, stream.size - length)), length))
    windows.append((stream.size - 1, 1))
    for offset, length in windows:
        try:
            mine = stream.read_at(offset, length)
        except ewf_reader.EwfChunkError:
            continue
        try:
            theirs = handle.read_buffer_at_offset(len(mine), offset)
        except OSError as exc:
            raise SourceError(
                f"{image.segments[0]}: E01 read error at {offset}: {short_error(exc)}"
            ) from exc
        if mine != theirs:
            return f"{length} bytes at offset {offset}"
    return ""


def _pyewf_handle(path: str, segments: list[str]) -> Any:
    import pyewf

    handle = pyewf.handle()
    try:
        handle.open(segments)
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot open E01 ({len(segments)} segment(s) found; "
            f"a segment may be missing or damaged): {short_error(exc)}"
        ) from exc
    return handle


def _open_pyewf(path: str, segments: list[str], note: str) -> Source:
    handle = _pyewf_handle(path, segments)
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
        details["ewf.backend"] = "pyewf"
        details["ewf.backend_note"] = note
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

"""A physical image written during the pass that hashes the source.

:class:`ImageTarget` is one more lane of :class:`~selective_imager.collect.hashing.HashRun`:
the source is read once, the hashes and the image come from the same bytes. Unreadable
sectors arrive zero-filled (the hash run bisects failing reads down to the sector) and
are listed in the E01's error2 section and in the record.
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager import __version__
from selective_imager.errors import ContainerError
from selective_imager.imaging.ewf_writer import (
    COMPRESSION_LEVELS,
    EwfHeader,
    EwfWriter,
    EwfWriterOptions,
)
from selective_imager.imaging.raw_writer import RawWriter

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from selective_imager.collect.hashing import DiskHashResult
    from selective_imager.streams import ByteStream

FORMATS = ("e01", "raw")
# The hash and digest sections of an E01 hold these.
E01_ALGORITHMS = ("md5", "sha1")


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """What image to write.

    Attributes:
        format: ``e01`` or ``raw``.
        segment_size: largest E01 segment file, bytes.
        compression: E01 compression (:data:`COMPRESSION_LEVELS`).
        chunk_sectors: E01 sectors per chunk.
        sparse: raw images leave holes where the source is zero.
        case_number, evidence_number, examiner, description, notes: E01 header values.
        acquired: acquisition time (default: when the image is opened).
    """

    format: str = "e01"
    segment_size: int = 2 << 30
    compression: str = "fast"
    chunk_sectors: int = 64
    sparse: bool = True
    case_number: str = ""
    evidence_number: str = ""
    examiner: str = ""
    description: str = ""
    notes: str = ""
    acquired: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def check(self) -> None:
        """Raise ValueError for an impossible combination."""
        if self.format not in FORMATS:
            raise ValueError(f"unknown image format {self.format!r}: choose e01 or raw")
        if self.compression not in COMPRESSION_LEVELS:
            raise ValueError(
                f"unknown compression {self.compression!r}: choose {', '.join(COMPRESSION_LEVELS)}"
            )
        spc = self.chunk_sectors
        if spc < 16 or spc > 32768 or spc & (spc - 1):
            raise ValueError("chunk size must be 16 to 32768 sectors, a power of two")
        if self.segment_size < (1 << 20):
            raise ValueError("segment size must be at least 1 MiB")


def hash_algorithms(options: ImageOptions, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The algorithms the pass must compute: those wanted, plus MD5 and SHA-1 for an E01."""
    from selective_imager.collect.hashing import ALGORITHMS

    need = set(wanted) | (set(E01_ALGORITHMS) if options.format == "e01" else set())
    return tuple(a for a in ALGORITHMS if a in need)


class ImageTarget:
    """The image being written: feed it with :meth:`write` (a hash-run sink).

    Args:
        output: the image path (``disk.E01`` or ``disk.raw``).
        media_size: bytes of the source.
        sector_size: the source's sector size.
        options: what to write.
        model: media model for the E01 header (a device's), or "".
        serial: media serial number for the E01 header, or "".

    Raises:
        ContainerError: the output exists or cannot be created.
    """

    def __init__(
        self,
        output: Path,
        media_size: int,
        sector_size: int,
        options: ImageOptions,
        *,
        model: str = "",
        serial: str = "",
    ) -> None:
        self.output = output
        self.options = options
        self.media_size = media_size
        self.sector_size = sector_size
        self._ewf: EwfWriter | None = None
        self._raw: RawWriter | None = None
        if options.format == "e01":
            header = EwfHeader(
                case_number=options.case_number,
                evidence_number=options.evidence_number,
                description=options.description,
                examiner=options.examiner,
                notes=options.notes,
                acquired=options.acquired,
                os_version=f"{platform.system()} {platform.release()}".strip()[:23],
                tool_version=__version__[:11],
                model=model,
                serial=serial,
            )
            self._ewf = EwfWriter(
                output,
                media_size,
                sector_size,
                header,
                EwfWriterOptions(
                    segment_size=options.segment_size,
                    compression=options.compression,
                    sectors_per_chunk=options.chunk_sectors,
                ),
            )
        else:
            self._raw = RawWriter(output, media_size, sparse=options.sparse)

    def write(self, offset: int, data: memoryview) -> None:
        """The hash-run sink: the next bytes of the source."""
        if self._ewf is not None:
            self._ewf.write(offset, data)
        elif self._raw is not None:
            self._raw.write(offset, data)

    def finish(self, result: DiskHashResult) -> dict[str, Any]:
        """Close the image with the pass's hashes; returns the image record.

        An interrupted pass leaves the image incomplete (an E01 without its done
        section, which readers refuse) and says so in the record.

        Raises:
            ContainerError: the image cannot be finished.
        """
        digests = result.digests.as_dict() if result.digests else {}
        record: dict[str, Any] = {
            "path": str(self.output),
            "format": self.options.format,
            "media_size": self.media_size,
            "sector_size": self.sector_size,
            "complete": result.complete,
            "digests": digests,
            "pieces": [
                {"index": p.index, "offset": p.offset, "length": p.length, "sha256": p.sha256}
                for p in result.pieces
            ],
            "unreadable": [
                {
                    "offset": o,
                    "length": n,
                    "first_sector": o // self.sector_size,
                    "sectors": -(-(o + n) // self.sector_size) - o // self.sector_size,
                }
                for o, n in result.unreadable
            ],
        }
        if not result.complete:
            self.abort()
            record["files"] = []
            record["note"] = "the pass did not finish: the image is incomplete"
            return record
        if self._ewf is not None:
            written = self._ewf.finish(digests["md5"], digests.get("sha1", ""), result.unreadable)
            o = self.options
            record.update(
                files=list(written.segments),
                bytes_written=written.bytes_written,
                segment_size=o.segment_size,
                compression=o.compression,
                chunk_size=o.chunk_sectors * self.sector_size,
                chunks=written.chunks,
                compressed_chunks=written.compressed_chunks,
                pattern_chunks=written.pattern_chunks,
                header={
                    "case_number": o.case_number,
                    "evidence_number": o.evidence_number,
                    "examiner": o.examiner,
                    "description": o.description,
                    "notes": o.notes,
                    "acquired": o.acquired.astimezone(dt.UTC).isoformat(),
                    "tool_version": __version__,
                },
                stored_hashes={"md5": digests["md5"], "sha1": digests.get("sha1", "")},
            )
        elif self._raw is not None:
            allocated = self._raw.finish()
            record.update(files=[str(self.output)], sparse=self.options.sparse, allocated=allocated)
        return record

    def abort(self) -> None:
        """Stop writing; what was written stays (incomplete)."""
        if self._ewf is not None:
            self._ewf.abort()
        if self._raw is not None:
            self._raw.abort()


def image_stream(
    stream: ByteStream,
    sector_size: int,
    target: ImageTarget,
    algorithms: tuple[str, ...],
    *,
    piece_size: int = 0,
    progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[DiskHashResult, dict[str, Any]]:
    """Hash ``stream`` and write it into ``target`` in the same pass.

    Returns:
        The hash result and the image record.

    Raises:
        ContainerError: the image cannot be written.
    """
    from selective_imager.collect.hashing import hash_source

    try:
        result = hash_source(
            stream,
            algorithms,
            piece_size=piece_size,
            sector_size=sector_size,
            progress=progress,
            cancel=cancel,
            sinks=[target.write],
        )
    except BaseException:
        target.abort()
        raise
    return result, target.finish(result)


def refuse_image_on_source(source_paths: tuple[str, ...], output: Path) -> None:
    """The image must not be one of the source's files.

    Raises:
        ContainerError: it is.
    """
    out = output.resolve()
    for path in source_paths:
        try:
            if Path(path).resolve() == out:
                raise ContainerError(f"{output}: is the source itself")
        except OSError:
            continue

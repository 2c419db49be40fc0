"""A raw (dd) image: one file, byte for byte the disk. The fallback when nothing else fits."""

from __future__ import annotations

from pathlib import Path

from selective_imager.models import ChainFile, SourceInfo
from selective_imager.sources.base import (
    Source,
    SourceFormat,
    SourceOptions,
    detect_sector_size,
    file_stream,
)


class RawFormat(SourceFormat):
    """Any file no other format claims is read as a raw image."""

    name = "raw"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """Always: raw is the last entry of the registry."""
        return True

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open ``path`` as a raw image."""
        size = Path(path).stat().st_size
        stream = file_stream(path, size)
        info = SourceInfo(
            path=path,
            format="raw",
            size=size,
            sector_size=detect_sector_size(stream),
            segments=(path,),
            chain=(ChainFile(path, size, "image", "raw"),),
        )
        return Source(info, stream)

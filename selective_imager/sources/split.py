"""A split raw image: ``.001 .002 …`` or ``.aa .ab …`` segments read as one disk."""

from __future__ import annotations

import re
from pathlib import Path

from selective_imager.errors import SourceError
from selective_imager.models import ChainFile, SourceInfo
from selective_imager.sources.base import (
    Source,
    SourceFormat,
    SourceOptions,
    detect_sector_size,
    file_stream,
)
from selective_imager.streams import ConcatStream

_SPLIT_NUMERIC = re.compile(r"^(?P<base>.*\.)(?P<num>\d{3})$")
_SPLIT_ALPHA = re.compile(r"^(?P<base>.*\.)(?P<alpha>[a-z]{2,3})$")


class SplitRawFormat(SourceFormat):
    """The first segment of a split set (``.000``/``.001`` or ``.aa``) with a second one beside it.

    A later segment given alone is refused with the name of the first one: read on its
    own it would look like a damaged raw image.
    """

    name = "split-raw"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """A segment name with a next segment beside it."""
        return len(split_parts(path)) > 1 or bool(first_segment_of(path))

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open every segment and read them as one."""
        first = first_segment_of(path)
        if first:
            raise SourceError(
                f"{path}: is a later segment of a split image: give the first one ({first})"
            )
        parts = split_parts(path)
        streams = [file_stream(p, Path(p).stat().st_size) for p in parts]
        stream = ConcatStream(streams)
        info = SourceInfo(
            path=path,
            format="split-raw",
            size=stream.size,
            sector_size=detect_sector_size(stream),
            segments=tuple(parts),
            chain=tuple(
                ChainFile(p, s.size, "segment", "raw") for p, s in zip(parts, streams, strict=True)
            ),
        )
        return Source(info, stream)


def first_segment_of(path: str) -> str:
    """The first segment's path when ``path`` is a later segment of a split set, else ""."""
    num = _SPLIT_NUMERIC.match(path)
    if num and int(num["num"]) > 1:
        width = len(num["num"])
        for start in (1, 0):
            first = f"{num['base']}{start:0{width}d}"
            if Path(first).is_file():
                return first
        return ""
    alpha = _SPLIT_ALPHA.match(path)
    if alpha and set(alpha["alpha"]) != {"a"}:
        first = alpha["base"] + "a" * len(alpha["alpha"])
        if Path(first).is_file():
            return first
    return ""


def split_parts(path: str) -> list[str]:
    """The segments of a split raw image starting at ``path`` (``.001``/``.aa`` style)."""
    num = _SPLIT_NUMERIC.match(path)
    if num and int(num["num"]) in (0, 1):
        base, width, index = num["base"], len(num["num"]), int(num["num"])
        parts = []
        while Path(f"{base}{index:0{width}d}").is_file():
            parts.append(f"{base}{index:0{width}d}")
            index += 1
        return parts
    alpha = _SPLIT_ALPHA.match(path)
    if alpha and set(alpha["alpha"]) == {"a"}:
        base, suffix = alpha["base"], alpha["alpha"]
        parts = []
        while Path(base + suffix).is_file():
            parts.append(base + suffix)
            suffix = _next_alpha(suffix)
            if not suffix:
                break
        return parts
    return [path]


def _next_alpha(suffix: str) -> str:
    chars = list(suffix)
    i = len(chars) - 1
    while i >= 0:
        if chars[i] != "z":
            chars[i] = chr(ord(chars[i]) + 1)
            return "".join(chars)
        chars[i] = "a"
        i -= 1
    return ""

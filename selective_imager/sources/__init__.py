"""Where a source comes from: one module per image or device format, and the registry."""

from __future__ import annotations

from selective_imager.sources.base import Source, SourceOptions, detect_sector_size
from selective_imager.sources.registry import open_source

__all__ = ["Source", "SourceOptions", "detect_sector_size", "open_source"]

"""File-system backends: one module each, tried in the order of :mod:`.registry`."""

from __future__ import annotations

from selective_imager.filesystems.base import Filesystem, FilesystemFormat
from selective_imager.filesystems.registry import open_filesystem

__all__ = ["Filesystem", "FilesystemFormat", "open_filesystem"]

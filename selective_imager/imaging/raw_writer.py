"""A plain or sparse raw (dd) image written from media fed in order.

Sparse: blocks that are all zeros are not written but skipped (the file system keeps
a hole; reading it returns zeros, so the image is bit-identical), and the file is
sized with ``ftruncate`` at the end.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from pathlib import Path

# Holes are made in blocks of this size (a multiple of every file-system block size).
_HOLE_BLOCK = 64 << 10
_ZERO_BLOCK = bytes(_HOLE_BLOCK)


class RawWriter:
    """Write the media into one raw file.

    Args:
        path: the output (must not exist).
        media_size: bytes that will be fed.
        sparse: leave holes where a whole block is zero.

    Raises:
        ContainerError: the output exists or cannot be created.
    """

    def __init__(self, path: Path, media_size: int, *, sparse: bool = True) -> None:
        self.path = path
        self.media_size = media_size
        self.sparse = sparse
        self.fed = 0
        self.holes = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except FileExistsError as exc:
            raise ContainerError(f"{path}: exists: refusing to overwrite") from exc
        except OSError as exc:
            raise ContainerError(f"{path}: cannot create: {exc.strerror or exc}") from exc

    def write(self, offset: int, data: memoryview | bytes) -> None:
        """Feed the media bytes at ``offset`` (in order)."""
        if offset != self.fed:
            raise ValueError(f"out of order: {offset}, expected {self.fed}")
        view = memoryview(data)
        try:
            if not self.sparse:
                self._pwrite(view, offset)
            else:
                for start in range(0, len(view), _HOLE_BLOCK):
                    block = view[start : start + _HOLE_BLOCK]
                    # bytes against bytes: equal memoryviews compare item by item (slow).
                    if not any(block[:64]) and block.tobytes() == _ZERO_BLOCK[: len(block)]:
                        self.holes += len(block)
                        continue
                    self._pwrite(block, offset + start)
        except OSError as exc:
            raise ContainerError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
        self.fed += len(view)

    def _pwrite(self, view: memoryview, offset: int) -> None:
        while view:
            done = os.pwrite(self.fd, view, offset)
            view = view[done:]
            offset += done

    def finish(self) -> int:
        """Size the file, flush and close it; returns the bytes allocated on disk.

        Raises:
            ContainerError: the media fed is short, or the file cannot be finished.
        """
        try:
            if self.fed != self.media_size:
                raise ContainerError(f"{self.path}: {self.fed} of {self.media_size} bytes imaged")
            os.ftruncate(self.fd, self.media_size)
            os.fsync(self.fd)
            return os.fstat(self.fd).st_blocks * 512
        except OSError as exc:
            raise ContainerError(f"{self.path}: cannot finish: {exc.strerror or exc}") from exc
        finally:
            os.close(self.fd)

    def abort(self) -> None:
        """Close the file as it is (incomplete)."""
        try:
            os.close(self.fd)
        except OSError:
            return

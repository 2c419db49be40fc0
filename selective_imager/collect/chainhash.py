"""The hashes of the files of a virtual disk as received, taken during the disk-hash pass.

The disk hash is over the virtual disk (what the guest saw). The files the examiner
received (a differencing child and its parents, VMDK extents) are other bytes, and
their hashes answer the other question: is this the evidence as received? A
:class:`ChainHasher` is a sink of the one disk-hash pass
(:class:`~selective_imager.collect.hashing.HashRun`): it reads each chain file once,
sequentially, in step with the pass (the share of chain bytes hashed follows the share
of the virtual disk hashed), so no second pass over the evidence is needed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from selective_imager.models import Digests

if TYPE_CHECKING:
    from collections.abc import Iterable

    from selective_imager.models import ChainFile, SourceInfo

# Formats whose chain files are not the disk's own bytes (a raw or split image's are).
VIRTUAL_DISK_FORMATS = frozenset({"vmdk", "vhd", "vhdx", "qcow", "qcow2"})
_READ = 4 << 20


@dataclass(frozen=True, slots=True)
class ChainFileHash:
    """One chain file's hash (``digests`` None when it was not read to its end)."""

    path: str
    role: str
    size: int
    bytes_hashed: int
    digests: Digests | None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``acquisition.json``)."""
        return {
            "path": self.path,
            "role": self.role,
            "size": self.size,
            "bytes_hashed": self.bytes_hashed,
            "digests": self.digests.as_dict() if self.digests else None,
            "error": self.error or None,
        }


def chain_hasher(info: SourceInfo, algorithms: Iterable[str]) -> ChainHasher | None:
    """A sink hashing ``info.chain`` for a virtual disk; None for other sources."""
    if info.format not in VIRTUAL_DISK_FORMATS or not info.chain:
        return None
    return ChainHasher(info.chain, info.size, algorithms)


class ChainHasher:
    """Hashes every chain file while the virtual disk is hashed (a HashRun sink).

    Called with ``(offset, data)`` for each chunk of the virtual disk, in order, from
    one worker thread at a time; a read error is recorded for its file, never raised.
    """

    def __init__(
        self, chain: Iterable[ChainFile], virtual_size: int, algorithms: Iterable[str]
    ) -> None:
        self.files = list(chain)
        self.algorithms = tuple(algorithms)
        self.total = sum(f.size for f in self.files)
        self.virtual_size = max(1, virtual_size)
        self._index = 0
        self._pos = 0
        self._done = 0
        self._fd: int | None = None
        self._hashers = self._new_hashers()
        self._results: list[ChainFileHash] = []
        self._error = ""

    def __call__(self, offset: int, data: memoryview) -> None:
        """Hash chain bytes up to the share of the virtual disk reached by this chunk."""
        end = offset + len(data)
        target = min(self.total, self.total * end // self.virtual_size)
        while self._index < len(self.files) and (
            self._done < target or self._pos >= self.files[self._index].size
        ):
            self._step(target)

    def results(self) -> tuple[ChainFileHash, ...]:
        """Every file's outcome: hashed, partly hashed (interrupted) or failed."""
        out = list(self._results)
        for i in range(self._index, len(self.files)):
            f = self.files[i]
            done = self._pos if i == self._index else 0
            out.append(ChainFileHash(f.path, f.role, f.size, done, None, self._error))
        self._close()
        return tuple(out)

    def _step(self, target: int) -> None:
        f = self.files[self._index]
        want = min(_READ, target - self._done, f.size - self._pos)
        data = b""
        if want > 0 and not self._error:
            try:
                if self._fd is None:
                    self._fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                data = os.pread(self._fd, want, self._pos)
            except OSError as exc:
                self._error = f"cannot read: {exc.strerror or exc}"
            if not self._error and len(data) < want:
                self._error = f"shorter than its {f.size} bytes at open"
        for hasher in self._hashers:
            hasher.update(data)
        # Failed bytes still count, so the other files keep in step with the pass.
        self._pos += want
        self._done += want
        if self._pos >= f.size:
            self._finish_file(f)

    def _finish_file(self, f: ChainFile) -> None:
        digests = None
        if not self._error:
            digests = Digests(tuple((a, h.hexdigest()) for a, h in zip(
                self.algorithms, self._hashers, strict=True)))
        hashed = 0 if self._error else self._pos
        self._results.append(ChainFileHash(f.path, f.role, f.size, hashed, digests, self._error))
        self._close()
        self._index += 1
        self._pos = 0
        self._error = ""
        self._hashers = self._new_hashers()

    def _new_hashers(self) -> list[Any]:
        return [hashlib.new(a) for a in self.algorithms]

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

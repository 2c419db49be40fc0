"""A FUSE file system serving one disk image with the faults of a dying disk.

Run as a child process (``python tests/faultyfs.py IMAGE MOUNTPOINT [faults]``); it
serves ``MOUNTPOINT/disk.raw``, a read-only view of IMAGE where reads touching chosen
512-byte sectors fail the way failing hardware does:

* ``--eio FIRST:COUNT``: the read fails with EIO (a medium error);
* ``--short FIRST:COUNT``: the read returns only the bytes before the first such sector;
* ``--hang FIRST:COUNT``: the read blocks for ``--hang-seconds`` (default 10), then
  fails with EIO, as a disk that retries internally before giving up. (Forever is
  not an option: the kernel lets a process that sent a FUSE read exit only once the
  read is answered.)

Every read is direct (``direct_io``): the page cache never answers for the kernel, so
each read of the tool reaches this process. Built on fusepy (ctypes over libfuse 2).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

SECTOR = 512
NAME = "disk.raw"


def _ranges(values: list[str]) -> list[tuple[int, int]]:
    """``FIRST:COUNT`` sector ranges as byte ``(start, end)`` pairs."""
    out = []
    for value in values:
        first, _, count = value.partition(":")
        out.append((int(first) * SECTOR, (int(first) + int(count or 1)) * SECTOR))
    return out


def _first_hit(ranges: list[tuple[int, int]], offset: int, size: int) -> int | None:
    """The first byte of ``[offset, offset+size)`` inside one of ``ranges``, or None."""
    hits = [max(lo, offset) for lo, hi in ranges if lo < offset + size and hi > offset]
    return min(hits) if hits else None


def serve(
    image: Path,
    mountpoint: Path,
    eio: list[str],
    short: list[str],
    hang: list[str],
    hang_seconds: float,
) -> None:
    """Mount and serve until unmounted (foreground)."""
    from fuse import FUSE, FuseOSError, Operations

    size = image.stat().st_size
    fd = os.open(image, os.O_RDONLY)
    bad, cut, stuck = _ranges(eio), _ranges(short), _ranges(hang)
    released = threading.Event()

    class Faulty(Operations):  # type: ignore[misc]
        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            now = int(time.time())
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_mtime": now}
            if path == "/" + NAME:
                return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": size,
                        "st_mtime": now}
            raise FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", NAME]

        def open(self, path: str, flags: int) -> int:
            if path != "/" + NAME:
                raise FuseOSError(errno.ENOENT)
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise FuseOSError(errno.EROFS)
            return 0

        def read(self, path: str, length: int, offset: int, fh: int) -> bytes:
            if _first_hit(stuck, offset, length) is not None:
                released.wait(hang_seconds)  # a dying disk retrying, then giving up
                raise FuseOSError(errno.EIO)
            if _first_hit(bad, offset, length) is not None:
                raise FuseOSError(errno.EIO)
            end = _first_hit(cut, offset, length)
            if end is not None:
                length = end - offset
            return os.pread(fd, length, offset)

        def destroy(self, path: str) -> None:
            released.set()

    FUSE(Faulty(), str(mountpoint), foreground=True, ro=True, direct_io=True, nothreads=False)


@contextlib.contextmanager
def faulty_mount(
    image: Path,
    mountpoint: Path,
    *,
    eio: tuple[str, ...] = (),
    short: tuple[str, ...] = (),
    hang: tuple[str, ...] = (),
    hang_seconds: float = 10.0,
) -> Iterator[Path]:
    """Serve ``image`` with faults at ``mountpoint``; yields the path of the faulty file."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, __file__, str(image), str(mountpoint), "--hang-seconds", str(hang_seconds)]
    for flag, values in (("--eio", eio), ("--short", short), ("--hang", hang)):
        for value in values:
            args += [flag, value]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if os.path.ismount(mountpoint):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"faultyfs exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{mountpoint} was not mounted")
        yield mountpoint / NAME
    finally:
        # Lazy: a read the tool abandoned may still be blocked inside the mount.
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    """Command line of the child process."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("mountpoint", type=Path)
    ap.add_argument("--eio", action="append", default=[])
    ap.add_argument("--short", action="append", default=[])
    ap.add_argument("--hang", action="append", default=[])
    ap.add_argument("--hang-seconds", type=float, default=10.0)
    args = ap.parse_args()
    serve(args.image, args.mountpoint, args.eio, args.short, args.hang, args.hang_seconds)


if __name__ == "__main__":
    main()

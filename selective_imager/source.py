"""Open a source read-only: a raw/dd image, a split raw image, an E01 or a device.

The result is a :class:`Source`: a :class:`~selective_imager.streams.ByteStream`
over the whole media plus a :class:`~selective_imager.models.SourceInfo` saying what it
is. Nothing here ever opens a file for writing.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager.errors import SourceError, short_error
from selective_imager.models import SourceInfo
from selective_imager.streams import ByteStream, ConcatStream, FileStream, LibyalStream

if TYPE_CHECKING:
    from types import TracebackType

# E01 (EWF-E01/EWF-S01 "EVF") and Ex01 ("EVF2"), L01 (logical: "LVF") signatures.
_EVF_SIGNATURES = (b"EVF\x09\x0d\x0a\xff\x00", b"EVF2\x0d\x0a\x81\x00", b"LVF\x09\x0d\x0a\xff\x00")
# Containers we recognise but do not read: a clear message beats "no partition table".
_UNSUPPORTED = (
    (b"\x1f\x8b", "is gzip-compressed: decompress it first (gzip allows no random access)"),
    (b"KDMV", "is a VMDK virtual disk: convert it to raw (qemu-img convert -O raw) first"),
    (b"vhdxfile", "is a VHDX virtual disk: convert it to raw first"),
    (b"QFI\xfb", "is a QCOW virtual disk: convert it to raw (qemu-img convert -O raw) first"),
    (b"BZh", "is bzip2-compressed: decompress it first"),
    (b"\xfd7zXZ\x00", "is xz-compressed: decompress it first"),
    (b"PK\x03\x04", "is a ZIP file, not a disk image (a selective-imager container? use show)"),
)
_WINDOWS_DEVICE = re.compile(r"^\\\\[.?]\\", re.IGNORECASE)
_SPLIT_NUMERIC = re.compile(r"^(?P<base>.*\.)(?P<num>\d{3})$")
_SPLIT_ALPHA = re.compile(r"^(?P<base>.*\.)(?P<alpha>[a-z]{2,3})$")

# Linux ioctls (asm-generic): BLKGETSIZE64 = _IOR(0x12, 114, size_t), BLKSSZGET = _IO(0x12, 104).
_BLKGETSIZE64 = 0x80081272
_BLKSSZGET = 0x1268


@dataclass(slots=True)
class Source:
    """An open source: its stream and what it is. Close it when done."""

    info: SourceInfo
    stream: ByteStream
    _backend: Any = None

    def close(self) -> None:
        """Release the files and handles of the source."""
        self.stream.close()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(path: str | os.PathLike[str]) -> Source:
    """Open ``path`` read-only as a source, detecting its kind.

    Raises:
        SourceError: the path does not exist, is a directory, is empty, or the image
            is damaged (e.g. an E01 segment is missing).
    """
    text = os.fspath(path)
    if _WINDOWS_DEVICE.match(text):
        return _open_windows_device(text)
    try:
        st = Path(text).stat()
    except FileNotFoundError:
        raise SourceError(f"{text}: no such file or device") from None
    except OSError as exc:
        raise SourceError(f"{text}: cannot access: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{text}: is a directory, not a disk image or device")
    if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return _open_unix_device(text)
    if st.st_size == 0:
        raise SourceError(f"{text}: empty file")
    head = _read_head(text, 16)
    if any(head.startswith(sig) for sig in _EVF_SIGNATURES):
        return _open_ewf(text)
    for signature, what in _UNSUPPORTED:
        if head.startswith(signature):
            raise SourceError(f"{text}: {what}")
    parts = _split_parts(text)
    if len(parts) > 1:
        return _open_split(text, parts)
    stream = _file_stream(text, st.st_size)
    info = SourceInfo(
        path=text,
        format="raw",
        size=st.st_size,
        sector_size=detect_sector_size(stream),
        segments=(text,),
    )
    return Source(info, stream)


def _read_head(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _file_stream(path: str, size: int) -> FileStream:
    try:
        return FileStream(path, size)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open: {exc.strerror or exc}") from exc


def detect_sector_size(stream: ByteStream) -> int:
    """512, or 4096 when a GPT header sits at 4096 and not at 512 (4Kn disks)."""
    if stream.read_at(512, 8) != b"EFI PART" and stream.read_at(4096, 8) == b"EFI PART":
        return 4096
    return 512


def _split_parts(path: str) -> list[str]:
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


def _open_split(path: str, parts: list[str]) -> Source:
    streams = [_file_stream(p, Path(p).stat().st_size) for p in parts]
    stream = ConcatStream(streams)
    info = SourceInfo(
        path=path,
        format="split-raw",
        size=stream.size,
        sector_size=detect_sector_size(stream),
        segments=tuple(parts),
    )
    return Source(info, stream)


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
    )
    return Source(info, stream, handle)


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


def _open_unix_device(path: str) -> Source:
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open device: {exc.strerror or exc}") from exc
    try:
        size = struct.unpack("<Q", fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8))[0]
    except OSError:
        # Character devices and some platforms: fall back to seeking to the end.
        size = os.lseek(fd, 0, os.SEEK_END)
    try:
        sector = struct.unpack("<i", fcntl.ioctl(fd, _BLKSSZGET, b"\0" * 4))[0]
    except OSError:
        sector = 512
    if size == 0:
        os.close(fd)
        raise SourceError(f"{path}: device reports size 0 (no media?)")
    stream = FileStream(path, size, alignment=1, fd=fd)
    details = _sysfs_details(path)
    info = SourceInfo(
        path=path,
        format="device",
        size=size,
        sector_size=sector,
        segments=(path,),
        is_device=True,
        details=details,
    )
    return Source(info, stream)


def _sysfs_details(path: str) -> dict[str, str]:
    """Model, serial and vendor from /sys for a Linux block device (best effort)."""
    details: dict[str, str] = {}
    name = Path(os.path.realpath(path)).name
    base = Path("/sys/class/block") / name
    if not base.exists():
        return details
    device = base / "device"
    if not device.exists():  # a partition: its parent disk holds the device facts
        device = base.parent / "device" if (base / "partition").exists() else device
    for key, rel in (("model", "model"), ("vendor", "vendor"), ("serial", "serial")):
        try:
            value = (device / rel).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if value:
            details[f"device.{key}"] = value
    try:
        details["device.removable"] = (base / "removable").read_text().strip()
    except OSError:
        pass
    return details


def _open_windows_device(path: str) -> Source:
    r"""``\\.\PhysicalDriveN`` or ``\\.\C:``: unbuffered device reads must be sector aligned."""
    if sys.platform != "win32":
        raise SourceError(f"{path}: Windows device paths can only be opened on Windows")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise SourceError(f"{path}: cannot open device: {exc.strerror or exc}") from exc
    size, sector = _windows_geometry(fd)
    if size <= 0:
        os.close(fd)
        raise SourceError(f"{path}: cannot determine the device size")
    # Aligning to 4096 is also aligned for 512-byte sector devices.
    stream = FileStream(path, size, alignment=max(sector, 4096), fd=fd)
    info = SourceInfo(
        path=path,
        format="device",
        size=size,
        sector_size=sector,
        segments=(path,),
        is_device=True,
    )
    return Source(info, stream)


def _windows_geometry(fd: int) -> tuple[int, int]:  # pragma: no cover - Windows only
    """Size and sector size from IOCTL_DISK_GET_DRIVE_GEOMETRY_EX / GET_LENGTH_INFO."""
    import ctypes
    import msvcrt
    from ctypes import wintypes

    handle = msvcrt.get_osfhandle(fd)  # type: ignore[attr-defined]
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    returned = wintypes.DWORD()
    geometry = ctypes.create_string_buffer(256)
    sector = 512
    if kernel32.DeviceIoControl(
        handle, 0x700A0, None, 0, geometry, len(geometry), ctypes.byref(returned), None
    ):
        # DISK_GEOMETRY_EX: Cylinders(8) MediaType(4) TracksPerCylinder(4)
        # SectorsPerTrack(4) BytesPerSector(4) DiskSize(8) ...
        sector = int.from_bytes(geometry.raw[20:24], "little") or 512
        size = int.from_bytes(geometry.raw[24:32], "little")
        if size:
            return size, sector
    length = ctypes.create_string_buffer(8)
    if kernel32.DeviceIoControl(handle, 0x7405C, None, 0, length, 8, ctypes.byref(returned), None):
        return int.from_bytes(length.raw, "little"), sector
    return os.lseek(fd, 0, os.SEEK_END), sector

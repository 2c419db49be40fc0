"""Block and character devices: Linux ``/dev/sdX`` (ioctl size and sector size, sysfs
model and serial) and Windows ``\\\\.\\PhysicalDriveN`` (sector-aligned reads).

Devices are recognised by what the path is (a device node or a Windows device
path), not by content, so they are not in the content registry.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from selective_imager.errors import SourceError
from selective_imager.models import SourceInfo
from selective_imager.sources.base import Source
from selective_imager.streams import FileStream

_WINDOWS_DEVICE = re.compile(r"^\\\\[.?]\\", re.IGNORECASE)
# Linux ioctls (asm-generic): BLKGETSIZE64 = _IOR(0x12, 114, size_t), BLKSSZGET = _IO(0x12, 104).
_BLKGETSIZE64 = 0x80081272
_BLKSSZGET = 0x1268


def is_windows_device_path(path: str) -> bool:
    r"""``\\.\PhysicalDrive0``, ``\\?\…`` or ``\\.\C:``."""
    return bool(_WINDOWS_DEVICE.match(path))


def open_unix_device(path: str) -> Source:
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


def open_windows_device(path: str) -> Source:
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

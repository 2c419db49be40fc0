"""The kernel's view of mounts and block devices on Linux.

References: ``Documentation/filesystems/proc.rst`` (section "/proc/<pid>/mountinfo":
the fields and the ``\\ooo`` octal escapes), ``Documentation/ABI/stable/sysfs-block``
(``/sys/block/<disk>/{dev,size,slaves,holders,partition}``), ``sysfs-block-dm``
(``dm/name``, ``dm/uuid``: ``CRYPT-`` for dm-crypt, ``LVM-`` for LVM) and
``sysfs-block-loop`` (``loop/backing_file``). Nothing here writes anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
SYS_DEV_BLOCK = Path("/sys/dev/block")
SYS_CLASS_BLOCK = Path("/sys/class/block")
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of ``/proc/self/mountinfo``.

    Attributes:
        mount_id: the mount's id.
        major, minor: ``st_dev`` of files on this mount (anonymous ``0:N`` for FUSE,
            btrfs and pseudo file systems).
        root: the directory of the file system mounted here (not ``/`` for a bind mount).
        mountpoint: where it is mounted.
        fstype: the file-system type (``ext4``, ``fuseblk``...).
        source: the mount source (``/dev/loop0``, ``proc``...).
    """

    mount_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    fstype: str
    source: str

    @property
    def st_dev(self) -> int:
        """The ``st_dev`` of files on this mount."""
        return os.makedev(self.major, self.minor)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``mountinfo`` text (lines it cannot parse are left out)."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        try:
            mounts.append(
                Mount(
                    mount_id=int(fields[0]),
                    major=int(major),
                    minor=int(minor),
                    root=_unescape(fields[3]),
                    mountpoint=_unescape(fields[4]),
                    fstype=tail[0],
                    source=_unescape(tail[1]),
                )
            )
        except ValueError:
            continue
    return mounts


def read_mounts(path: Path = MOUNTINFO) -> list[Mount]:
    """The mounts this process sees."""
    return parse_mountinfo(path.read_text(encoding="utf-8", errors="surrogateescape"))


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """A block device as sysfs describes it.

    Attributes:
        name: kernel name (``sda3``, ``dm-0``, ``loop1``).
        major, minor: its device number.
        size: bytes (sysfs counts 512-byte units whatever the sector size).
        kind: ``disk``, ``partition``, ``loop``, ``dm-crypt``, ``lvm``, ``dm``, ``md``.
        detail: what sysfs says about that kind (dm name and uuid prefix, the loop's
            backing file, the md level, the partition number).
        slaves: kernel names of the devices it is built on.
        whole_disk: the disk a partition belongs to (its own name otherwise).
    """

    name: str
    major: int
    minor: int
    size: int
    kind: str
    detail: str
    slaves: tuple[str, ...]
    whole_disk: str

    @property
    def path(self) -> str:
        """Its node under ``/dev``."""
        return f"/dev/{self.name}"

    @property
    def rdev(self) -> int:
        """Its device number as ``st_rdev``."""
        return os.makedev(self.major, self.minor)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def device_by_number(major: int, minor: int) -> BlockDevice | None:
    """The block device ``major:minor`` (None when the kernel knows no such one)."""
    link = SYS_DEV_BLOCK / f"{major}:{minor}"
    if not link.exists():
        return None
    return device_by_name(Path(os.path.realpath(link)).name)


def device_by_name(name: str) -> BlockDevice | None:
    """The block device with kernel name ``name`` (None when there is none)."""
    base = SYS_CLASS_BLOCK / name
    dev = _read(base / "dev")
    if not dev:
        return None
    major, _, minor = dev.partition(":")
    slaves_dir = base / "slaves"
    slaves = tuple(sorted(p.name for p in slaves_dir.iterdir())) if slaves_dir.is_dir() else ()
    whole = Path(os.path.realpath(base)).parent.name if (base / "partition").exists() else name
    kind, detail = _kind(base, name)
    try:
        size = int(_read(base / "size") or 0) * 512
    except ValueError:
        size = 0
    return BlockDevice(name, int(major), int(minor), size, kind, detail, slaves, whole)


def _kind(base: Path, name: str) -> tuple[str, str]:
    """What sort of device ``base`` is, and the sysfs fact that says so."""
    if (base / "partition").exists():
        return "partition", f"partition {_read(base / 'partition')}"
    if (base / "dm").is_dir():
        uuid = _read(base / "dm" / "uuid")
        dm_name = _read(base / "dm" / "name")
        if uuid.startswith("CRYPT-"):
            # CRYPT-LUKS2-<uuid>-<name>, CRYPT-LUKS1-..., CRYPT-PLAIN-...
            return "dm-crypt", f"{uuid.split('-')[1]} (dm name {dm_name})"
        if uuid.startswith("LVM-"):
            return "lvm", f"LVM logical volume {dm_name}"
        return "dm", f"device-mapper {dm_name}"
    if (base / "loop").is_dir():
        return "loop", f"backing file {_read(base / 'loop' / 'backing_file') or '?'}"
    if (base / "md").is_dir():
        return "md", f"md {_read(base / 'md' / 'level')}"
    return "disk", ""


def holders(name: str) -> list[str]:
    """Kernel names of the devices built on ``name`` (and on its partitions), recursively."""
    found: list[str] = []
    todo = [name, *partitions(name)]
    while todo:
        current = todo.pop()
        hold = SYS_CLASS_BLOCK / current / "holders"
        for child in sorted(hold.iterdir()) if hold.is_dir() else ():
            if child.name not in found:
                found.append(child.name)
                todo.append(child.name)
    return found


def partitions(name: str) -> list[str]:
    """Kernel names of a whole disk's partitions (``sda1``...)."""
    base = SYS_CLASS_BLOCK / name
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "partition").exists())


def describe_stack(name: str) -> str:
    """``dm-0 = dm-crypt LUKS2 (dm name root) on sda3 = partition 3 of sda``."""
    dev = device_by_name(name)
    if dev is None:
        return name
    what = dev.kind if not dev.detail else f"{dev.kind} {dev.detail}"
    if dev.kind == "partition":
        what = f"{dev.detail} of {dev.whole_disk}"
    text = f"{name} = {what}"
    if dev.slaves:
        text += " on " + " + ".join(describe_stack(s) for s in dev.slaves)
    return text


def bottom_disks(name: str) -> list[str]:
    """The whole disks a device is built on (itself when it is one)."""
    dev = device_by_name(name)
    if dev is None:
        return []
    if dev.slaves:
        out: list[str] = []
        for slave in dev.slaves:
            out += [d for d in bottom_disks(slave) if d not in out]
        return out
    return [dev.whole_disk]

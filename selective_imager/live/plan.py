"""Which block devices ``collect --live`` reads, and where it must not write.

Each device behind a mounted local file system is one source (``--device`` narrows
them down). The device read is the one the file system is mounted from: a partition,
a loop device, an LVM volume, an md array, or the open dm-crypt mapping, whose
``/dev/dm-N`` is the plaintext the file system sees. Pseudo, memory and network
file systems have no block device and are listed as skipped.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selective_imager.errors import SourceError
from selective_imager.live.blockdev import (
    BlockDevice,
    Mount,
    describe_stack,
    device_by_name,
    device_by_number,
    holders,
    partitions,
    read_mounts,
)

# Types whose source is another machine (FUSE ones are fuse.<name>).
NETWORK_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "davfs",
     "fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.glusterfs", "lustre", "ncpfs"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LiveSource:
    """One device to read and what is mounted from it.

    Attributes:
        device: the block device.
        mounts: its mounts (bind mounts included; empty when it is not mounted).
        stack: the layers the kernel shows beneath it (``dm-0 = dm-crypt LUKS2 ... on sda3``).
        note: what reading it means (the plaintext of an open dm-crypt mapping...).
    """

    device: BlockDevice
    mounts: tuple[Mount, ...]
    stack: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        """The ``live.device`` object of ``acquisition.json``."""
        return {
            "path": self.device.path,
            "name": self.device.name,
            "dev": f"{self.device.major}:{self.device.minor}",
            "kind": self.device.kind,
            "size": self.device.size,
            "stack": self.stack,
            "note": self.note,
            "mounts": [mount_record(m) for m in self.mounts],
        }


@dataclass(slots=True)
class LivePlan:
    """The devices of a live collection and the file systems left out (with why)."""

    sources: list[LiveSource] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def mount_record(mount: Mount) -> dict[str, Any]:
    """A mount as JSON."""
    return {
        "mountpoint": mount.mountpoint,
        "fstype": mount.fstype,
        "source": mount.source,
        "root": mount.root,
        "dev": f"{mount.major}:{mount.minor}",
    }


def mount_device(mount: Mount) -> BlockDevice | None:
    """The block device a mount's file system lives on, or None (pseudo, network).

    FUSE block file systems (ntfs-3g's ``fuseblk``) and btrfs have an anonymous
    ``st_dev``: their device is the mount source when that is a block device node.
    """
    if mount.major != 0:
        return device_by_number(mount.major, mount.minor)
    if mount.fstype in NETWORK_TYPES or not mount.source.startswith("/"):
        return None
    try:
        st = Path(mount.source).stat()
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return device_by_number(os.major(st.st_rdev), os.minor(st.st_rdev))


def _skip_reason(mount: Mount) -> str:
    if mount.fstype in NETWORK_TYPES or ":" in mount.source or mount.source.startswith("//"):
        return "network file system: not on a local device"
    if mount.fstype == "overlay":
        return "overlay: its layers are directories of other mounts"
    return "pseudo or memory file system: no block device"


def plan_live(devices: tuple[str, ...] = (), mounts: list[Mount] | None = None) -> LivePlan:
    """The devices to read: ``devices`` (paths), or every one behind a local mount.

    Raises:
        SourceError: a ``--device`` is not a block device, or none is found.
    """
    mounts = read_mounts() if mounts is None else mounts
    plan = LivePlan()
    by_device: dict[str, list[Mount]] = {}
    found: dict[str, BlockDevice] = {}
    for mount in mounts:
        dev = mount_device(mount)
        if dev is None:
            plan.skipped.append({**mount_record(mount), "reason": _skip_reason(mount)})
            continue
        by_device.setdefault(dev.name, []).append(mount)
        found[dev.name] = dev
    wanted = [_named_device(path) for path in devices] if devices else list(found.values())
    for dev in wanted:
        plan.sources.append(
            LiveSource(dev, tuple(by_device.get(dev.name, ())), describe_stack(dev.name), _note(dev))
        )
    if not plan.sources:
        raise SourceError("--live: no block device is behind a mounted local file system")
    return plan


def _named_device(path: str) -> BlockDevice:
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise SourceError(f"--device {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise SourceError(f"--device {path}: not a block device")
    dev = device_by_number(os.major(st.st_rdev), os.minor(st.st_rdev))
    if dev is None:
        raise SourceError(f"--device {path}: the kernel lists no such block device")
    return dev


def _note(dev: BlockDevice) -> str:
    if dev.kind == "dm-crypt":
        under = " + ".join(dev.slaves) or "?"
        return (
            f"{dev.path} is an open dm-crypt mapping: its plaintext is read (what the "
            f"mounted file system sees), not the ciphertext on {under}"
        )
    if dev.kind == "partition":
        return f"partition of {dev.whole_disk}: only this partition is read"
    return ""


def protected_st_devs(source: LiveSource, mounts: list[Mount]) -> set[int]:
    """``st_dev`` of every mount whose writes would change ``source``'s bytes.

    That is every mount (bind mounts included) of the device itself, of its
    partitions and of every device built on it (dm-crypt, LVM, md holders).
    """
    names = {source.device.name, *partitions(source.device.name), *holders(source.device.name)}
    devs: set[int] = set()
    for mount in mounts:
        dev = mount_device(mount)
        if dev is not None and dev.name in names:
            devs.add(mount.st_dev)
    for name in names:
        other = device_by_name(name)
        if other is not None:
            devs.add(other.rdev)
    return devs


def refuse_output_on_sources(plan: LivePlan, output: Path, mounts: list[Mount] | None = None) -> None:
    """Refuse an output whose directory lies on a file system of a device being read.

    Raises:
        SourceError: it does (one line, naming the device and the mount).
    """
    mounts = read_mounts() if mounts is None else mounts
    directory = output.resolve().parent
    try:
        out_dev = directory.stat().st_dev
    except OSError as exc:
        raise SourceError(f"{output}: cannot check its directory: {exc.strerror or exc}") from exc
    for source in plan.sources:
        if out_dev in protected_st_devs(source, mounts):
            where = next((m.mountpoint for m in mounts if m.st_dev == out_dev), str(directory))
            raise SourceError(
                f"{output}: lies on {where}, a file system of {source.device.path} which is "
                "being read (writing there changes the evidence; --allow-output-on-source to do it anyway)"
            )


def live_outputs(plan: LivePlan, output: Path) -> list[Path]:
    """One container per device: ``output`` itself for one, ``<stem>-<device><suffix>`` for more."""
    if len(plan.sources) == 1:
        return [output]
    name = output.name
    suffix = ".zip.age" if name.endswith(".zip.age") else output.suffix
    stem = name[: len(name) - len(suffix)] if suffix else name
    return [output.with_name(f"{stem}-{s.device.name}{suffix}") for s in plan.sources]

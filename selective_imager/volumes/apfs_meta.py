"""Facts of an APFS container that pyfsapfs does not expose: case sensitivity, roles,
encryption flags and snapshots.

Read-only and small: the newest valid container superblock of the checkpoint
descriptor area, the container object map (a B-tree of virtual object ids), each
volume superblock, and each volume's snapshot metadata tree. Every object's Fletcher-64
checksum is checked; a damaged object is reported, never guessed around.

References:
    - Apple, "Apple File System Reference" (2020-06-22): obj_phys_t, nx_superblock_t,
      checkpoint_map_phys_t, omap_phys_t, btree_node_phys_t, apfs_superblock_t,
      j_snap_metadata_val_t.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from selective_imager.errors import VolumeSystemError
from selective_imager.models import Timestamp

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selective_imager.streams import ByteStream

NX_MAGIC = b"NXSB"
_APSB_MAGIC = b"APSB"
_OBJ_HEADER = 32
_OBJ_STORAGE_MASK = 0xC0000000
_OBJ_PHYSICAL = 0x40000000
_OBJ_VIRTUAL = 0x00000000
# btree_node_phys_t flags and layout.
_BTNODE_LEAF = 0x2
_BTNODE_FIXED = 0x4
_BTNODE_ROOT = 0x1
_BTREE_INFO_SIZE = 40
_NODE_DATA = 56
# apfs_superblock_t flags.
_INCOMPAT_CASE_INSENSITIVE = 0x1
_FS_UNENCRYPTED = 0x1
_ROLES = {
    0x0000: "none",
    0x0001: "system",
    0x0002: "user",
    0x0004: "recovery",
    0x0008: "vm",
    0x0010: "preboot",
    0x0020: "installer",
    0x0040: "data",
    0x0080: "baseband",
    0x0100: "update",
    0x0140: "xart",
    0x0180: "hardware",
    0x01C0: "backup",
    0x0200: "sidecar",
    0x0240: "enterprise",
    0x0280: "prelogin",
}
# j_key_t: the record type is in the top four bits of obj_id_and_type.
_TYPE_SHIFT = 60
_TYPE_SNAP_METADATA = 1
_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One snapshot of a volume: its transaction id, name and creation time."""

    xid: int
    name: str
    created: Timestamp

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"xid": self.xid, "name": self.name, "created": self.created.isoformat()}


@dataclass(frozen=True, slots=True)
class VolumeFacts:
    """What a volume superblock says (secret-free).

    Attributes:
        identifier: the volume UUID.
        name: the volume name.
        role: ``system``, ``data``, ``preboot``... (``none`` when unset).
        case_sensitive: False when the volume folds case (the macOS default).
        encrypted: the volume is not flagged unencrypted (FileVault or a per-file-key
            volume).
        snapshot_count: ``apfs_num_snapshots``.
        snapshots: the snapshot metadata records found.
        problem: why the snapshots could not be listed ("" when they were).
    """

    identifier: str
    name: str
    role: str
    case_sensitive: bool
    encrypted: bool
    snapshot_count: int
    snapshots: tuple[Snapshot, ...] = ()
    problem: str = ""


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    """What the newest container superblock says."""

    identifier: str
    block_size: int
    block_count: int
    xid: int
    volumes: tuple[VolumeFacts, ...]


def is_apfs_container(stream: ByteStream) -> bool:
    """The ``NXSB`` magic of block 0 (position-safe)."""
    return stream.read_at(_OBJ_HEADER, 4) == NX_MAGIC


def read_container(stream: ByteStream) -> ContainerFacts:
    """The container's facts and those of every volume it lists.

    Raises:
        VolumeSystemError: no valid container superblock, or a damaged object map.
    """
    reader = _Reader(stream)
    nx = reader.superblock()
    bs = reader.block_size
    omap_tree = reader.omap_tree(struct.unpack_from("<Q", nx, 160)[0])
    max_fs = struct.unpack_from("<I", nx, 180)[0]
    volumes: list[VolumeFacts] = []
    for i in range(min(max_fs, 100)):
        oid = struct.unpack_from("<Q", nx, 184 + 8 * i)[0]
        if oid:
            paddr = reader.omap_lookup(omap_tree, oid)
            volumes.append(reader.volume(paddr))
    return ContainerFacts(
        identifier=str(uuid.UUID(bytes=nx[72:88])),
        block_size=bs,
        block_count=struct.unpack_from("<Q", nx, 40)[0],
        xid=struct.unpack_from("<Q", nx, 16)[0],
        volumes=tuple(volumes),
    )


class _Reader:
    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        head = stream.read_at(0, 4096)
        if head[_OBJ_HEADER : _OBJ_HEADER + 4] != NX_MAGIC:
            raise VolumeSystemError("APFS: no container superblock")
        self.block_size = struct.unpack_from("<I", head, 36)[0]
        if self.block_size < 4096 or self.block_size > 65536 or self.block_size & 4095:
            raise VolumeSystemError(f"APFS: implausible block size {self.block_size}")

    def block(self, number: int, what: str) -> bytes:
        data = self.stream.read_at(number * self.block_size, self.block_size)
        if len(data) < self.block_size:
            raise VolumeSystemError(f"APFS: {what} at block {number} lies beyond the image")
        if not _checksum_ok(data):
            raise VolumeSystemError(f"APFS: {what} at block {number} is damaged (checksum)")
        return data

    def superblock(self) -> bytes:
        """The valid NXSB with the highest xid: block 0, or one in the checkpoint area."""
        best: bytes | None = None
        try:
            best = self.block(0, "container superblock")
        except VolumeSystemError:
            best = None
        base = best if best is not None else self.stream.read_at(0, self.block_size)
        desc_blocks, _, desc_base = struct.unpack_from("<IIQ", base, 104)
        if not desc_blocks & 0x80000000:  # a contiguous descriptor area
            for i in range(min(desc_blocks, 4096)):
                data = self.stream.read_at((desc_base + i) * self.block_size, self.block_size)
                if data[_OBJ_HEADER : _OBJ_HEADER + 4] != NX_MAGIC or not _checksum_ok(data):
                    continue
                if best is None or _xid(data) > _xid(best):
                    best = data
        if best is None:
            raise VolumeSystemError("APFS: every container superblock is damaged (checksum)")
        return best

    def omap_tree(self, omap_oid: int) -> int:
        omap = self.block(omap_oid, "object map")
        return int(struct.unpack_from("<Q", omap, 48)[0])

    def omap_lookup(self, tree: int, oid: int) -> int:
        """The physical address of the newest version of virtual object ``oid``."""
        best_xid, best_paddr = -1, None
        for key, value in self.records(tree, fixed=(16, 16), resolve=None):
            k_oid, k_xid = struct.unpack("<QQ", key[:16])
            if k_oid == oid and k_xid > best_xid:
                best_xid, best_paddr = k_xid, struct.unpack_from("<Q", value, 8)[0]
        if best_paddr is None:
            raise VolumeSystemError(f"APFS: object {oid} is not in the object map")
        return int(best_paddr)

    def records(
        self, root: int, fixed: tuple[int, int] | None, resolve: int | None, depth: int = 0
    ) -> Iterator[tuple[bytes, bytes]]:
        """Every leaf (key, value) of a B-tree, in order. ``resolve``: an omap tree for
        virtual child ids (None: children are physical)."""
        if depth > _MAX_DEPTH:
            raise VolumeSystemError("APFS: B-tree too deep (loop?)")
        node = self.block(root, "B-tree node")
        flags, _level, nkeys = struct.unpack_from("<HHI", node, 32)
        toc_off, toc_len = struct.unpack_from("<HH", node, 40)
        keys_start = _NODE_DATA + toc_off + toc_len
        vals_end = self.block_size - (_BTREE_INFO_SIZE if flags & _BTNODE_ROOT else 0)
        leaf = bool(flags & _BTNODE_LEAF)
        for i in range(nkeys):
            if flags & _BTNODE_FIXED:
                k_off, v_off = struct.unpack_from("<HH", node, _NODE_DATA + toc_off + 4 * i)
                k_len = fixed[0] if fixed else 16
                v_len = (fixed[1] if fixed else 16) if leaf else 8
            else:
                k_off, k_len, v_off, v_len = struct.unpack_from(
                    "<HHHH", node, _NODE_DATA + toc_off + 8 * i
                )
            key = node[keys_start + k_off : keys_start + k_off + k_len]
            value = node[vals_end - v_off : vals_end - v_off + v_len]
            if leaf:
                yield key, value
            else:
                child = struct.unpack_from("<Q", value)[0]
                if resolve is not None:
                    child = self.omap_lookup(resolve, child)
                yield from self.records(child, fixed, resolve, depth + 1)

    def volume(self, paddr: int) -> VolumeFacts:
        sb = self.block(paddr, "volume superblock")
        if sb[32:36] != _APSB_MAGIC:
            raise VolumeSystemError(f"APFS: no volume superblock at block {paddr}")
        incompat = struct.unpack_from("<Q", sb, 56)[0]
        fs_flags = struct.unpack_from("<Q", sb, 264)[0]
        role = struct.unpack_from("<H", sb, 964)[0]
        count = struct.unpack_from("<Q", sb, 216)[0]
        snapshots: tuple[Snapshot, ...] = ()
        problem = ""
        if count:
            try:
                snapshots = self.snapshots(sb)
            except VolumeSystemError as exc:
                problem = str(exc)
        return VolumeFacts(
            identifier=str(uuid.UUID(bytes=sb[240:256])),
            name=sb[704:960].split(b"\0", 1)[0].decode("utf-8", "replace"),
            role=_ROLES.get(role, f"0x{role:04x}"),
            case_sensitive=not incompat & _INCOMPAT_CASE_INSENSITIVE,
            encrypted=not fs_flags & _FS_UNENCRYPTED,
            snapshot_count=int(count),
            snapshots=snapshots,
            problem=problem,
        )

    def snapshots(self, sb: bytes) -> tuple[Snapshot, ...]:
        tree_type = struct.unpack_from("<I", sb, 124)[0]
        tree_oid = struct.unpack_from("<Q", sb, 152)[0]
        resolve = None
        if tree_type & _OBJ_STORAGE_MASK == _OBJ_VIRTUAL:
            resolve = self.omap_tree(struct.unpack_from("<Q", sb, 128)[0])
            tree_oid = self.omap_lookup(resolve, tree_oid)
        elif tree_type & _OBJ_STORAGE_MASK != _OBJ_PHYSICAL:
            raise VolumeSystemError("APFS: snapshot tree of an unexpected storage type")
        out: list[Snapshot] = []
        for key, value in self.records(tree_oid, fixed=None, resolve=resolve):
            head = struct.unpack_from("<Q", key)[0]
            if head >> _TYPE_SHIFT != _TYPE_SNAP_METADATA or len(value) < 50:
                continue
            create_time = struct.unpack_from("<Q", value, 16)[0]
            name_len = struct.unpack_from("<H", value, 48)[0]
            name = value[50 : 50 + name_len].split(b"\0", 1)[0].decode("utf-8", "replace")
            out.append(
                Snapshot(head & ((1 << _TYPE_SHIFT) - 1), name, Timestamp(int(create_time), 1))
            )
        return tuple(out)


def _xid(obj: bytes) -> int:
    return int(struct.unpack_from("<Q", obj, 16)[0])


def _checksum_ok(block: bytes) -> bool:
    """Fletcher-64 over the block after the checksum field, as obj_phys_t defines."""
    words = struct.unpack_from(f"<{(len(block) - 8) // 4}I", block, 8)
    mod = 0xFFFFFFFF
    s1 = s2 = 0
    for w in words:
        s1 = (s1 + w) % mod
        s2 = (s2 + s1) % mod
    c1 = mod - ((s1 + s2) % mod)
    c2 = mod - ((s1 + c1) % mod)
    return bool(struct.unpack_from("<Q", block)[0] == (c2 << 32) | c1)

"""Hidden areas at the end of an ATA disk: HPA and DCO, through SG_IO.

References: ATA/ATAPI Command Set (ACS-3, T13/2161-D) 7.12 IDENTIFY DEVICE (words
10-19 serial, 23-26 firmware, 27-46 model, 60-61 LBA28 sectors, 82 bit 10 HPA
supported, 83 bits 10/11 48-bit and DCO supported, 100-103 LBA48 sectors, 255 the
integrity word), ATA8-ACS READ NATIVE MAX ADDRESS EXT (27h) and DEVICE CONFIGURATION
IDENTIFY (B1h/C2h, words 3-6 the maximum LBA); SCSI/ATA Translation (SAT-3, T10/2126-D)
12.2 ATA PASS-THROUGH (16) and 12.2.5 the ATA Status Return sense descriptor (09h);
Linux ``include/scsi/sg.h`` (``struct sg_io_hdr``, ``SG_IO``).

Only commands that read are sent (IDENTIFY DEVICE, READ NATIVE MAX ADDRESS EXT,
DEVICE CONFIGURATION IDENTIFY); never SET MAX or any DCO change. Devices that are not
ATA disks (loop, device-mapper, md, NVMe, virtio, zram) get "not applicable".
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from typing import Any

_SG_IO = 0x2285
_SG_DXFER_NONE = -1
_SG_DXFER_FROM_DEV = -3
_IDENTIFY = 0xEC
_READ_NATIVE_MAX_EXT = 0x27
_DCO = 0xB1
_DCO_IDENTIFY = 0xC2

# Kernel name prefixes of devices that are not ATA disks, and why.
NOT_ATA = (
    ("loop", "a loop device (a file), no ATA disk behind it"),
    ("dm-", "a device-mapper device, not a disk: its disks are reported below it"),
    ("md", "an md array, not a disk: its member disks are reported"),
    ("nvme", "an NVMe device: HPA and DCO are ATA features"),
    ("vd", "a virtio virtual disk: no ATA command set"),
    ("xvd", "a Xen virtual disk: no ATA command set"),
    ("zram", "a compressed RAM disk"),
    ("ram", "a RAM disk"),
    ("nbd", "a network block device"),
    ("mmcblk", "an SD/MMC card: no ATA command set"),
    ("sr", "an optical drive"),
)


@dataclass(frozen=True, slots=True)
class Identify:
    """What IDENTIFY DEVICE says about the size and the hidden-area features."""

    model: str
    serial: str
    firmware: str
    lba28_sectors: int
    lba48_supported: bool
    lba48_sectors: int
    hpa_supported: bool
    hpa_enabled: bool
    dco_supported: bool
    checksum_ok: bool | None

    @property
    def reported_sectors(self) -> int:
        """The user-addressable sectors the disk reports now (LBA48 when it has it)."""
        return self.lba48_sectors if self.lba48_supported and self.lba48_sectors else self.lba28_sectors


def _ata_string(data: bytes, first: int, last: int) -> str:
    raw = data[first * 2 : (last + 1) * 2]
    swapped = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return swapped.decode("ascii", "replace").strip()


def parse_identify(data: bytes) -> Identify:
    """Parse a 512-byte IDENTIFY DEVICE block.

    Raises:
        ValueError: not 512 bytes.
    """
    if len(data) != 512:
        raise ValueError(f"IDENTIFY DEVICE data is 512 bytes, not {len(data)}")
    words = struct.unpack("<256H", data)
    checksum_ok = None
    if words[255] & 0xFF == 0xA5:
        checksum_ok = sum(data) % 256 == 0
    return Identify(
        model=_ata_string(data, 27, 46),
        serial=_ata_string(data, 10, 19),
        firmware=_ata_string(data, 23, 26),
        lba28_sectors=words[60] | words[61] << 16,
        lba48_supported=bool(words[83] & 1 << 10),
        lba48_sectors=words[100] | words[101] << 16 | words[102] << 32 | words[103] << 48,
        hpa_supported=bool(words[82] & 1 << 10),
        hpa_enabled=bool(words[85] & 1 << 10),
        dco_supported=bool(words[83] & 1 << 11),
        checksum_ok=checksum_ok,
    )


def parse_dco_max_lba(data: bytes) -> int:
    """The maximum LBA of a DEVICE CONFIGURATION IDENTIFY block (words 3-6)."""
    return int(struct.unpack_from("<Q", data, 6)[0])


def parse_status_lba(sense: bytes) -> int | None:
    """The 48-bit LBA of an ATA Status Return descriptor (09h) in descriptor sense data."""
    if len(sense) < 8 or sense[0] & 0x7F not in (0x72, 0x73):
        return None
    pos, end = 8, min(len(sense), 8 + sense[7])
    while pos + 2 <= end:
        code, length = sense[pos], sense[pos + 1]
        if code == 0x09 and pos + 14 <= len(sense):
            d = sense[pos : pos + 14]
            # LBA (7:0) d7, (15:8) d9, (23:16) d11, (31:24) d6, (39:32) d8, (47:40) d10.
            return d[7] | d[9] << 8 | d[11] << 16 | d[6] << 24 | d[8] << 32 | d[10] << 40
        pos += 2 + length
    return None


class _SgIoHdr(ctypes.Structure):
    _fields_ = (
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    )


def _passthrough(fd: int, command: int, *, features: int = 0, data_in: bool, extend: bool = False) -> tuple[bytes, bytes]:
    """One ATA PASS-THROUGH (16): the data read (512 bytes or none) and the sense bytes.

    Raises:
        OSError: the ioctl failed or the device reported an error.
    """
    import fcntl

    # byte 1: protocol 4 (PIO data-in) or 3 (non-data), extend; byte 2: for data-in
    # t_dir=1, byte_block=1, t_length=2 (count field); for non-data ck_cond=1.
    protocol = 4 if data_in else 3
    cdb = bytearray(16)
    cdb[0] = 0x85
    cdb[1] = protocol << 1 | int(extend)
    cdb[2] = 0x0E if data_in else 0x20
    cdb[4] = features
    cdb[6] = 1 if data_in else 0
    cdb[13] = 0x40  # LBA mode
    cdb[14] = command
    buf = ctypes.create_string_buffer(512 if data_in else 0)
    sense = ctypes.create_string_buffer(32)
    cmd = ctypes.create_string_buffer(bytes(cdb), 16)
    hdr = _SgIoHdr(
        interface_id=ord("S"),
        dxfer_direction=_SG_DXFER_FROM_DEV if data_in else _SG_DXFER_NONE,
        cmd_len=16,
        mx_sb_len=32,
        dxfer_len=512 if data_in else 0,
        dxferp=ctypes.cast(buf, ctypes.c_void_p) if data_in else None,
        cmdp=ctypes.cast(cmd, ctypes.c_void_p),
        sbp=ctypes.cast(sense, ctypes.c_void_p),
        timeout=10_000,
    )
    fcntl.ioctl(fd, _SG_IO, hdr)
    if hdr.host_status or (hdr.driver_status & 0xF and hdr.driver_status & 0xF != 0x8):
        raise OSError(f"SG_IO host status {hdr.host_status}, driver status {hdr.driver_status}")
    sense_bytes = sense.raw[: hdr.sb_len_wr]
    if data_in and hdr.status not in (0, 2):
        raise OSError(f"SCSI status {hdr.status}")
    return (buf.raw if data_in else b""), sense_bytes


def not_applicable(name: str) -> str:
    """Why HPA/DCO do not apply to the device with kernel name ``name`` ("" if they may)."""
    for prefix, why in NOT_ATA:
        if name.startswith(prefix):
            return why
    return ""


def hidden_areas(name: str, size: int) -> dict[str, Any]:
    """HPA and DCO of the whole disk ``name`` (``sda``), as a JSON object.

    ``size`` is what the kernel reports (bytes). Never raises: a disk that does not
    answer ATA PASS-THROUGH (a USB bridge without SAT, a SCSI disk) says so.
    """
    reason = not_applicable(name)
    if reason:
        return {"disk": name, "applicable": False, "reason": reason, "reported_bytes": size}
    record: dict[str, Any] = {"disk": name, "applicable": True, "reported_bytes": size}
    try:
        fd = os.open(f"/dev/{name}", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return {**record, "error": f"cannot open /dev/{name}: {exc.strerror or exc}"}
    try:
        data, _ = _passthrough(fd, _IDENTIFY, data_in=True)
        ident = parse_identify(data)
        record.update(ident_record(ident))
        native = None
        if ident.hpa_supported:
            _, sense = _passthrough(fd, _READ_NATIVE_MAX_EXT, data_in=False, extend=True)
            lba = parse_status_lba(sense)
            native = None if lba is None else lba + 1
        record["native_max_sectors"] = native
        record["hpa"] = None if native is None else native > ident.reported_sectors
        if ident.dco_supported:
            dco, _ = _passthrough(fd, _DCO, features=_DCO_IDENTIFY, data_in=True)
            record["dco_max_sectors"] = parse_dco_max_lba(dco) + 1
            record["dco"] = record["dco_max_sectors"] > (native or ident.reported_sectors)
        else:
            record["dco_max_sectors"] = None
            record["dco"] = None
    except OSError as exc:
        record["error"] = f"ATA PASS-THROUGH not answered: {exc.strerror or exc}"
    finally:
        os.close(fd)
    return record


def ident_record(ident: Identify) -> dict[str, Any]:
    """The IDENTIFY DEVICE facts as JSON."""
    return {
        "model": ident.model,
        "serial": ident.serial,
        "firmware": ident.firmware,
        "reported_sectors": ident.reported_sectors,
        "lba28_sectors": ident.lba28_sectors,
        "lba48_sectors": ident.lba48_sectors if ident.lba48_supported else None,
        "hpa_supported": ident.hpa_supported,
        "hpa_enabled": ident.hpa_enabled,
        "dco_supported": ident.dco_supported,
        "identify_checksum_ok": ident.checksum_ok,
    }

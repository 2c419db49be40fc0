"""``collect --live`` on loop devices with mounted ext4 and NTFS (ntfs-3g), written to
while they are collected.

Oracles: ``findmnt``/``lsblk``/``losetup`` for the mounts and the device stack; The
Sleuth Kit's ``icat`` on a snapshot of the device taken after the writer stopped for
the files nobody wrote to; the writer's own log for the file it wrote to; ``hostname``,
``uname -r``, ``/proc/uptime``, ``ip -j addr``, ``date +%z`` and sysfs for the host
facts; ``utmpdump -r`` (util-linux) writes the utmp file that ``who`` and the parser
read. The IDENTIFY DEVICE test builds its 512-byte block from the ATA spec's word
offsets: the oracle there is the spec's layout as written by the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.collect.host import parse_utmp
from selective_imager.live.blockdev import read_mounts
from selective_imager.live.plan import plan_live
from selective_imager.sources.ata import (
    hidden_areas,
    parse_dco_max_lba,
    parse_identify,
    parse_status_lba,
)
from tests.oracles import icat_sha256

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="needs root on Linux (loop devices, mount, ntfs-3g)",
)

# Appends 4 KiB, fsyncs (ext4) and closes, logging each write's time, until the stop
# file appears; grown past LIMIT the file is cut back to its first size (its original
# bytes stay a prefix).
WRITER = r"""
import os, sys, time
path, log, stop, limit, do_sync = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
first = os.path.getsize(path)
with open(log, "w") as out:
    while not os.path.exists(stop):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"x" * 4096)
        if do_sync:
            os.fsync(fd)
        os.close(fd)
        if os.path.getsize(path) > limit:
            os.truncate(path, first)
        out.write(f"{time.time_ns()}\n")
        out.flush()
"""


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


@contextlib.contextmanager
def _loop(image: Path) -> Iterator[str]:
    dev = _run("losetup", "-f", "--show", str(image)).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def _mounted(cmd: list[str], mountpoint: Path) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@contextlib.contextmanager
def _writer(path: Path, workdir: Path, limit: int, fsync: bool) -> Iterator[Path]:
    """A writer process appending to ``path``; yields its log once it has written."""
    log, stop = workdir / "writer.log", workdir / "writer.stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(log), str(stop), str(limit), str(int(fsync))]
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().split()) >= 20:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the writer did not start writing")
        yield log
    finally:
        stop.touch()
        proc.wait(timeout=20)


def _collect(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["collect", "--live", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _container(path: Path) -> tuple[dict, list[dict], zipfile.ZipFile]:
    zf = zipfile.ZipFile(path)
    acq = json.loads(zf.read("acquisition.json"))
    manifest = [json.loads(line) for line in zf.read("manifest.jsonl").splitlines()]
    return acq, manifest, zf


def _snapshot(dev: str, dest: Path) -> Path:
    """The device's bytes now (after the writer stopped and a sync)."""
    os.sync()
    with open(dev, "rb") as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def _assert_change_record(rec: dict, acq: dict, manifest: list[dict], code: int) -> None:
    """The written file's record says what happened, and the run's status follows it."""
    # The writer never stops while the collection runs: the re-check sees a change.
    assert rec.get("first_read_changed"), rec
    assert set(rec["first_read_changed"]) & {"size", "modified", "changed"}
    changed = [r for r in manifest if r.get("changed_while_read")]
    assert acq["changed_while_read"] == len(changed)
    if changed:
        assert rec["second_read_changed"], rec
        assert acq["status"] == "partial" and code == 1
        assert any("changed while read" in r for r in acq["status_reasons"])
    else:
        # Read again and stable the second time: the second copy is what is stored.
        assert acq["reread_after_change"] >= 1
        assert acq["status"] == "complete" and code == 0


def _logical(zf: zipfile.ZipFile, rec: dict) -> bytes:
    """The item's bytes: a sparse one's member holds only its allocated ranges."""
    member = zf.read(rec["container_path"])
    if not rec.get("sparse"):
        return member
    out, pos = bytearray(rec["sparse"]["logical_size"]), 0
    for offset, length in rec["sparse"]["ranges"]:
        out[offset : offset + length] = member[pos : pos + length]
        pos += length
    assert pos == len(member)
    return bytes(out)


def _writes_in(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()]


@pytest.fixture
def ext4_live(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, bytes]]]:
    _need("mkfs.ext4", "losetup", "icat")
    image = tmp_path / "ext4.img"
    with image.open("wb") as fh:
        fh.truncate(64 << 20)
    # 256-byte inodes: nanosecond times (a small ext4 gets 128-byte ones by default).
    _run("mkfs.ext4", "-q", "-F", "-I", "256", str(image))
    with _loop(image) as dev, _mounted(["mount", dev, str(tmp_path / "mnt")], tmp_path / "mnt") as mnt:
        files = {
            "var/log/auth.log": os.urandom(300_000),
            "var/log/kern.log": os.urandom(5_000),
            "var/log/syslog": os.urandom(6 << 20),
        }
        for rel, data in files.items():
            (mnt / rel).parent.mkdir(parents=True, exist_ok=True)
            (mnt / rel).write_bytes(data)
        os.sync()
        yield dev, mnt, files


def test_ext4_written_while_collected(ext4_live: tuple[str, Path, dict[str, bytes]], tmp_path: Path) -> None:
    dev, mnt, files = ext4_live
    out = tmp_path / "live.zip"
    with _writer(mnt / "var/log/syslog", tmp_path, 12 << 20, fsync=True) as log:
        code, text = _collect("--device", dev, "-o", str(out), "--rule", "linux-logs", "--disk-hash", "none", "-q")
        before_stop = len(_writes_in(log))
    assert code in (0, 1), text
    assert before_stop > 20
    acq, manifest, zf = _container(out)
    by_path = {r["path"]: r for r in manifest}
    assert set(by_path) == set(files)

    # Unchanged files: what icat reads from a snapshot taken after the writer stopped.
    snap = _snapshot(dev, tmp_path / "snap.raw")
    for rel in ("var/log/auth.log", "var/log/kern.log"):
        rec = by_path[rel]
        assert rec["changed_while_read"] is False
        assert rec["hashes"]["sha256"] == icat_sha256(snap, 0, str(rec["entry"]))
        assert rec["hashes"]["sha256"] == hashlib.sha256(files[rel]).hexdigest()

    # The written file: the change is recorded, the stored bytes are what its record says.
    rec = by_path["var/log/syslog"]
    _assert_change_record(rec, acq, manifest, code)
    stored = _logical(zf, rec)
    assert len(stored) == rec["size"]
    assert hashlib.sha256(stored).hexdigest() == rec["hashes"]["sha256"]
    original = files["var/log/syslog"]
    assert stored[: len(original)] == original
    # Past the original bytes: the writer's x's, or zeros where the inode already had
    # the new size but the data block was not on the device yet.
    assert set(stored[len(original) :]) <= {ord("x"), 0}

    # The device, its stack and hidden areas.
    live = acq["live"]
    assert live["device"]["path"] == dev
    backing = _run("losetup", "-n", "-O", "BACK-FILE", dev).strip()
    assert backing in live["device"]["stack"]
    assert [m["mountpoint"] for m in live["device"]["mounts"]] == [str(mnt)]
    area = live["hidden_areas"][0]
    assert area["applicable"] is False and "loop" in area["reason"]
    _assert_host_facts(acq["host"], mnt)


def _assert_host_facts(host: dict, mnt: Path) -> None:
    assert host["hostname"] == _run("hostname").strip()
    assert host["kernel"]["release"] == _run("uname", "-r").strip()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    oracle_boot = time.time() - uptime
    import datetime as dt

    boot = dt.datetime.strptime(host["boot_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert abs(boot.timestamp() - oracle_boot) < 1.0
    if shutil.which("ip"):
        ours = {(i["ifname"], a["address"]) for i in host["addresses"]["interfaces"] for a in i["addresses"]}
        theirs = {
            (link["ifname"], a["local"])
            for link in json.loads(_run("ip", "-j", "addr"))
            for a in link.get("addr_info", [])
        }
        assert ours == theirs
    offset = _run("date", "+%z").strip()
    sign = -1 if offset[0] == "-" else 1
    assert host["clock"]["utc_offset_seconds"] == sign * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
    clocksource = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    if clocksource.exists():
        assert host["clock"]["clocksource"] == clocksource.read_text().strip()
    assert {"/", str(mnt)} <= {m["mountpoint"] for m in host["mounts"]}


def test_output_on_the_device_is_refused(ext4_live: tuple[str, Path, dict[str, bytes]], tmp_path: Path) -> None:
    dev, mnt, _ = ext4_live
    bind = tmp_path / "bind with space"
    with _mounted(["mount", "--bind", str(mnt / "var"), str(bind)], bind):
        for target in (mnt / "out.zip", bind / "out.zip"):
            code, text = _collect("--device", dev, "-o", str(target), "--rule", "linux-logs")
            assert code == 2, text
            assert "lies on" in text and dev in text and "Traceback" not in text
            assert len(text.strip().splitlines()) == 1
            assert not target.exists()
        # The bind mount (its name escaped as \040 in mountinfo) belongs to the device.
        plan = plan_live((dev,))
        mine = sorted(m.mountpoint for m in plan.sources[0].mounts)
        oracle = sorted(_run("findmnt", "-rn", "-S", dev, "-o", "TARGET").encode().decode("unicode_escape").split("\n"))
        assert mine == [x for x in oracle if x]
    code, text = _collect(
        "--device", dev, "-o", str(mnt / "allowed.zip"), "--rule", "linux-logs",
        "--disk-hash", "none", "--allow-output-on-source", "-q",
    )  # fmt: skip
    assert code in (0, 1), text
    assert (mnt / "allowed.zip").exists()


def test_default_devices_are_those_behind_local_mounts(tmp_path: Path) -> None:
    """Without --device: every block device behind a mount; the rest skipped with a reason."""
    _need("findmnt", "lsblk")
    table = tmp_path / "mountinfo"
    table.write_bytes(Path("/proc/self/mountinfo").read_bytes())  # one state for both readers
    mounts = read_mounts(table)
    plan = plan_live(mounts=mounts)
    ours = {f"{s.device.major}:{s.device.minor}" for s in plan.sources}
    oracle = set()
    for line in _run("findmnt", "--kernel", "-F", str(table), "-rn", "-o", "SOURCE").split("\n"):
        source = line.strip().encode().decode("unicode_escape")
        if source.startswith("/dev/") and Path(source).is_block_device():
            oracle.add(_run("lsblk", "-dno", "MAJ:MIN", source).strip())
    assert ours == oracle
    assert len(plan.skipped) + sum(len(s.mounts) for s in plan.sources) == len(mounts)
    assert all(s["reason"] for s in plan.skipped)


def test_ntfs_3g_written_while_collected(tmp_path: Path) -> None:
    _need("mkntfs", "ntfs-3g", "losetup", "icat")
    image = tmp_path / "ntfs.img"
    with image.open("wb") as fh:
        fh.truncate(64 << 20)
    _run("mkntfs", "-q", "-F", "-f", str(image))
    files = {
        "Windows/System32/config/SAM": os.urandom(200_000),
        "Windows/System32/config/SYSTEM": os.urandom(3 << 20),
    }
    with _loop(image) as dev:
        with _mounted(["ntfs-3g", dev, str(tmp_path / "mnt")], tmp_path / "mnt") as mnt:
            for rel, data in files.items():
                (mnt / rel).parent.mkdir(parents=True, exist_ok=True)
                (mnt / rel).write_bytes(data)
            os.sync()
            out = tmp_path / "ntfs.zip"
            target = mnt / "Windows/System32/config/SYSTEM"
            with _writer(target, tmp_path, 8 << 20, fsync=False):
                code, text = _collect(
                    "--device", dev, "-o", str(out), "--rule", "windows-registry",
                    "--disk-hash", "none", "-q",
                )  # fmt: skip
            assert code in (0, 1), text
            refused, text2 = _collect("--device", dev, "-o", str(mnt / "x.zip"))
            assert refused == 2 and "lies on" in text2
            acq, manifest, zf = _container(out)
            by_path = {r["path"]: r for r in manifest}
            snap = _snapshot(dev, tmp_path / "snap.raw")
        rec = by_path["Windows/System32/config/SAM"]
        assert rec["changed_while_read"] is False
        assert rec["hashes"]["sha256"] == icat_sha256(snap, 0, str(rec["entry"]))
        assert rec["hashes"]["sha256"] == hashlib.sha256(files["Windows/System32/config/SAM"]).hexdigest()
        rec = by_path["Windows/System32/config/SYSTEM"]
        _assert_change_record(rec, acq, manifest, code)
        stored = _logical(zf, rec)
        assert len(stored) == rec["size"]
        assert hashlib.sha256(stored).hexdigest() == rec["hashes"]["sha256"]
        original = files["Windows/System32/config/SYSTEM"]
        assert stored[: len(original)] == original
        assert set(stored[len(original) :]) <= {ord("x"), 0}
        assert acq["live"]["device"]["mounts"][0]["fstype"] == "fuseblk"
        verify = CliRunner().invoke(app, ["verify", str(out), "--json"])
        assert json.loads(verify.output)["intact"] is True


def test_utmp_users_as_who_reads_them(tmp_path: Path) -> None:
    _need("utmpdump", "who")
    text = (
        "[7] [12345] [ts/0] [alice   ] [pts/0       ] [192.0.2.9           ] "
        "[192.0.2.9      ] [2026-12-01T10:11:12,345678+00:00]\n"
        "[8] [00100] [    ] [        ] [tty2        ] [                    ] "
        "[0.0.0.0        ] [2026-12-01T09:00:00,000000+00:00]\n"
        "[7] [00777] [tty1] [bob     ] [tty1        ] [                    ] "
        "[0.0.0.0        ] [2026-12-01T08:00:01,000000+00:00]\n"
    )
    binary = tmp_path / "utmp"
    with binary.open("wb") as out:
        subprocess.run(["utmpdump", "-r"], input=text.encode(), stdout=out, stderr=subprocess.DEVNULL, check=True)
    who = [line.split()[:2] for line in _run("who", str(binary)).splitlines()]
    ours = parse_utmp(binary.read_bytes())
    assert [[u["user"], u["line"]] for u in ours] == who
    assert ours[0]["host"] == "192.0.2.9" and ours[0]["login_time"] == "2026-12-01T10:11:12.345678Z"


def _identify_block(*, serial: str, model: str, lba28: int, lba48: int, hpa: bool, dco: bool) -> bytes:
    """A 512-byte IDENTIFY DEVICE block laid out by ACS-3 7.12.7's word table."""
    words = [0] * 256

    def put_string(first: int, last: int, text: str) -> None:
        raw = text.ljust((last - first + 1) * 2).encode("ascii")
        for i in range(first, last + 1):
            hi, lo = raw[(i - first) * 2], raw[(i - first) * 2 + 1]
            words[i] = hi << 8 | lo  # ATA strings: first character in the high byte

    put_string(10, 19, serial)
    put_string(23, 26, "FW01")
    put_string(27, 46, model)
    words[60], words[61] = lba28 & 0xFFFF, lba28 >> 16
    words[82] = 1 << 14 | (1 << 10 if hpa else 0)
    words[83] = 1 << 14 | 1 << 10 | (1 << 11 if dco else 0)
    words[85] = 1 << 10 if hpa else 0
    for i in range(4):
        words[100 + i] = lba48 >> (16 * i) & 0xFFFF
    data = bytearray(struct.pack("<256H", *words))
    data[510] = 0xA5
    data[511] = (-sum(data[:511])) & 0xFF
    return bytes(data)


def test_identify_device_parsing_from_the_spec_layout() -> None:
    block = _identify_block(
        serial="WD-WCC4E1234567", model="WDC WD10EZEX-08WN4A0", lba28=0x0FFFFFFF,
        lba48=1_953_525_168, hpa=True, dco=True,
    )  # fmt: skip
    ident = parse_identify(block)
    assert ident.serial == "WD-WCC4E1234567"
    assert ident.model == "WDC WD10EZEX-08WN4A0"
    assert ident.firmware == "FW01"
    assert ident.lba28_sectors == 0x0FFFFFFF
    assert ident.lba48_supported and ident.lba48_sectors == 1_953_525_168
    assert ident.reported_sectors == 1_953_525_168
    assert ident.hpa_supported and ident.hpa_enabled and ident.dco_supported
    assert ident.checksum_ok is True
    damaged = bytearray(block)
    damaged[200] ^= 1
    assert parse_identify(bytes(damaged)).checksum_ok is False
    with pytest.raises(ValueError, match="512"):
        parse_identify(block[:510])
    # DEVICE CONFIGURATION IDENTIFY: words 3-6 hold the maximum LBA.
    dco = bytearray(512)
    struct.pack_into("<HHHQ", dco, 0, 2, 0, 0, 1_953_525_167 + 4096)
    assert parse_dco_max_lba(bytes(dco)) == 1_953_525_167 + 4096
    # Descriptor sense data with the ATA Status Return descriptor (SAT-3 12.2.5).
    lba = 0x1234_5678_9ABC
    desc = bytes(
        [0x09, 0x0C, 0x01, 0x00, 0x00, 0x00,
         lba >> 24 & 0xFF, lba & 0xFF, lba >> 32 & 0xFF, lba >> 8 & 0xFF,
         lba >> 40 & 0xFF, lba >> 16 & 0xFF, 0x40, 0x50]
    )  # fmt: skip
    sense = bytes([0x72, 0x01, 0x00, 0x1D, 0, 0, 0, len(desc)]) + desc
    assert parse_status_lba(sense) == lba
    assert parse_status_lba(b"\x70" + bytes(17)) is None


def test_hidden_areas_not_applicable_on_virtual_devices() -> None:
    for name, word in (("loop3", "loop"), ("dm-0", "device-mapper"), ("nvme0n1", "NVMe"), ("vda", "virtio")):
        record = hidden_areas(name, 1 << 30)
        assert record["applicable"] is False and word in record["reason"]


def test_several_devices_one_container_each(ext4_live: tuple[str, Path, dict[str, bytes]], tmp_path: Path) -> None:
    dev, _mnt, files = ext4_live
    image = tmp_path / "second.img"
    with image.open("wb") as fh:
        fh.truncate(16 << 20)
    _run("mkfs.ext4", "-q", "-F", str(image))
    with _loop(image) as dev2, _mounted(["mount", dev2, str(tmp_path / "m2")], tmp_path / "m2") as m2:
        (m2 / "var/log").mkdir(parents=True)
        (m2 / "var/log/messages").write_bytes(b"second device\n")
        os.sync()
        out = tmp_path / "case.zip"
        code, text = _collect(
            "--device", dev, "--device", dev2, "-o", str(out), "--rule", "linux-logs",
            "--disk-hash", "none", "-q",
        )  # fmt: skip
        assert code == 0, text
        outputs = {d: tmp_path / f"case-{Path(d).name}.zip" for d in (dev, dev2)}
        for device, path in outputs.items():
            acq, manifest, _zf = _container(path)
            assert acq["live"]["device"]["path"] == device
            assert acq["source"]["path"] == device
            paths = {r["path"] for r in manifest}
            assert paths == (set(files) if device == dev else {"var/log/messages"})
        assert not out.exists()


def _fake_sysfs(root: Path) -> None:
    """A sysfs laid out as Documentation/ABI/stable/sysfs-block and sysfs-block-dm say:
    sda with partition sda3, dm-0 an open LUKS2 mapping on sda3, dm-1 an LVM volume on
    dm-0, md0 a RAID1 of sdb1 and sdc1 (this machine has no device-mapper or md)."""
    devices, klass, devblock = root / "devices", root / "class" / "block", root / "dev" / "block"
    klass.mkdir(parents=True)
    devblock.mkdir(parents=True)

    def dev(path: str, number: str, **files: str) -> Path:
        node = devices / path
        node.mkdir(parents=True)
        (node / "dev").write_text(number + "\n")
        (node / "size").write_text("2048\n")
        (node / "slaves").mkdir()
        (node / "holders").mkdir()
        for rel, text in files.items():
            (node / rel.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
            (node / rel.replace("__", "/")).write_text(text + "\n")
        (klass / node.name).symlink_to(node)
        (devblock / number).symlink_to(node)
        return node

    dev("pci/block/sda", "8:0")
    sda3 = dev("pci/block/sda/sda3", "8:3", partition="3")
    for disk in ("sdb", "sdc"):
        dev(f"pci/block/{disk}", "8:16" if disk == "sdb" else "8:32")
        dev(f"pci/block/{disk}/{disk}1", "8:17" if disk == "sdb" else "8:33", partition="1")
    dm0 = dev("virtual/block/dm-0", "254:0", dm__uuid="CRYPT-LUKS2-0123abcd-root", dm__name="root")
    dm1 = dev("virtual/block/dm-1", "254:1", dm__uuid="LVM-abcdefgh", dm__name="vg-home")
    md0 = dev("virtual/block/md0", "9:0", md__level="raid1")
    (dm0 / "slaves" / "sda3").symlink_to(sda3)
    (sda3 / "holders" / "dm-0").symlink_to(dm0)
    (dm1 / "slaves" / "dm-0").symlink_to(dm0)
    (dm0 / "holders" / "dm-1").symlink_to(dm1)
    for part in ("sdb1", "sdc1"):
        (md0 / "slaves" / part).symlink_to(klass / part)


def test_stacks_from_the_sysfs_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dm-crypt, LVM and md stacks read from a sysfs tree the test lays out (the oracle is
    the kernel's sysfs ABI as written here: none of these exist on this machine)."""
    from selective_imager.live import blockdev, plan
    from selective_imager.live.blockdev import parse_mountinfo

    _fake_sysfs(tmp_path)
    monkeypatch.setattr(blockdev, "SYS_CLASS_BLOCK", tmp_path / "class" / "block")
    monkeypatch.setattr(blockdev, "SYS_DEV_BLOCK", tmp_path / "dev" / "block")
    assert blockdev.describe_stack("dm-1") == (
        "dm-1 = lvm LVM logical volume vg-home on dm-0 = dm-crypt LUKS2 (dm name root) "
        "on sda3 = partition 3 of sda"
    )
    assert blockdev.describe_stack("md0") == (
        "md0 = md md raid1 on sdb1 = partition 1 of sdb + sdc1 = partition 1 of sdc"
    )
    assert blockdev.bottom_disks("dm-1") == ["sda"]
    assert blockdev.bottom_disks("md0") == ["sdb", "sdc"]
    assert blockdev.holders("sda") == ["dm-0", "dm-1"]
    mounts = parse_mountinfo(
        "27 1 254:0 / / rw,relatime - ext4 /dev/mapper/root rw\n"
        "28 27 254:1 / /home rw,relatime - ext4 /dev/mapper/vg-home rw\n"
        "29 27 9:0 / /srv/my\\040data rw - xfs /dev/md0 rw\n"
        "30 27 0:40 / /net rw - nfs4 server:/export rw\n"
        "31 27 0:41 / /tmp rw - tmpfs tmpfs rw\n"
    )
    assert mounts[2].mountpoint == "/srv/my data"
    live = plan.plan_live(mounts=mounts)
    assert [s.device.name for s in live.sources] == ["dm-0", "dm-1", "md0"]
    assert "plaintext" in live.sources[0].note and "sda3" in live.sources[0].note
    assert [s["reason"].split(":")[0] for s in live.skipped] == [
        "network file system", "pseudo or memory file system",
    ]  # fmt: skip
    # Reading the LUKS partition itself: a file system on its mapping (or on the LVM
    # volume above that) is a file system of that partition.
    sda3 = plan.LiveSource(blockdev.device_by_name("sda3"), (), "", "")  # type: ignore[arg-type]
    protected = plan.protected_st_devs(sda3, mounts)
    assert protected >= {os.makedev(254, 0), os.makedev(254, 1)}
    assert os.makedev(9, 0) not in protected

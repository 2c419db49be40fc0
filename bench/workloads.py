#!/usr/bin/env python3
"""Build (and cache) the benchmark disk images under ``bench/.cache/images/``.

Run as root (FUSE mounts of ntfs-3g); ``bench/run`` calls this when an image is missing:

    .venv/bin/python bench/workloads.py [win1g bitlocker1g million entries200k bigfile hash4g]
                                        [--force]

* ``win1g``: 1 GiB GPT disk (ESP, MSR, NTFS "Windows") with a Windows-like tree of ~50,000
  files: structurally valid registry hives (ProfileList for alice/bob, SYSTEM with Select,
  Setup, MountedDevices, ControlSet001), user hives, event logs, prefetch, Amcache, SRUM,
  browser histories, LNKs, a 300 MiB pagefile and a sparse ``$Extend/$UsnJrnl:$J``.
  ``win1g.truth.json`` holds every file's sha256, taken while writing it (and $MFT/$LogFile
  from The Sleuth Kit's icat afterwards), for the content check.
* ``bitlocker1g``: the same plain NTFS volume encrypted with the project's FVE writer
  (AES-XTS-128, password protector), in the same GPT layout.
* ``million``: 4 GiB GPT disk whose NTFS holds ~1,000,000 MFT entries (empty files in a
  Windows-like tree) plus the registry hives; ``entries200k`` is the --quick variant.
* ``bigfile``: NTFS volume (no partition table) with one 2 GiB file of random-looking data.
* ``hash4g``: a 4 GiB file of random-looking data (not sparse) for disk hashing.
* ``win1g.vhdx``, ``win1g.qcow2`` (:func:`virtual_copy`): win1g converted by qemu-img
  (dynamic VHDX, QCOW2 v3) for the vdisk workload.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ modules
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))  # not a package
import artifacts as art  # the project's fixture helpers
import content as c
from bitlocker_writer import encrypt_ntfs_volume, generate_recovery_password

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
IMAGES = CACHE / "images"
MNT = CACHE / "mnt"
SECTOR = 512
MIB = 1 << 20
BUILD_VERSION = 3  # bump to invalidate cached images when a builder changes
BITLOCKER_PASSWORD = "Bench-Passw0rd-2024"  # ASCII: cryptsetup mishandles others (NOTES)

# GPT layout of the 1 GiB disks: ESP 100 MiB, MSR 16 MiB, NTFS to 1 MiB before the end.
DISK_1G = 1 << 30
ESP_START, ESP_SECTORS = 2048, 100 * MIB // SECTOR
MSR_START, MSR_SECTORS = ESP_START + ESP_SECTORS, 16 * MIB // SECTOR
NTFS_START = MSR_START + MSR_SECTORS
NTFS_SECTORS_1G = DISK_1G // SECTOR - NTFS_START - 2048
J_HOLE = 56 * MIB  # sparse part of $J (logical size = hole + records)
J_DATA = 8 * MIB


def log(msg: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*cmd: str, stdin: bytes | None = None) -> str:
    res = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): "
                           f"{res.stderr.decode(errors='replace')}")
    return res.stdout.decode(errors="replace")


@contextlib.contextmanager
def ntfs3g(vol: Path, mnt: Path = MNT) -> Iterator[Path]:
    """Mount with ntfs-3g in the foreground, so unmounting waits for it to flush and exit."""
    mnt.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["ntfs-3g", str(vol), str(mnt), "-o",
                             "no_detach,noatime,big_writes,streams_interface=windows"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            if os.path.ismount(mnt):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"ntfs-3g exited with {proc.returncode}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{mnt} was not mounted")
        yield mnt
    finally:
        os.sync()
        if os.path.ismount(mnt):
            subprocess.run(["umount", str(mnt)], check=True)
        proc.wait(timeout=600)


def make_ntfs(vol: Path, size: int, start_sector: int, label: str) -> None:
    vol.unlink(missing_ok=True)
    with open(vol, "wb") as f:
        f.truncate(size)
    sh("mkntfs", "-F", "-f", "-q", "-s", "512", "-c", "4096", "-p", str(start_sector),
       "-H", "255", "-S", "63", "-L", label, str(vol))


def gpt_disk(disk: Path, size: int, parts: list[tuple[int, int, str, str]]) -> None:
    """Sparse disk file with a GPT: parts are (start, sectors, type GUID, name)."""
    disk.unlink(missing_ok=True)
    with open(disk, "wb") as f:
        f.truncate(size)
    script = "label: gpt\nunit: sectors\nsector-size: 512\n\n" + "".join(
        f'start={s}, size={n}, type={t}, name="{name}"\n' for s, n, t, name in parts)
    sh("sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk), stdin=script.encode())


def dd_into(disk: Path, vol: Path, start_sector: int) -> None:
    sh("dd", f"if={vol}", f"of={disk}", "bs=4M", f"seek={start_sector * SECTOR}",
       "oflag=seek_bytes", "conv=notrunc,sparse", "status=none")


def file_hashes(path: Path) -> dict[str, str]:
    hs = {"md5": hashlib.md5(), "sha1": hashlib.sha1(), "sha256": hashlib.sha256()}
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            for h in hs.values():
                h.update(chunk)
    return {k: h.hexdigest() for k, h in hs.items()}


ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
MSR_TYPE = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
BASIC_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


def make_esp(path: Path) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(ESP_SECTORS * SECTOR)
    sh("mkfs.vfat", "-F", "32", "-s", "1", "-n", "SYSTEM", "-h", str(ESP_START), str(path))
    src = CACHE / "esp-src"
    src.mkdir(parents=True, exist_ok=True)
    files = {"EFI/Boot/bootx64.efi": art.pe_exe("bootx64", 1 << 20),
             "EFI/Microsoft/Boot/bootmgfw.efi": art.pe_exe("bootmgfw", 1 << 20),
             "EFI/Microsoft/Boot/BCD": art.regf_hive({}, c.HIVE_FT, "BCD")}
    for d in ("EFI", "EFI/Boot", "EFI/Microsoft", "EFI/Microsoft/Boot"):
        sh("mmd", "-i", str(path), "::" + d)
    for p, data in files.items():
        tmp = src / p.replace("/", "_")
        tmp.write_bytes(data)
        sh("mcopy", "-i", str(path), str(tmp), "::" + p)


# --------------------------------------------------------------------------- the tree
_WORDS = ("audio", "shell", "kernel", "network", "security", "storage", "graphics", "input",
          "print", "search", "update", "media", "speech", "bluetooth", "display", "power",
          "crypto", "identity", "store", "runtime", "telemetry", "defender", "font", "ink",
          "sync", "backup", "hyperv", "container", "directx", "wmi", "rpc", "smb", "tcpip",
          "usb", "hid", "camera", "location", "notification", "cloud", "edge")
_EXTS = (".dll", ".dll", ".dll", ".exe", ".mui", ".sys", ".cat", ".manifest", ".xml", ".dat")
_VENDORS = ("Microsoft", "Google", "Mozilla", "Adobe", "Oracle", "Intel", "NVIDIA", "VMware",
            "7-Zip", "Notepad++", "Python", "Git", "Zoom", "Slack", "Dropbox", "Logitech")


@dataclass(frozen=True)
class Category:
    """``dirs`` directories from ``template`` (``{i}``, ``{w}``, ``{h}`` fill-ins), each
    with ``files`` (min, max) files; ``cap`` limits scaling of single-directory groups."""

    template: str
    dirs: int
    files: tuple[int, int]
    exts: tuple[str, ...] = _EXTS
    cap: int | None = None


def categories(users: list[str]) -> list[Category]:
    cats = [
        Category("Windows/WinSxS/amd64_microsoft-windows-{w}-{w}_31bf3856ad364e35_"
                 "10.0.19041.{i}_none_{h}", 2400, (1, 12)),
        Category("Windows/WinSxS/Manifests", 1, (5000, 5000), (".manifest",), cap=60000),
        Category("Windows/System32", 1, (4000, 4000), cap=20000),
        Category("Windows/System32/en-US", 1, (1500, 1500), (".mui",), cap=5000),
        Category("Windows/System32/DriverStore/FileRepository/{w}{i}.inf_amd64_{h}", 400,
                 (2, 8), (".inf", ".sys", ".cat", ".dll", ".PNF")),
        Category("Windows/SysWOW64", 1, (2500, 2500), cap=10000),
        Category("Windows/assembly/NativeImages_v4.0.30319_64/{w}.{w}{i}/{h}", 400, (1, 3),
                 (".ni.dll", ".ni.dll.aux")),
        Category("Windows/Microsoft.NET/Framework64/v4.0.30319/{w}{i}", 50, (10, 30)),
        Category("Windows/servicing/Packages", 1, (3000, 3000), (".mum", ".cat"), cap=20000),
        Category("Windows/INF", 1, (1500, 1500), (".inf", ".PNF"), cap=3000),
        Category("Windows/Fonts", 1, (600, 600), (".ttf", ".ttc", ".fon"), cap=1500),
        Category("Windows/Logs/CBS", 1, (20, 20), (".log", ".cab")),
        Category("Program Files/{v}/{w} {i}/{w}", 300, (5, 25)),
        Category("Program Files (x86)/{v}/{w} {i}/{w}", 170, (5, 25)),
        Category("ProgramData/{v}/{w}{i}", 100, (5, 15), (".dat", ".json", ".log", ".db")),
        Category("ProgramData/Microsoft/Windows/Start Menu/Programs/{v}", 30, (3, 8), (".lnk",)),
    ]
    for u in users:
        cats += [
            Category(f"Users/{u}/AppData/Local/Microsoft/Windows/INetCache/IE/{{h8}}", 8,
                     (200, 300), (".htm", ".js", ".css", ".png", ".jpg", ".gif")),
            Category(f"Users/{u}/AppData/Local/Packages/Microsoft.{{w}}{{i}}_8wekyb3d8bbwe/"
                     "LocalState", 150, (5, 15), (".dat", ".db", ".json", ".xml")),
            Category(f"Users/{u}/AppData/Local/Temp", 1, (300, 300), (".tmp", ".log", ".txt"),
                     cap=20000),
            Category(f"Users/{u}/Documents/{{w}}", 10, (20, 40),
                     (".docx", ".xlsx", ".pdf", ".txt", ".pptx")),
            Category(f"Users/{u}/Downloads", 1, (80, 80), (".exe", ".zip", ".msi", ".pdf"),
                     cap=5000),
            Category(f"Users/{u}/AppData/Roaming/Microsoft/Windows/Recent", 1, (150, 150),
                     (".lnk",), cap=5000),
        ]
    return cats


def tree_plan(scale: float, seed: str, sizes: bool) -> list[tuple[str, int]]:
    """Deterministic (path, size) list of filler files; directories are implied."""
    rng = c.rng_for(seed)
    out: list[tuple[str, int]] = []
    for cat in categories(list(c.USERS)):
        single = "{" not in cat.template
        ndirs = cat.dirs if single else max(1, round(cat.dirs * scale))
        for i in range(ndirs):
            d = cat.template
            while "{" in d:  # fill each placeholder with its own random value
                k = d.index("{")
                key = d[k + 1 : d.index("}", k)]
                val = {"w": rng.choice(_WORDS), "i": str(i), "h": f"{rng.getrandbits(64):016x}",
                       "h8": f"{rng.getrandbits(32):08X}", "v": rng.choice(_VENDORS)}[key]
                d = d[:k] + val + d[d.index("}", k) + 1 :]
            n = rng.randint(*cat.files)
            if single:
                n = min(round(n * scale), cat.cap or n)
            seen: set[str] = set()
            for j in range(n):
                name = f"{rng.choice(_WORDS)}{rng.choice(_WORDS)}{j}{rng.choice(cat.exts)}"
                if name.lower() in seen:
                    continue
                seen.add(name.lower())
                size = 0
                if sizes:  # log-normal, median ~1 KiB, a few MiB at most
                    size = min(int(rng.lognormvariate(7.0, 1.5)), 4 * MIB)
                out.append((f"{d}/{name}", size))
    return out


# --------------------------------------------------------------------------- artifacts
def windows_artifacts(users: list[str], full: bool) -> Iterator[tuple[str, bytes, int]]:
    """(path, data, NTFS attributes or 0) of the forensic artifacts. ``full``: real-world
    sizes; otherwise small (for the 1M-entry volume, where only the names matter)."""
    hive_pool = c.Pool("hive", text=0.45, zeros=0.35)
    ev_pool = c.Pool("evtx", text=0.8, zeros=0.1)
    mix_pool = c.Pool("mixed")

    def sz(n: int) -> int:
        return n if full else min(n, 64 << 10)

    cfg = "Windows/System32/config"
    system_hives = (("SOFTWARE", c.software_tree(), 40 * MIB), ("SYSTEM", c.system_tree(), 12 * MIB),
                    ("SAM", c.sam_tree(), 64 << 10), ("SECURITY", c.security_tree(), 64 << 10),
                    ("DEFAULT", c.default_tree(), 256 << 10))
    for i, (name, tree, size) in enumerate(system_hives):
        yield f"{cfg}/{name}", c.padded_hive(tree, name, sz(size), hive_pool, name), 0
        yield f"{cfg}/{name}.LOG1", c.hive_log(name, sz(max(size // 16, 64 << 10)), 10 + i, hive_pool), 0x22
        yield f"{cfg}/{name}.LOG2", c.hive_log(name, sz(64 << 10) if i % 2 else 0, 20 + i, hive_pool), 0x22
    for name in ("SAM", "SECURITY", "SOFTWARE", "SYSTEM", "DEFAULT"):  # Windows 10: 0 bytes
        yield f"{cfg}/RegBack/{name}", b"", 0
    sp = {"Windows/System32/config/systemprofile": "systemprofile",
          "Windows/ServiceProfiles/LocalService": "LocalService",
          "Windows/ServiceProfiles/NetworkService": "NetworkService"}
    for home, tag in sp.items():
        yield f"{home}/NTUSER.DAT", c.padded_hive(c.default_tree(), "NTUSER.DAT", sz(256 << 10),
                                                  hive_pool, tag), 0x22
        yield f"{home}/NTUSER.DAT.LOG1", c.hive_log(f"ntuser {tag}", sz(64 << 10), 3, hive_pool), 0x22
        yield f"{home}/NTUSER.DAT.LOG2", b"", 0x22
    yield "Users/Public/Documents/desktop.ini", b"\xff\xfe" + "[.ShellClassInfo]\r\n".encode("utf-16-le"), 0x26
    yield "Users/Default/NTUSER.DAT", c.padded_hive(c.default_tree(), "NTUSER.DAT", sz(256 << 10),
                                                    hive_pool, "Default"), 0x22
    for k, u in enumerate(users):
        home = f"Users/{u}"
        uc = f"{home}/AppData/Local/Microsoft/Windows/UsrClass.dat"
        yield f"{home}/NTUSER.DAT", c.padded_hive(c.user_tree(u), "NTUSER.DAT", sz(3 * MIB),
                                                  hive_pool, f"nt {u}"), 0x22
        yield f"{home}/ntuser.dat.LOG1", c.hive_log(f"nt {u}", sz(512 << 10), 30 + k, hive_pool), 0x22
        yield f"{home}/ntuser.dat.LOG2", c.hive_log(f"nt {u}", sz(128 << 10), 40 + k, hive_pool), 0x22
        yield uc, c.padded_hive(c.usrclass_tree(u), "UsrClass.dat", sz(MIB + (512 << 10)),
                                hive_pool, f"uc {u}"), 0x22
        yield f"{uc}.LOG1", c.hive_log(f"uc {u}", sz(256 << 10), 50 + k, hive_pool), 0x22
        yield f"{uc}.LOG2", b"", 0x22
        ad = f"{home}/AppData"
        rng = c.rng_for(f"urls {u}")
        urls = [(f"https://www.example{n % 97}.com/{u}/page{n}", f"Page {n} of {u}",
                 1_700_000_000 + n * 61) for n in range(4000 if full else 10)]
        rng.shuffle(urls)
        yield f"{ad}/Local/Google/Chrome/User Data/Default/History", art.chromium_history(urls), 0
        yield f"{ad}/Local/Microsoft/Edge/User Data/Default/History", art.chromium_history(urls[::-1]), 0
        yield (f"{ad}/Roaming/Mozilla/Firefox/Profiles/abcd{k}.default-release/places.sqlite",
               art.firefox_places(urls), 0)
        yield (f"{ad}/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt",
               f"whoami\r\nGet-Process\r\ncd C:\\Users\\{u}\\Downloads\r\n".encode() * 50, 0)
        recent = f"{ad}/Roaming/Microsoft/Windows/Recent"
        links = [art.lnk(f"C:\\Users\\{u}\\Documents\\doc{n}.docx", c.HIVE_FT + n * 10**9, 1000 + n)
                 for n in range(40)]
        for n, ln in enumerate(links):
            yield f"{recent}/doc{n}.docx.lnk", ln, 0
        yield (f"{recent}/AutomaticDestinations/5f7b5f1e01b83767.automaticDestinations-ms",
               art.automatic_destinations(u, links), 0)
    logs = "Windows/System32/winevt/Logs"
    big = {"Security": 20, "System": 16, "Application": 16,
           "Microsoft-Windows-PowerShell%4Operational": 15, "Windows PowerShell": 8}
    rng = c.rng_for("evtx names")
    names = list(big) + [f"Microsoft-Windows-{w.capitalize()}-{v}%4Operational"
                         for w in _WORDS for v in ("Client", "Service", "Admin")][:115]
    for name in names:
        size = big.get(name, 0) * MIB or rng.choice((68 << 10, 68 << 10, 68 << 10, 1 * MIB))
        yield f"{logs}/{name}.evtx", c.evtx_file(name, sz(size), ev_pool), 0
    pf_rng = c.rng_for("prefetch")
    for n in range(250):
        exe = f"{pf_rng.choice(_WORDS).upper()}{n}.EXE"
        yield (f"Windows/Prefetch/{exe}-{pf_rng.getrandbits(32):08X}.pf",
               c.prefetch(exe, pf_rng.randrange(4 << 10, 60 << 10)), 0)
    yield "Windows/Prefetch/Layout.ini", "C:\\Windows\\explorer.exe\r\n".encode("utf-16-le") * 200, 0
    amc = "Windows/appcompat/Programs/Amcache.hve"
    yield amc, c.padded_hive(c.amcache_tree(), "Amcache.hve", sz(4 * MIB), hive_pool, "amcache"), 0
    yield f"{amc}.LOG1", c.hive_log("amcache", sz(256 << 10), 7, hive_pool), 0
    yield f"{amc}.LOG2", b"", 0
    yield "Windows/System32/sru/SRUDB.dat", c.ese("srum", sz(24 * MIB), mix_pool), 0
    yield "Windows/System32/sru/SRU.log", mix_pool.take(c.rng_for("sru.log"), sz(MIB)), 0
    yield ("Windows/System32/Tasks/Microsoft/Windows/Defrag/ScheduledDefrag",
           art.task_xml("\\Microsoft\\Windows\\Defrag\\ScheduledDefrag",
                        "%windir%\\system32\\defrag.exe", "-c -h -o -$"), 0)
    yield "Windows/INF/setupapi.dev.log", mix_pool.take(c.rng_for("setupapi"), sz(2 * MIB)), 0


# --------------------------------------------------------------------------- writers
def _write_files(mnt: str, items: list[tuple[str, int]], seed_pool: str) -> int:
    """Worker: write filler files (content from a shared pool, distinct per file)."""
    pool = c.Pool(seed_pool) if any(s for _, s in items) else None
    made: set[str] = set()
    n = 0
    for rel, size in items:
        d = rel.rpartition("/")[0]
        if d not in made:
            os.makedirs(f"{mnt}/{d}", exist_ok=True)
            made.add(d)
        if size == 0:
            os.close(os.open(f"{mnt}/{rel}", os.O_CREAT | os.O_WRONLY, 0o644))
        else:
            assert pool is not None
            data = pool.take(random.Random(rel), size, rel.encode())
            with open(f"{mnt}/{rel}", "wb") as f:
                f.write(data)
        n += 1
    return n


def write_parallel(mnt: Path, items: list[tuple[str, int]], workers: int, seed_pool: str) -> None:
    """Several writers over one ntfs-3g mount: measured 2x the file-creation rate of one
    (the FUSE client side is half the cost). Items are split by directory so workers rarely
    share one."""
    by_dir: dict[str, list[tuple[str, int]]] = {}
    for rel, size in items:
        by_dir.setdefault(rel.rpartition("/")[0], []).append((rel, size))
    shares: list[list[tuple[str, int]]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for _d, group in sorted(by_dir.items(), key=lambda kv: -len(kv[1])):
        k = loads.index(min(loads))
        shares[k] += group
        loads[k] += len(group) + sum(s for _, s in group) // 65536
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as p:
        p.starmap(_write_files, [(str(mnt), s, seed_pool) for s in shares])


def inject_usn(vol: Path, payload: bytes, offset: int) -> None:
    """$Extend/$UsnJrnl with a sparse $J through libntfs-3g, reusing the fixture builder's
    ctypes child (ntfs-3g itself refuses to create files in $Extend)."""
    jp, mp = CACHE / "J.payload", CACHE / "Max.bin"
    jp.write_bytes(payload)
    mp.write_bytes(struct.pack("<QQQq", 64 * MIB, 8 * MIB, c.HIVE_FT, 0))
    sh(sys.executable, str(ROOT / "fixtures" / "build_disks.py"), "--inject-usn", str(vol),
       str(jp), str(offset), str(mp))
    jp.unlink()
    mp.unlink()


def icat_sha256(vol: Path, addr: str) -> tuple[int, str]:
    """Size and sha256 of an NTFS attribute read by The Sleuth Kit (independent oracle)."""
    h = hashlib.sha256()
    n = 0
    with subprocess.Popen(["icat", str(vol), addr], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        while chunk := p.stdout.read(4 * MIB):
            h.update(chunk)
            n += len(chunk)
    if p.returncode:
        raise RuntimeError(f"icat {addr} failed")
    return n, h.hexdigest()


def build_windows_volume(vol: Path, sectors: int, start: int) -> dict:
    """The plain NTFS volume of win1g (and bitlocker1g); returns the truth."""
    t0 = time.time()
    make_ntfs(vol, sectors * SECTOR, start, "Windows")
    filler = tree_plan(0.92, "win1g tree", sizes=True)  # ~50,000 files with the artifacts
    truth_files: dict[str, dict] = {}
    with ntfs3g(vol) as mnt:
        log(f"writing artifacts into {vol.name}")
        for rel, data, attrs in windows_artifacts(list(c.USERS), full=True):
            p = mnt / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            if attrs:
                os.setxattr(p, "system.ntfs_attrib_be", struct.pack(">I", attrs))
            truth_files[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        # pagefile.sys: 300 MiB, written in pieces (mixed content, like a real one)
        pool = c.Pool("pagefile", text=0.3, zeros=0.4)
        rng = c.rng_for("pagefile")
        h = hashlib.sha256()
        with open(mnt / "pagefile.sys", "wb") as f:
            for _ in range(300 // 4):
                piece = pool.take(rng, 4 * MIB)
                h.update(piece)
                f.write(piece)
        os.setxattr(mnt / "pagefile.sys", "system.ntfs_attrib_be", struct.pack(">I", 0x26))
        truth_files["pagefile.sys"] = {"size": 300 * MIB, "sha256": h.hexdigest()}
        log(f"writing {len(filler)} filler files ({sum(s for _, s in filler) / MIB:.0f} MiB)")
        t1 = time.time()
        write_parallel(mnt, filler, 2, "filler")
        log(f"  filler written in {time.time() - t1:.1f} s")
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
    log("injecting a sparse $UsnJrnl:$J")
    names = [p.rpartition("/")[2] for p, _ in filler[:5000]]
    payload = c.usn_records(names, J_DATA, J_HOLE)
    inject_usn(vol, payload, J_HOLE)
    j_logical = hashlib.sha256(bytes(J_HOLE) + payload).hexdigest()
    ntfs_meta: dict[str, dict] = {}
    for name, addr in (("$MFT", "0"), ("$LogFile", "2")):
        size, digest = icat_sha256(vol, addr)
        ntfs_meta[name] = {"size": size, "sha256": digest}
    inode = sh("ifind", "-n", "/$Extend/$UsnJrnl", str(vol)).strip()
    stat_out = sh("istat", str(vol), inode)
    jattr = next(line.split("(")[1].split(")")[0] for line in stat_out.splitlines()
                 if "Name: $J" in line)
    size, digest = icat_sha256(vol, f"{inode}-{jattr}")
    ntfs_meta["$Extend/$UsnJrnl:$J"] = {
        "size": J_HOLE + len(payload), "sha256": j_logical,
        # acquire stores $J from its first allocated run: the allocated tail only
        "sha256_allocated_tail": hashlib.sha256(payload).hexdigest(),
        "icat_size": size, "icat_sha256": digest}
    return {"files": truth_files, "ntfs_metadata": ntfs_meta,
            "filler_files": len(filler), "filler_bytes": sum(s for _, s in filler),
            "volume_used_bytes": used, "build_seconds": round(time.time() - t0, 1)}


def windows_disk(disk: Path, vol: Path, esp: Path) -> None:
    gpt_disk(disk, DISK_1G, [(ESP_START, ESP_SECTORS, ESP_TYPE, "EFI system partition"),
                             (MSR_START, MSR_SECTORS, MSR_TYPE, "Microsoft reserved partition"),
                             (NTFS_START, NTFS_SECTORS_1G, BASIC_TYPE, "Basic data partition")])
    dd_into(disk, esp, ESP_START)
    dd_into(disk, vol, NTFS_START)


def build_win1g() -> dict:
    vol, esp, disk = IMAGES / "win1g-ntfs.vol", CACHE / "esp.img", IMAGES / "win1g.raw"
    truth = build_windows_volume(vol, NTFS_SECTORS_1G, NTFS_START)
    make_esp(esp)
    windows_disk(disk, vol, esp)
    truth.update(image=disk.name, size=DISK_1G, partition=3, ntfs_start_sector=NTFS_START,
                 disk_hashes=file_hashes(disk))
    return truth


def build_win1g_e01() -> dict:
    """The win1g disk as an E01, made as examiners receive them (ewfacquire, deflate:fast)."""
    raw = IMAGES / "win1g.raw"
    meta = build("win1g", False)
    target = IMAGES / "win1g"
    for old in IMAGES.glob("win1g.E[0-9][0-9]"):
        old.unlink()
    sh("ewfacquire", "-u", "-q", "-c", "deflate:fast", "-f", "encase6", "-S", "4GiB",
       "-t", str(target), str(raw))
    e01 = IMAGES / "win1g.E01"
    return {**meta, "image": e01.name, "raw_image": raw.name, "e01_bytes": e01.stat().st_size,
            "made_with": "ewfacquire -u -q -c deflate:fast -f encase6 -S 4GiB"}


def build_bitlocker1g() -> dict:
    vol = IMAGES / "win1g-ntfs.vol"
    if not vol.exists() or not (IMAGES / "win1g.json").exists():
        build("win1g", force=False)
    enc, esp, disk = CACHE / "bitlocker1g.vol", CACHE / "esp.img", IMAGES / "bitlocker1g.raw"
    t0 = time.time()
    guid = uuid.UUID("be5c0000-0000-4000-8000-00000000b17c")
    recovery = generate_recovery_password("selective_imager bench bitlocker1g")
    facts = encrypt_ntfs_volume(
        vol, enc, password=BITLOCKER_PASSWORD, recovery_password=recovery, volume_guid=guid,
        fvek=hashlib.sha256(b"bench FVEK").digest(), vmk=hashlib.sha256(b"bench VMK").digest(),
        salts=(hashlib.sha256(b"bench pw salt").digest()[:16],
               hashlib.sha256(b"bench rp salt").digest()[:16]),
        nonce_time=c.HIVE_FT, description="BENCH-PC Windows (C:) 01/20/2024")
    if not esp.exists():
        make_esp(esp)
    windows_disk(disk, enc, esp)
    enc.unlink()
    (IMAGES / "bitlocker1g.password.txt").write_text(BITLOCKER_PASSWORD + "\n")
    (IMAGES / "bitlocker1g.keychain.csv").write_text(f"bitlocker,passphrase,,{BITLOCKER_PASSWORD}\n")
    win = json.loads((IMAGES / "win1g.json").read_text())
    return {"image": disk.name, "size": DISK_1G, "partition": 3, "plain_truth": "win1g.json",
            "files": win["files"], "ntfs_metadata": win["ntfs_metadata"],
            "method": facts["method"], "recovery_password": recovery,
            "encrypt_seconds": round(time.time() - t0, 1)}


def build_entries(name: str, target: int, workers: int = 4) -> dict:
    """GPT disk with one NTFS volume of ``target`` MFT entries (empty files + dirs)."""
    vol, disk = CACHE / f"{name}.vol", IMAGES / f"{name}.raw"
    vol_size = (4 << 30) if target > 300_000 else (1 << 30)
    start = 2048
    make_ntfs(vol, vol_size, start, "Windows")
    arts = list(windows_artifacts(list(c.USERS), full=False))
    # scale the tree so that files + directories (+ artifacts, system files) ~ target;
    # capped single-directory groups make the count non-linear: secant steps, then top up
    # with Windows Update download folders of 50 files each
    want = target - len(arts) - 120

    def count(s: float) -> tuple[int, list[tuple[str, int]]]:
        plan = tree_plan(s, "entries tree", sizes=False)
        return len(plan) + len({p.rpartition("/")[0] for p, _ in plan}), plan

    scale = 1.0
    n, plan = count(scale)
    for _ in range(4):
        if abs(n - want) < want * 0.01:
            break
        scale *= want / n
        n, plan = count(scale)
    if n > want:
        plan = plan[: len(plan) - (n - want)]
    k = 0
    while n < want:
        d = f"Windows/SoftwareDistribution/Download/{k:08x}{'0' * 24}"
        take = min(50, want - n - 1)
        plan += [(f"{d}/update{j}.cab", 0) for j in range(take)]
        n += take + 1
        k += 1
    t0 = time.time()
    with ntfs3g(vol) as mnt:
        for rel, data, _attrs in arts:
            p = mnt / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        log(f"creating {len(plan)} empty files with {workers} writers")
        write_parallel(mnt, plan, workers, "none")
        elapsed = time.time() - t0
        st = os.statvfs(mnt)
        entries = int(st.f_files - st.f_ffree)
    log(f"  {entries} entries in {elapsed:.0f} s ({entries / elapsed:.0f} entries/s)")
    gpt_disk(disk, vol_size + 2 * MIB + start * SECTOR,
             [(start, vol_size // SECTOR, BASIC_TYPE, "Basic data partition")])
    dd_into(disk, vol, start)
    vol.unlink()
    return {"image": disk.name, "partition": 1, "ntfs_start_sector": start,
            "mft_entries_in_use": entries, "files": len(plan) + len(arts),
            "directories": len({p.rpartition("/")[0] for p, _ in plan}),
            "create_seconds": round(elapsed, 1), "entries_per_second": round(entries / elapsed),
            "writers": workers}


def build_bigfile() -> dict:
    vol = IMAGES / "bigfile.raw"
    size = 2 << 30
    make_ntfs(vol, size + 96 * MIB, 0, "Data")
    block = random.Random(2).randbytes(64 * MIB)
    h = hashlib.sha256()
    t0 = time.time()
    with ntfs3g(vol) as mnt:
        (mnt / "data").mkdir()
        with open(mnt / "data" / "blob.bin", "wb") as f:
            for k in range(size // len(block)):
                # a distinct first 8 bytes per 64 MiB block: no two blocks are equal
                piece = struct.pack("<Q", k) + block[8:]
                h.update(piece)
                f.write(piece)
        (mnt / "data" / "readme.txt").write_bytes(b"one 2 GiB file\r\n")
    return {"image": vol.name, "partition": 0, "file": "data/blob.bin", "size": size,
            "sha256": h.hexdigest(), "write_seconds": round(time.time() - t0, 1)}


def build_hash4g() -> dict:
    path = IMAGES / "hash4g.raw"
    block = random.Random(4).randbytes(64 * MIB)
    with open(path, "wb") as f:
        for k in range(64):
            f.write(struct.pack("<Q", k) + block[8:])
        f.flush()
        os.fsync(f.fileno())
    return {"image": path.name, "size": 4 << 30, "disk_hashes": file_hashes(path)}


def virtual_copy(name: str, fmt: str) -> Path:
    """``name``'s raw image converted by ``qemu-img convert -O fmt`` (vhdx: dynamic), cached.

    Rebuilt when missing or older than the raw image; the virtual disk holds exactly the
    raw image's bytes (the vdisk workload's content check and qemu-img both say so).
    """
    meta = build(name, False)
    raw = IMAGES / meta["image"]
    target = IMAGES / f"{raw.stem}.{fmt}"
    if not target.exists() or target.stat().st_mtime < raw.stat().st_mtime:
        log(f"converting {raw.name} to {fmt}")
        t0 = time.time()
        tmp = target.with_suffix(target.suffix + ".part")
        sh("qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw), str(tmp))
        tmp.rename(target)
        log(f"  {target.name}: {target.stat().st_size / MIB:,.0f} MiB in {time.time() - t0:.1f} s")
    return target


BUILDERS = {
    "win1g": build_win1g,
    "bitlocker1g": build_bitlocker1g,
    "million": lambda: build_entries("million", 1_000_000),
    "entries200k": lambda: build_entries("entries200k", 200_000),
    "win1g-e01": build_win1g_e01,
    "bigfile": build_bigfile,
    "hash4g": build_hash4g,
}


def meta_path(name: str) -> Path:
    return IMAGES / f"{name}.json"


def is_built(name: str) -> bool:
    m = meta_path(name)
    if not m.exists():
        return False
    meta = json.loads(m.read_text())
    return meta.get("build_version") == BUILD_VERSION and (IMAGES / meta["image"]).exists()


def build(name: str, force: bool) -> dict:
    if not force and is_built(name):
        return json.loads(meta_path(name).read_text())
    if os.geteuid() != 0:
        raise SystemExit("building workloads needs root (ntfs-3g FUSE mounts)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    log(f"building {name}")
    t0 = time.time()
    meta = BUILDERS[name]()
    meta.update(build_version=BUILD_VERSION, built_seconds=round(time.time() - t0, 1),
                built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    meta_path(name).write_text(json.dumps(meta, indent=1) + "\n")
    log(f"built {name} in {meta['built_seconds']} s")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"any of {', '.join(BUILDERS)} (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args()
    for n in args.names or list(BUILDERS):
        if n not in BUILDERS:
            ap.error(f"unknown workload {n}")
        build(n, args.force)


if __name__ == "__main__":
    main()


def partition_extent(image: Path, number: int) -> tuple[int, int]:
    """(byte offset, byte length) of GPT partition ``number`` (1-based) of ``image``."""
    with open(image, "rb") as f:
        f.seek(512)
        header = f.read(92)
        entries_lba, _count, entry_size = struct.unpack_from("<QII", header, 72)
        f.seek(entries_lba * 512 + (number - 1) * entry_size)
        first, last = struct.unpack_from("<QQ", f.read(entry_size), 32)
    return first * 512, (last - first + 1) * 512

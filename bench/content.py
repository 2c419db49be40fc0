"""Artifact content for the benchmark disks: realistic sizes, realistic compressibility.

The project's fixture helpers (``fixtures/artifacts.py``) write structurally valid but tiny
artifacts. A benchmark needs them at real-world sizes, and the peers need real-world registry
content: acquire (dissect.target) and plaso's image_export both find the user hives and expand
``%windir%`` from SOFTWARE/SYSTEM, and plaso's dfwinreg only accepts a hive as SOFTWARE or
SYSTEM when it holds the keys Windows always has (``App Paths``, ``Select``, ``Setup``,
``MountedDevices``). Without them they silently collect less, and the race is not a race.

Everything is deterministic (seeded) so a rebuilt workload has the same content.
"""

from __future__ import annotations

import hashlib
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
import artifacts as art  # the project's fixture helpers (fixtures/ is not a package)

ALICE_SID = "S-1-5-21-3623811015-3361044348-30300820-1001"
BOB_SID = "S-1-5-21-3623811015-3361044348-30300820-1002"
USERS = {"alice": ALICE_SID, "bob": BOB_SID}
HIVE_FT = 133_500_000_000_000_000  # 2024-01-20, FILETIME

_VOCAB_TEXT = (
    "Microsoft Windows System32 Provider EventData Data Name Level Task Opcode Keywords "
    "TimeCreated SystemTime EventRecordID Correlation Execution ProcessID ThreadID Channel "
    "Computer Security UserID Service Control Manager started stopped running state "
    "svchost.exe explorer.exe RuntimeBroker.exe chrome.exe msedge.exe powershell.exe "
    "C:\\Windows\\System32 C:\\Program Files C:\\Users\\alice\\AppData\\Local Temp "
    "HKLM\\SOFTWARE\\Microsoft HKCU\\Software\\Classes {4d36e967-e325-11ce-bfc1-08002be10318} "
    "S-1-5-18 S-1-5-21-3623811015-3361044348-30300820-1001 NT AUTHORITY SYSTEM LocalService "
    "NetworkService Kerberos NTLM Logon Logoff LogonType 2 3 5 7 10 0x0 0x3e7 0x80000000"
)
_VOCAB = _VOCAB_TEXT.split()


def rng_for(seed: str) -> random.Random:
    return random.Random(hashlib.sha256(seed.encode()).digest())


def _text(rng: random.Random, n: int, utf16: bool) -> bytes:
    out = " ".join(rng.choice(_VOCAB) for _ in range(n // 6 + 1))
    data = out.encode("utf-16-le") if utf16 else out.encode()
    return data[:n]


class Pool:
    """A few MiB of mixed bytes to slice file content from, so that building hundreds of
    MiB stays fast. ``text`` is the share of (UTF-16 or ASCII) text pieces; ``zeros`` of
    zero pieces; the rest is random (like compressed or encrypted data). With deflate, a
    0.5/0.2 pool compresses about 2.5x, like the mixed corpus measured in NOTES.md."""

    def __init__(self, seed: str, size: int = 8 << 20, text: float = 0.5, zeros: float = 0.2,
                 piece: int = 512) -> None:
        rng = rng_for(seed)
        buf = bytearray()
        while len(buf) < size:
            r = rng.random()
            if r < zeros:
                buf += bytes(piece)
            elif r < zeros + text:
                buf += _text(rng, piece, utf16=rng.random() < 0.6)
            else:
                buf += rng.randbytes(piece)
        self.data = bytes(buf[:size])
        self.size = size

    def take(self, rng: random.Random, n: int, tag: bytes = b"") -> bytes:
        """``n`` bytes: a distinct tag, then pool slices at random offsets (so no two files,
        and no two 64 KiB blocks of one file, are equal)."""
        out = bytearray(tag[:n])
        while len(out) < n:
            k = min(64 << 10, n - len(out))
            off = rng.randrange(0, self.size - k)
            out += struct.pack("<Q", rng.getrandbits(64))[: n - len(out)]
            out += self.data[off : off + min(k, n - len(out))]
        return bytes(out[:n])


# --------------------------------------------------------------------------- registry
def padded_hive(tree: dict, name: str, size: int, pool: Pool, seed: str) -> bytes:
    """A valid regf hive (fixtures' writer: base block, hbin, nk/vk/lh/sk cells) grown to
    ``size`` with extra 4 KiB hbins holding one free cell each, as a hive that has lived a
    while (free cells full of old data). The base block's hive-bins size and checksum are
    updated, so regf parsers accept the whole file."""
    hive = bytearray(art.regf_hive(tree, HIVE_FT, name))
    bins = len(hive) - 4096
    rng = rng_for(seed)
    extra = max(0, (size - len(hive)) // 4096)
    chunks = [bytes(hive)]
    filler = pool.take(rng, extra * 4096)
    for k in range(extra):
        off = bins + k * 4096
        hdr = b"hbin" + struct.pack("<IIQQI", off, 4096, 0, HIVE_FT, 0)
        cell = struct.pack("<i", 4096 - 32) + filler[k * 4096 + 36 : (k + 1) * 4096]
        chunks.append(hdr + cell)
    out = bytearray(b"".join(chunks))
    struct.pack_into("<I", out, 40, bins + extra * 4096)
    csum = 0
    for (d,) in struct.iter_unpack("<I", bytes(out[:508])):
        csum ^= d
    csum = 1 if csum == 0 else (0xFFFFFFFE if csum == 0xFFFFFFFF else csum)
    struct.pack_into("<I", out, 508, csum)
    return bytes(out)


def hive_log(name: str, size: int, seq: int, pool: Pool) -> bytes:
    """A new-format transaction log (base block type 6 + HvLE entries) of about ``size``."""
    if size == 0:
        return b""
    entries = max(1, (size - 4096) // 512)
    log = bytearray(art.regf_log(HIVE_FT, name, seq, entries))
    rng = rng_for(f"log {name} {seq}")
    fill = pool.take(rng, entries * 512)
    for i in range(entries):  # keep each entry's 40-byte header, fill the payload
        o = 4096 + i * 512
        log[o + 40 : o + 512] = fill[i * 512 + 40 : (i + 1) * 512]
    return bytes(log)


def _many(prefix: str, n: int, rng: random.Random, values: dict) -> dict:
    """``n`` sibling keys under ``prefix`` with the given value shapes (bulk realism)."""
    out: dict = {}
    for i in range(n):
        guid = "{%08X-%04X-%04X-%04X-%012X}" % (  # noqa: UP031
            rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(16),
            rng.getrandbits(16), rng.getrandbits(48))
        vals: dict = {}
        for vn, (kind, fmt) in values.items():
            text = fmt.format(i=i, guid=guid, w=rng.choice(_VOCAB))
            if kind == "binary":
                vals[vn] = (kind, text.encode("utf-16-le"))
            elif kind == "dword":
                vals[vn] = (kind, int(text))
            else:
                vals[vn] = (kind, text)
        out[f"{prefix}\\{guid}"] = vals
    return out


def software_tree(profile_style: str = "systemdrive") -> dict:
    pl = "Microsoft\\Windows NT\\CurrentVersion\\ProfileList"
    cv = "Microsoft\\Windows\\CurrentVersion"
    home = {"systemdrive": "%SystemDrive%\\Users\\{}", "c": "C:\\Users\\{}"}[profile_style]
    spec: dict[str, dict] = {
        "Microsoft\\Windows NT\\CurrentVersion": {
            "ProductName": ("sz", "Windows 10 Pro"), "EditionID": ("sz", "Professional"),
            "CurrentVersion": ("sz", "6.3"), "CurrentBuild": ("sz", "19045"),
            "CurrentBuildNumber": ("sz", "19045"), "DisplayVersion": ("sz", "22H2"),
            "CurrentMajorVersionNumber": ("dword", 10), "CurrentMinorVersionNumber": ("dword", 0),
            "InstallDate": ("dword", 1_690_000_000), "RegisteredOwner": ("sz", "alice"),
            "SystemRoot": ("sz", "C:\\Windows"), "PathName": ("sz", "C:\\Windows"),
            "ProductId": ("sz", "00330-80000-00000-AA123")},
        "Microsoft\\Windows NT\\CurrentVersion\\Winlogon": {
            "Shell": ("sz", "explorer.exe"),
            "Userinit": ("sz", "C:\\Windows\\system32\\userinit.exe,")},
        pl: {"ProfilesDirectory": ("expand_sz", "%SystemDrive%\\Users"),
             "Default": ("expand_sz", "%SystemDrive%\\Users\\Default"),
             "Public": ("expand_sz", "%SystemDrive%\\Users\\Public"),
             "ProgramData": ("expand_sz", "%SystemDrive%\\ProgramData")},
        f"{pl}\\S-1-5-18": {"ProfileImagePath": (
            "expand_sz", "%systemroot%\\system32\\config\\systemprofile"),
            "Flags": ("dword", 12), "State": ("dword", 0)},
        f"{pl}\\S-1-5-19": {"ProfileImagePath": (
            "expand_sz", "%systemroot%\\ServiceProfiles\\LocalService"),
            "Flags": ("dword", 0), "State": ("dword", 0)},
        f"{pl}\\S-1-5-20": {"ProfileImagePath": (
            "expand_sz", "%systemroot%\\ServiceProfiles\\NetworkService"),
            "Flags": ("dword", 0), "State": ("dword", 0)},
        cv: {"ProgramFilesDir": ("sz", "C:\\Program Files"),
             "ProgramFilesDir (x86)": ("sz", "C:\\Program Files (x86)"),
             "ProgramW6432Dir": ("sz", "C:\\Program Files"),
             "CommonFilesDir": ("sz", "C:\\Program Files\\Common Files"),
             "CommonFilesDir (x86)": ("sz", "C:\\Program Files (x86)\\Common Files"),
             "CommonW6432Dir": ("sz", "C:\\Program Files\\Common Files"),
             "ProgramFilesPath": ("expand_sz", "%ProgramFiles%"),
             "DevicePath": ("expand_sz", "%SystemRoot%\\inf")},
        f"{cv}\\Run": {"SecurityHealth": (
            "expand_sz", "%windir%\\system32\\SecurityHealthSystray.exe")},
        "Microsoft\\Windows Defender": {"ProductStatus": ("dword", 0)},
    }
    for user, sid in USERS.items():
        spec[f"{pl}\\{sid}"] = {"ProfileImagePath": ("expand_sz", home.format(user)),
                                "Flags": ("dword", 0), "State": ("dword", 0),
                                "Sid": ("binary", hashlib.sha256(sid.encode()).digest()[:28])}
    for exe, path in (("msedge.exe", "C:\\Program Files (x86)\\Microsoft\\Edge\\Application"),
                      ("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application"),
                      ("IEXPLORE.EXE", "C:\\Program Files\\Internet Explorer"),
                      ("wordpad.exe", "C:\\Program Files\\Windows NT\\Accessories")):
        spec[f"{cv}\\App Paths\\{exe}"] = {"": ("sz", f"{path}\\{exe}"), "Path": ("sz", path)}
    rng = rng_for("software bulk")
    spec.update(_many(f"{cv}\\Uninstall", 400, rng, {
        "DisplayName": ("sz", "{w} Runtime {i}"), "Publisher": ("sz", "{w} Corporation"),
        "InstallLocation": ("sz", "C:\\Program Files\\{w}\\{i}"),
        "DisplayVersion": ("sz", "10.0.{i}")}))
    spec.update(_many("Classes\\CLSID", 1500, rng, {
        "": ("sz", "{w} Class"), "InprocServer32": ("expand_sz", "%SystemRoot%\\System32\\{w}.dll")}))
    return art.reg_tree(spec)


def system_tree() -> dict:
    cs = "ControlSet001"
    logs = "%SystemRoot%\\System32\\Winevt\\Logs"
    spec: dict[str, dict] = {
        "Select": {"Current": ("dword", 1), "Default": ("dword", 1), "Failed": ("dword", 0),
                   "LastKnownGood": ("dword", 1)},
        "Setup": {"SystemSetupInProgress": ("dword", 0), "SetupType": ("dword", 0),
                  "CmdLine": ("sz", "oobe\\windeploy.exe")},
        "MountedDevices": {
            "\\DosDevices\\C:": ("binary", b"DMIO:ID:" + bytes.fromhex("0e5b8f2a1c3d4e5f8a6b7c8d9e0f1a23")),
            "\\??\\Volume{0e5b8f2a-1c3d-4e5f-8a6b-7c8d9e0f1a23}": (
                "binary", b"DMIO:ID:" + bytes.fromhex("0e5b8f2a1c3d4e5f8a6b7c8d9e0f1a23"))},
        f"{cs}\\Control": {"SystemStartOptions": ("sz", " NOEXECUTE=OPTIN")},
        f"{cs}\\Control\\ComputerName\\ComputerName": {"ComputerName": ("sz", "BENCH-PC")},
        f"{cs}\\Control\\Windows": {"Directory": ("expand_sz", "%SystemRoot%"),
                                    "ShutdownTime": ("binary", struct.pack("<Q", HIVE_FT))},
        f"{cs}\\Control\\Session Manager\\Environment": {
            "ComSpec": ("expand_sz", "%SystemRoot%\\system32\\cmd.exe"),
            "OS": ("sz", "Windows_NT"), "windir": ("expand_sz", "%SystemRoot%"),
            "TEMP": ("expand_sz", "%SystemRoot%\\TEMP"), "TMP": ("expand_sz", "%SystemRoot%\\TEMP"),
            "Path": ("expand_sz", "%SystemRoot%\\system32;%SystemRoot%;%SystemRoot%\\System32\\Wbem"),
            "PATHEXT": ("sz", ".COM;.EXE;.BAT;.CMD;.VBS;.VBE;.JS;.JSE;.WSF;.WSH;.MSC"),
            "NUMBER_OF_PROCESSORS": ("sz", "2"), "PROCESSOR_ARCHITECTURE": ("sz", "AMD64")},
        f"{cs}\\Control\\TimeZoneInformation": {"TimeZoneKeyName": ("sz", "UTC"),
                                                "Bias": ("dword", 0), "ActiveTimeBias": ("dword", 0)},
        f"{cs}\\Control\\Nls\\CodePage": {"ACP": ("sz", "1252"), "OEMCP": ("sz", "437")},
        f"{cs}\\Control\\Nls\\Language": {"Default": ("sz", "0409"), "InstallLanguage": ("sz", "0409")},
    }
    for log in ("Application", "System", "Security"):
        spec[f"{cs}\\Services\\EventLog\\{log}"] = {
            "File": ("expand_sz", f"{logs}\\{log}.evtx"), "MaxSize": ("dword", 20 << 20)}
    rng = rng_for("system bulk")
    for i in range(600):
        word = "".join(c for c in rng.choice(_VOCAB) if c.isalnum())[:12]
        name = f"{word or 'Svc'}{i}"
        spec[f"{cs}\\Services\\{name}"] = {
            "ImagePath": ("expand_sz", f"%SystemRoot%\\System32\\drivers\\{name}.sys"),
            "Start": ("dword", rng.randrange(5)), "Type": ("dword", 1),
            "DisplayName": ("sz", f"{name} service"), "ErrorControl": ("dword", 1)}
    return art.reg_tree(spec)


def sam_tree() -> dict:
    names = "SAM\\Domains\\Account\\Users\\Names"
    spec: dict[str, dict] = {"SAM\\Domains\\Account": {"F": ("binary", bytes(80))},
                             "SAM\\Domains\\Builtin": {}}
    for rid, user in ((500, "Administrator"), (501, "Guest"), (503, "DefaultAccount"),
                      (504, "WDAGUtilityAccount"), (1001, "alice"), (1002, "bob")):
        spec[f"{names}\\{user}"] = {"": ("dword", rid)}
        spec[f"SAM\\Domains\\Account\\Users\\{rid:08X}"] = {}
    return art.reg_tree(spec)


def security_tree() -> dict:
    return art.reg_tree({
        "Policy\\PolAdtEv": {"": ("binary", bytes(138))},
        "Policy\\PolEKList": {"": ("binary", bytes(64))},
        "Policy\\PolPrDmN": {"": ("binary", "WORKGROUP".encode("utf-16-le"))},
        "Policy\\Secrets\\DPAPI_SYSTEM": {},
    })


def user_tree(user: str) -> dict:
    cv = "Software\\Microsoft\\Windows\\CurrentVersion"
    spec: dict[str, dict] = {
        "AppEvents\\Schemes": {"": ("sz", ".Default")},
        "Console": {"ScreenBufferSize": ("dword", 0x23290078)},
        "Control Panel\\Desktop": {"Wallpaper": ("sz", ""), "WheelScrollLines": ("sz", "3")},
        "Environment": {"TEMP": ("expand_sz", "%USERPROFILE%\\AppData\\Local\\Temp"),
                        "TMP": ("expand_sz", "%USERPROFILE%\\AppData\\Local\\Temp")},
        "Keyboard Layout\\Preload": {"1": ("sz", "00000409")},
        f"{cv}\\Explorer\\RecentDocs": {"MRUListEx": ("binary", b"\0\0\0\0\xff\xff\xff\xff"),
                                        "0": ("binary", f"{user}-notes.txt".encode("utf-16-le"))},
        f"{cv}\\Run": {"OneDrive": ("sz", f"C:\\Users\\{user}\\AppData\\Local\\OneDrive.exe")},
        f"{cv}\\Explorer\\Shell Folders": {
            "Desktop": ("sz", f"C:\\Users\\{user}\\Desktop"),
            "Local AppData": ("sz", f"C:\\Users\\{user}\\AppData\\Local")},
    }
    spec.update(_many(f"{cv}\\Explorer\\UserAssist\\{{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}}"
                      "\\Count", 200, rng_for(f"ua {user}"),
                      {"HRZR_PGYFRFFVBA": ("binary", "{guid}")}))
    return art.reg_tree(spec)


def usrclass_tree(user: str) -> dict:
    spec: dict[str, dict] = {
        "Local Settings\\Software\\Microsoft\\Windows\\CurrentVersion\\TrayNotify": {
            "IconStreams": ("binary", user.encode() * 8)},
        "Local Settings\\Software\\Microsoft\\Windows\\Shell\\BagMRU": {
            "NodeSlot": ("dword", 1), "MRUListEx": ("binary", b"\0\0\0\0\xff\xff\xff\xff")},
    }
    spec.update(_many("Local Settings\\Software\\Microsoft\\Windows\\Shell\\Bags", 150,
                      rng_for(f"bags {user}"), {"SniffedFolderType": ("sz", "{w}")}))
    return art.reg_tree(spec)


def default_tree() -> dict:
    return art.reg_tree({
        "AppEvents\\Schemes": {"": ("sz", ".Default")},
        "Console": {"ScreenBufferSize": ("dword", 0x23290078)},
        "Control Panel\\Desktop": {"Wallpaper": ("sz", "")},
        "Environment": {"TEMP": ("expand_sz", "%USERPROFILE%\\AppData\\Local\\Temp")},
        "Keyboard Layout\\Preload": {"1": ("sz", "00000409")},
        "Software\\Microsoft\\Windows\\CurrentVersion": {},
    })


def amcache_tree() -> dict:
    spec = _many("Root\\InventoryApplicationFile", 1200, rng_for("amcache"), {
        "LowerCaseLongPath": ("sz", "c:\\program files\\{w}\\{i}.exe"),
        "FileId": ("sz", "0000{guid}"), "Size": ("dword", "{i}"), "Publisher": ("sz", "{w}")})
    for k in spec.values():
        k["Size"] = ("dword", len(k["LowerCaseLongPath"][1]) * 1000)
    spec["Root\\InventoryApplication"] = {}
    return art.reg_tree(spec)


# --------------------------------------------------------------------------- other artifacts
def evtx_file(seed: str, size: int, pool: Pool) -> bytes:
    """ElfFile header (with CRC) + 64 KiB ElfChnk chunks whose records are UTF-16 XML-ish
    text with some binary: real event logs deflate 5-10x."""
    chunks = max(1, (size - 4096) // 65536)
    head = art.evtx(seed, 1)[:4096]
    hdr = bytearray(head)
    struct.pack_into("<Q", hdr, 16, chunks - 1)  # last chunk number
    struct.pack_into("<H", hdr, 42, min(chunks, 0xFFFF))
    import zlib  # local: only here

    struct.pack_into("<I", hdr, 124, zlib.crc32(bytes(hdr[:120])))
    rng = rng_for(seed)
    body = pool.take(rng, chunks * 65536)
    out = [bytes(hdr)]
    for c in range(chunks):
        ch = bytearray(body[c * 65536 : (c + 1) * 65536])
        ch[:512] = bytes(512)
        struct.pack_into("<8sQQQQIIII", ch, 0, b"ElfChnk\0", c * 100 + 1, c * 100 + 100,
                         c * 100 + 1, c * 100 + 100, 128, 0x200, 0x200, 0)
        out.append(bytes(ch))
    return b"".join(out)


def prefetch(exe: str, size: int) -> bytes:
    """Windows 10 prefetch: MAM\\x04 + uncompressed size + Xpress-Huffman (random-looking)."""
    rng = rng_for(f"pf {exe}")
    return b"MAM\x04" + struct.pack("<I", size * 3) + rng.randbytes(max(0, size - 8))


def ese(seed: str, size: int, pool: Pool) -> bytes:
    """ESE database (SRUDB.dat): header + shadow header with the 0x89ABCDEF magic, then
    pages of mixed content (many ESE pages are mostly empty)."""
    head = art.ese_database(seed, 2)
    return head + pool.take(rng_for(seed), max(0, size - len(head)))


def usn_records(names: list[str], total: int, first_usn: int) -> bytes:
    """USN_RECORD_V2 records for the given file names, never straddling a 4 KiB page."""
    rng = rng_for("usn")
    out = bytearray()
    k = 0
    reasons = (art.USN_REASON_FILE_CREATE, art.USN_REASON_DATA_EXTEND | art.USN_REASON_FILE_CREATE,
               art.USN_REASON_CLOSE | art.USN_REASON_DATA_EXTEND, 0x1000, 0x2000, 0x200)
    while len(out) < total:
        name = names[k % len(names)]
        k += 1
        fref, pref = rng.randrange(40, 60000) | (1 << 48), rng.randrange(40, 9000) | (1 << 48)
        ts, reason = HIVE_FT + k * 10_000_000, rng.choice(reasons)
        rec = art.usn_record_v2(first_usn + len(out), fref, pref, ts, reason, 0x20, name)
        room = 4096 - len(out) % 4096
        if len(rec) > room:  # like Windows: records never straddle a 4 KiB page
            out += bytes(room)
            rec = art.usn_record_v2(first_usn + len(out), fref, pref, ts, reason, 0x20, name)
        out += rec
    return bytes(out[: total - total % 4096])


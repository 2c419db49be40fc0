"""Facts about the running machine, for a live collection's ``acquisition.json``.

References: ``proc(5)`` (``/proc/uptime``, ``/proc/stat`` ``btime``,
``/proc/net/if_inet6``, ``/proc/net/fib_trie``), ``utmp(5)`` and glibc's
``bits/utmp.h`` (the 384-byte ``struct utmp`` of Linux x86-64 and aarch64),
``adjtimex(2)`` (``struct timex``; ``STA_UNSYNC``), and the sysfs clocksource ABI
(``/sys/devices/system/clocksource/clocksource0/current_clocksource``).

Everything is read, nothing written; no packet is sent (the clock is not compared
with a time server: only what the kernel knows of its own synchronisation is given).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

UTMP_PATHS = (Path("/run/utmp"), Path("/var/run/utmp"))
# ut_type, ut_pid, ut_line, ut_id, ut_user, ut_host, e_termination, e_exit, ut_session,
# tv_sec, tv_usec, ut_addr_v6[4], 20 unused bytes.
_UTMP = struct.Struct("<hxxi32s4s32s256shhiii16s20x")
_USER_PROCESS = 7
_CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
_STA_UNSYNC = 0x0040
_STA_NANO = 0x2000


def _iso(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def host_facts(mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``host`` object: identity, kernel, boot, users, mounts, addresses, clock."""
    uname = os.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel": {
            "sysname": uname.sysname,
            "release": uname.release,
            "version": uname.version,
            "machine": uname.machine,
        },
        **boot_facts(),
        "users": logged_in_users(),
        "mounts": mounts,
        "addresses": ip_addresses(),
        "clock": clock_facts(),
    }


def boot_facts() -> dict[str, Any]:
    """Boot time from ``/proc/uptime`` (sub-second) and ``/proc/stat`` (``btime``)."""
    now = time.time()
    facts: dict[str, Any] = {"uptime_seconds": None, "boot_time": None, "boot_time_btime": None}
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return facts
    facts["uptime_seconds"] = uptime
    facts["boot_time"] = _iso(now - uptime)
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                facts["boot_time_btime"] = _iso(int(line.split()[1]))
    except (OSError, ValueError):
        pass
    return facts


def parse_utmp(data: bytes) -> list[dict[str, Any]]:
    """The USER_PROCESS records of a utmp file (who is logged in)."""
    users = []
    for start in range(0, len(data) - _UTMP.size + 1, _UTMP.size):
        (kind, pid, line, _id, user, host, _t, _e, _s, sec, usec, _a) = _UTMP.unpack_from(
            data, start
        )
        if kind != _USER_PROCESS:
            continue
        users.append(
            {
                "user": user.split(b"\0", 1)[0].decode("utf-8", "replace"),
                "line": line.split(b"\0", 1)[0].decode("utf-8", "replace"),
                "host": host.split(b"\0", 1)[0].decode("utf-8", "replace"),
                "pid": pid,
                "login_time": _iso(sec + usec / 1e6),
            }
        )
    return users


def logged_in_users() -> dict[str, Any]:
    """Users logged in, from the first utmp file found (none: said so)."""
    for path in UTMP_PATHS:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return {"source": str(path), "error": exc.strerror or str(exc), "sessions": []}
        return {"source": str(path), "sessions": parse_utmp(data)}
    return {
        "source": None,
        "error": "no utmp file (" + ", ".join(map(str, UTMP_PATHS)) + "): logged-in users unknown",
        "sessions": [],
    }


def ip_addresses() -> dict[str, Any]:
    """Interface addresses: ``ip -j addr`` when present, else ``/proc/net``."""
    ip = shutil.which("ip")
    if ip:
        try:
            run = subprocess.run(
                [ip, "-j", "addr"], capture_output=True, timeout=10, check=True
            )
            return {"source": "ip -j addr", "interfaces": _from_ip_json(run.stdout)}
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return {"source": "/proc/net/fib_trie, /proc/net/if_inet6", "interfaces": _from_proc_net()}


def _from_ip_json(text: bytes) -> list[dict[str, Any]]:
    out = []
    for link in json.loads(text):
        out.append(
            {
                "ifname": link.get("ifname"),
                "mac": link.get("address"),
                "state": link.get("operstate"),
                "addresses": [
                    {"family": a.get("family"), "address": a.get("local"), "prefixlen": a.get("prefixlen")}
                    for a in link.get("addr_info", [])
                ],
            }
        )
    return out


def _from_proc_net() -> list[dict[str, Any]]:
    """Addresses without ``ip``: IPv6 from if_inet6; IPv4 local /32 entries of fib_trie."""
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexaddr, _idx, plen, _scope, _flags, name = line.split()
            addr = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))
            found.setdefault(name, []).append({"family": "inet6", "address": addr, "prefixlen": int(plen, 16)})
    except (OSError, ValueError):
        pass
    try:
        last = ""
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|--"):
                last = text[3:].strip()
            elif text.startswith("/32 host LOCAL") and last:
                entry = {"family": "inet", "address": last, "prefixlen": None}
                found.setdefault("?", [])
                if entry not in found["?"]:
                    found["?"].append(entry)
    except OSError:
        pass
    return [{"ifname": k, "mac": None, "state": None, "addresses": v} for k, v in found.items()]


def clock_facts() -> dict[str, Any]:
    """UTC now, the local offset and time zone, the clock source, the kernel's NTP state."""
    now = time.time()
    local = time.localtime(now)
    zone_link = ""
    try:
        zone_link = str(Path("/etc/localtime").readlink())
    except OSError:
        pass
    try:
        zone_name = Path("/etc/timezone").read_text().strip()
    except OSError:
        zone_name = ""
    return {
        "utc": _iso(now),
        "utc_offset_seconds": local.tm_gmtoff,
        "timezone_abbreviation": local.tm_zone,
        "tz_env": os.environ.get("TZ"),
        "etc_timezone": zone_name or None,
        "etc_localtime": zone_link or None,
        "clocksource": _read(_CLOCKSOURCE),
        "monotonic_seconds": time.clock_gettime(time.CLOCK_MONOTONIC),
        "ntp": kernel_ntp_state(),
    }


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def kernel_ntp_state() -> dict[str, Any] | None:
    """``adjtimex`` with no mode bits (reads only): synchronised, estimated/max error.

    ``struct timex`` on LP64 Linux: modes at 0, offset 8, freq 16, maxerror 24,
    esterror 32, status 40 (the buffer is larger than the struct).
    """
    if os.uname().sysname != "Linux" or ctypes.sizeof(ctypes.c_long) != 8:
        return None
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    buf = ctypes.create_string_buffer(512)
    state = libc.adjtimex(buf)
    if state < 0:
        return None
    offset, _freq, maxerror, esterror = struct.unpack_from("<4q", buf.raw, 8)
    status = struct.unpack_from("<i", buf.raw, 40)[0]
    return {
        "synchronised": not status & _STA_UNSYNC,
        "state": state,
        "offset_ns": offset if status & _STA_NANO else offset * 1000,
        "max_error_us": maxerror,
        "estimated_error_us": esterror,
    }

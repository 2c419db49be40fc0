"""Independent oracles: The Sleuth Kit command-line tools and coreutils.

Every helper here runs a tool the project did not write and parses its output.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from tests.conftest import need_tool

ENV = {"TZ": "UTC", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}


def run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, env=ENV).stdout


def mmls(image: Path) -> list[tuple[int, int, str]]:
    """(start sector, length in sectors, description) of each partition mmls lists."""
    text = run(need_tool("mmls"), str(image))
    parts = []
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+(\d+(?::\d+)?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$", line)
        if m:
            parts.append((int(m.group(2)), int(m.group(4)), m.group(5).strip()))
    return parts


def fls_tree(image: Path, offset_sectors: int) -> tuple[set[str], set[str], dict[str, int]]:
    """(paths, ADS lines, path -> metadata address) of allocated entries, per ``fls -r -p``."""
    lines = run(need_tool("fls"), "-r", "-p", "-o", str(offset_sectors), str(image)).splitlines()
    paths: set[str] = set()
    ads: set[str] = set()
    addr: dict[str, int] = {}
    for line in lines:
        m = re.match(r"^(\S)/(\S) (\* )?(\S+):\t(.*)$", line)
        assert m, line
        name, parts = m.group(5), m.group(4).split("-")
        # Skip deleted names, TSK's virtual orphan folder, FAT volume-label entries, and
        # the "." entries fls descends into (it prints a directory's ADS twice).
        if (
            m.group(3)
            or name.startswith("$OrphanFiles")
            or name.endswith("(Volume Label Entry)")
            or "." in name.rsplit(":", 1)[0].split("/")
        ):
            continue
        if ":" in name.rsplit("/", 1)[-1]:
            base = name.rsplit(":", 1)[0]
            paths.add(base)
            addr.setdefault(base, int(parts[0]))
            if len(parts) > 1 and parts[1] == "128":
                ads.add(name)
        else:
            paths.add(name)
            addr[name] = int(parts[0])
    return paths, ads, addr


def fls_streams(image: Path, offset_sectors: int) -> dict[str, str]:
    """``path`` or ``path:stream`` -> icat address (``addr`` or ``addr-type-id``)."""
    lines = run(need_tool("fls"), "-r", "-p", "-o", str(offset_sectors), str(image)).splitlines()
    out: dict[str, str] = {}
    for line in lines:
        m = re.match(r"^(\S)/(\S) (\* )?(\S+):\t(.*)$", line)
        if not m or m.group(3):
            continue
        name, addr = m.group(5), m.group(4)
        if "." in name.rsplit(":", 1)[0].split("/"):
            continue
        if ":" in name.rsplit("/", 1)[-1]:
            out[name] = addr
        else:
            out.setdefault(name, addr.split("-")[0])
    return out


def icat_sha256(image: Path, offset_sectors: int, inode: str) -> str:
    """SHA-256 of ``icat -o OFF image INODE`` (INODE may be ``addr-128-id``)."""
    out = subprocess.run(
        [need_tool("icat"), "-o", str(offset_sectors), str(image), inode],
        check=True, capture_output=True, env=ENV,
    ).stdout
    return hashlib.sha256(out).hexdigest()


def file_digest(path: Path, tool: str) -> str:
    """``md5sum``/``sha256sum`` of a file (coreutils)."""
    return run(need_tool(tool), str(path)).split()[0]


def istat_data_clusters(image: Path, offset_sectors: int, inode: int) -> list[int]:
    """Cluster numbers of the unnamed ``$DATA`` attribute, in file order, per ``istat``."""
    text = run(need_tool("istat"), "-o", str(offset_sectors), str(image), str(inode))
    clusters: list[int] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("Type: "):
            inside = line.startswith("Type: $DATA") and "Name: N/A" in line
            continue
        if inside:
            clusters.extend(int(c) for c in line.split())
    return clusters

"""Read each tool's output back: which files it holds and the sha256 of each one's content.

Every reader hashes the bytes the tool actually wrote (tar/zip members, exported files),
never a hash list the tool wrote about itself, except where a tool stored a file once for
several paths (image_export's and our de-duplication): then the extra paths are credited
only if the hash the tool recorded for them is that of a file it really wrote.

Paths are compared case-insensitively after one normalisation applied to every tool:
image_export replaces ``$``, ``:`` and ``%`` with ``_`` in the names it writes, so all three
become ``_`` everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

CHUNK = 1 << 20


def norm(path: str) -> str:
    p = path.replace("\\", "/").lstrip("/").lower()
    return re.sub(r"[$:%]", "_", p)


@dataclass
class Output:
    size: int = 0  # bytes on disk of the tool's output (archive, or exported tree)
    files: dict[str, str] = field(default_factory=dict)  # norm path -> sha256
    shown: dict[str, str] = field(default_factory=dict)  # norm path -> path as written
    notes: list[str] = field(default_factory=list)

    def add(self, path: str, digest: str) -> None:
        k = norm(path)
        self.files[k] = digest
        self.shown.setdefault(k, path)


def _hash_stream(f, h: hashlib._Hash | None = None) -> str:  # type: ignore[name-defined]
    h = h or hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def read_ours(container: Path) -> Output:
    """Our ZIP64 container: hash every stored member; sparse members ($J) are rebuilt to
    their logical content from the manifest's range map (zeros in the holes)."""
    out = Output(size=container.stat().st_size)
    with zipfile.ZipFile(container) as zf:
        records = [json.loads(line) for line in zf.read("manifest.jsonl").splitlines() if line]
        member_hash: dict[str, str] = {}
        for r in records:
            if r.get("outcome") not in ("collected", "duplicate"):
                continue
            member = r["container_path"]
            sparse = r.get("sparse")
            key = member + ("#sparse" if sparse else "")
            if key not in member_hash:
                h = hashlib.sha256()
                with zf.open(member) as f:
                    if sparse:
                        pos = 0
                        for off, length in sparse["ranges"]:
                            _zeros(h, off - pos)
                            left = length
                            while left:
                                chunk = f.read(min(CHUNK, left))
                                if not chunk:
                                    raise ValueError(f"{member}: short sparse member")
                                h.update(chunk)
                                left -= len(chunk)
                            pos = off + length
                        _zeros(h, sparse["logical_size"] - pos)
                        member_hash[key] = h.hexdigest()
                    else:
                        member_hash[key] = _hash_stream(f, h)
            path = r["path"] + (f":{r['stream']}" if r.get("stream") else "")
            out.add(path, member_hash[key])
            if r["outcome"] == "duplicate":
                out.notes.append(f"dedup: {path}")
    return out


def _zeros(h, n: int) -> None:
    z = bytes(CHUNK)
    while n > 0:
        h.update(z[: min(n, CHUNK)])
        n -= CHUNK


# fs/C:/..., fs/sysvol/..., fs/$rootfs$/... (no OS found), fs/$fs$/fs3/... (other volumes)
_ACQ_PREFIX = re.compile(r"^fs/(?:[A-Za-z]:|sysvol|\$rootfs\$|\$fs\$/[^/]+)/")


def read_acquire(outdir: Path) -> Output:
    """acquire's tar or zip (``fs/C:/...`` member names; report and log beside it)."""
    archives = [p for p in outdir.iterdir() if p.suffix in (".tar", ".zip") or p.name.endswith(".tar.gz")]
    if not archives:
        return Output(notes=["no archive written"])
    arc = archives[0]
    out = Output(size=arc.stat().st_size)
    if arc.suffix == ".zip":
        with zipfile.ZipFile(arc) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                with zf.open(info) as f:
                    out.add(_ACQ_PREFIX.sub("", info.filename), _hash_stream(f))
    else:
        with tarfile.open(arc) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                f = tf.extractfile(m)
                assert f is not None
                out.add(_ACQ_PREFIX.sub("", m.name), _hash_stream(f))
    return out


def read_image_export(outdir: Path) -> Output:
    """image_export's tree (names sanitised) plus its hashes.json for de-duplicated paths."""
    out = Output()
    written: set[str] = set()
    for p in sorted(outdir.rglob("*")):
        if not p.is_file() or p.name == "hashes.json":
            continue
        out.size += p.stat().st_size
        rel = p.relative_to(outdir).as_posix()
        with open(p, "rb") as f:
            d = _hash_stream(f)
        out.add(rel, d)
        written.add(d)
    hj = outdir / "hashes.json"
    if hj.exists():
        out.size += hj.stat().st_size
        for entry in json.loads(hj.read_text()):
            for path in entry["paths"]:
                if norm(path) not in out.files and entry["sha256"] in written:
                    out.add(path, entry["sha256"])
                    out.notes.append(f"dedup: {path}")
    return out


def expected_set(truth: dict) -> dict[str, dict]:
    """The like-for-like selection, from the builder's truth (not from our rule engine):
    norm path -> {"sha256", "alt" (acceptable other form), "path"}."""
    pat = re.compile(
        r"^(windows/system32/config/(sam|security|software|system|default)(\.log[12]?)?"
        r"|windows/system32/config/systemprofile/ntuser\.dat.*"
        r"|windows/serviceprofiles/[^/]+/ntuser\.dat.*"
        r"|users/[^/]+/ntuser\.dat(\.log.*)?"
        r"|users/[^/]+/appdata/local/microsoft/windows/usrclass\.dat(\.log.*)?"
        r"|windows/system32/winevt/logs/[^/]+\.evtx"
        r"|windows/system32/config/[^/]+\.evt"
        r"|windows/prefetch/[^/]+\.pf)$")
    exp: dict[str, dict] = {}
    for path, f in truth["files"].items():
        if pat.match(path.lower()):
            exp[norm(path)] = {"sha256": f["sha256"], "path": path, "size": f["size"]}
    for path, f in truth["ntfs_metadata"].items():
        exp[norm(path)] = {"sha256": f["sha256"], "path": path, "size": f["size"],
                           "alt": f.get("sha256_allocated_tail")}
    return exp


def check(out: Output, expected: dict[str, dict]) -> dict:
    """Compare one tool's output with the expected selection."""
    missing, wrong, alt = [], [], []
    for k, e in expected.items():
        got = out.files.get(k)
        if got is None:
            missing.append(e["path"])
        elif got == e["sha256"]:
            continue
        elif e.get("alt") and got == e["alt"]:
            alt.append(e["path"])
        else:
            wrong.append(e["path"])
    extra = sorted(out.shown[k] for k in out.files if k not in expected)
    return {"expected": len(expected), "matched": len(expected) - len(missing) - len(wrong),
            "missing": sorted(missing), "mismatched": sorted(wrong),
            "allocated_tail_only": alt, "extra": extra,
            "dedup_paths": sum(1 for n in out.notes if n.startswith("dedup:"))}

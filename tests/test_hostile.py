"""Crafted containers: verify, show and extract give one-line findings, stay bounded and
never write outside DEST.

Every container here is built with Python's zipfile and raw byte patches (not with
this tool's writer), so the hostile shapes are ones our writer would refuse to make.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.container.reader import summary, verify

CONTENT = b"registry hive bytes " * 200


def hashes(data: bytes) -> dict[str, str]:
    return {alg: hashlib.new(alg, data).hexdigest() for alg in ("md5", "sha1", "sha256")}


def record(path: str, member: str, data: bytes, **extra) -> dict:
    return {
        "path": path,
        "stream": "",
        "volume": 1,
        "volume_label": "p1",
        "container_path": member,
        "size": len(data),
        "hashes": hashes(data),
        "outcome": "collected",
        **extra,
    }


def build(
    path: Path,
    members: list[tuple[zipfile.ZipInfo | str, bytes]],
    records: list[dict],
    *,
    seal: bytes | str | None = "auto",
    counts: dict[str, int] | None = None,
) -> Path:
    """A container: the given members, manifest, acquisition and (by default) a true seal."""
    manifest = "".join(json.dumps(r) + "\n" for r in records).encode()
    acq = json.dumps(
        {
            "status": "complete",
            "counts": counts or {"collected": len(records)},
            "volume_errors": [],
        }
    ).encode()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we plant
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            digests = {}
            for info, data in [*members, ("manifest.jsonl", manifest), ("acquisition.json", acq)]:
                zf.writestr(info, data)
                name = info.filename if isinstance(info, zipfile.ZipInfo) else info
                digests[name] = hashlib.sha256(data).hexdigest()
            if seal == "auto":
                doc = {"format": "selective-imager-seal/1", "algorithm": "sha256", "members": digests}
                zf.writestr("SEAL.json", json.dumps(doc))
            elif seal is not None:
                assert isinstance(seal, bytes)
                zf.writestr("SEAL.json", seal)
    return path


def patch_central_size(path: Path, name: str, file_size: int) -> None:
    """Make the central directory declare another uncompressed size for ``name``."""
    raw = bytearray(path.read_bytes())
    pos = 0
    while (pos := raw.find(b"PK\x01\x02", pos)) >= 0:
        name_len = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46 : pos + 46 + name_len] == name.encode():
            struct.pack_into("<I", raw, pos + 24, file_size)
            path.write_bytes(bytes(raw))
            return
        pos += 4
    raise AssertionError(name)


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777 << 16) & 0xFFFFFFFF
    return info


def _case(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A hostile container and the finding kind verify must name."""
    p = tmp_path / f"{kind}.zip"
    good = ("files/p1/Windows/System32/config/SYSTEM", CONTENT)
    good_rec = record("Windows/System32/config/SYSTEM", good[0], CONTENT)
    if kind == "traversal":
        members = [good, ("files/../../evil", b"x"), ("/abs/evil", b"y"), ("C:/evil", b"z")]
        recs = [good_rec, record("../../../../evil", "files/../../evil", b"x")]
        return build(p, members, recs), "unsafe-name"
    if kind == "duplicate":
        return build(p, [good, (good[0], b"other content")], [good_rec]), "unexpected"
    if kind == "symlink":
        link = (symlink_info("files/p1/link"), b"/etc/passwd")
        return build(p, [good, link], [good_rec, record("link", "files/p1/link", b"/etc/passwd")]), "symlink"
    if kind == "size-lies":
        build(p, [good], [good_rec])
        patch_central_size(p, good[0], len(CONTENT) // 2)
        return p, "modified"
    if kind == "impossible-size":
        build(p, [good], [good_rec])
        patch_central_size(p, good[0], 0xFFFFFFF0)
        return p, "impossible-size"
    if kind == "manifest-elsewhere":
        recs = [good_rec, record("x", "SEAL.json", b""), record("y", "../../etc/passwd", b"")]
        return build(p, [good], recs), "manifest-mismatch"
    if kind == "seal-missing":
        return build(p, [good], [good_rec], seal=None), "seal-missing"
    if kind == "seal-forged":
        forged = json.dumps({"algorithm": "sha256", "members": {good[0]: "00" * 32}}).encode()
        return build(p, [good], [good_rec], seal=forged), "modified"
    if kind == "seal-garbage":
        return build(p, [good], [good_rec], seal=b"\x00not json"), "seal-missing"
    if kind == "counts-forged":
        return build(p, [good], [good_rec], counts={"collected": 5}), "acquisition-mismatch"
    raise AssertionError(kind)


KINDS = [
    "traversal",
    "duplicate",
    "symlink",
    "size-lies",
    "impossible-size",
    "manifest-elsewhere",
    "seal-missing",
    "seal-forged",
    "seal-garbage",
    "counts-forged",
]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_container(tmp_path, kind):
    container, finding = _case(tmp_path, kind)
    runner = CliRunner()
    started = time.monotonic()
    verified = runner.invoke(app, ["verify", str(container)])
    assert verified.exit_code == 1, verified.output
    assert "Traceback" not in verified.output
    assert any(line.startswith(finding) for line in verified.output.splitlines()), verified.output
    assert "intact: NO" in verified.output and "OK: intact" not in verified.output
    as_json = json.loads(runner.invoke(app, ["verify", str(container), "--json"]).stdout)
    assert as_json["intact"] is False and as_json["ok"] is False
    assert finding in {d["kind"] for d in as_json["differences"]}

    show = runner.invoke(app, ["show", str(container)])
    assert show.exit_code == 0 and "Traceback" not in show.output

    dest = tmp_path / "dest"
    refused = runner.invoke(app, ["extract", str(container), str(dest)])
    assert refused.exit_code == 1
    assert "not extracted" in refused.output and "--force" in refused.output
    assert not dest.exists() or not any(dest.rglob("*"))

    forced = runner.invoke(app, ["extract", str(container), str(dest), "--force"])
    assert "Traceback" not in forced.output
    outside = {p for p in tmp_path.rglob("*") if dest not in p.parents and p != dest}
    assert outside == {container}, sorted(outside)
    for path in dest.rglob("*"):
        assert not path.is_symlink(), path
        assert Path(os.path.realpath(path)).is_relative_to(dest.resolve())
    assert time.monotonic() - started < 30


def test_deflate_bomb_is_streamed_in_bounded_memory(tmp_path):
    """64 MiB of zeros in ~64 KB: hashed piecewise, never held whole."""
    size = 64 << 20
    bomb = tmp_path / "bomb.zip"
    zeros_sha = hashlib.sha256()
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        zeros_sha.update(chunk)
    # The bomb member is written by streaming, so the test itself stays small too.
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("files/p1/bomb", "w", force_zip64=True) as fh:
            for _ in range(size >> 20):
                fh.write(chunk)
        rec = {
            "path": "bomb", "stream": "", "volume": 1, "container_path": "files/p1/bomb",
            "size": size, "hashes": {"sha256": zeros_sha.hexdigest()}, "outcome": "collected",
        }
        zf.writestr("manifest.jsonl", json.dumps(rec) + "\n")
        # One manifest line of 32 MiB with no newline: longer than any real record.
        with zf.open("log.jsonl", "w", force_zip64=True) as fh:
            for _ in range(32):
                fh.write(b"a" * (1 << 20))
        zf.writestr(
            "SEAL.json",
            json.dumps({"algorithm": "sha256", "members": {"files/p1/bomb": zeros_sha.hexdigest()}}),
        )
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    report = verify(bomb)
    data = summary(bomb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 24 << 20, peak
    assert report.bytes_hashed == size
    assert data["items"] == 1
    assert {d.kind for d in report.differences} == {"unexpected"}  # log.jsonl is not sealed


def test_over_long_manifest_line_is_a_finding(tmp_path):
    path = tmp_path / "line.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("manifest.jsonl", "w", force_zip64=True) as fh:
            for _ in range(20):
                fh.write(b"[" * (1 << 20))
            fh.write(b"\n" + json.dumps(record("a", "files/p1/a", b"a")).encode() + b"\n")
        zf.writestr("files/p1/a", b"a")
    tracemalloc.start()
    report = verify(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 48 << 20, peak
    kinds = [(d.kind, d.detail) for d in report.differences]
    assert any(k == "manifest-mismatch" and "longer than" in d for k, d in kinds), kinds
    assert report.items_checked == 1  # the line after the long one is still read


def test_metadata_member_that_declares_too_much(tmp_path):
    path = tmp_path / "seal-bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("SEAL.json", "w", force_zip64=True) as fh,
    ):
        for _ in range(80):
            fh.write(bytes(1 << 20))
    report = verify(path)
    assert [d.kind for d in report.differences] == ["seal-missing"]
    assert "not read" in report.differences[0].detail

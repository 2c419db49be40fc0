"""The own EWF reader on E01/S01 sets made by ewfacquire in the test session.

Oracles: coreutils (``sha256sum``/``md5sum``/``cmp`` of the raw source ewfacquire was given),
``ewfverify`` (the sector range of a damaged chunk), pyewf (the fallback's bytes).
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from selective_imager.collect.hashing import hash_source
from selective_imager.sources import open_source
from selective_imager.sources.ewf import BACKEND_ENV
from selective_imager.sources.ewf_reader import EwfChunkError, parse_image
from tests.conftest import EWF_MEDIA as MEDIA
from tests.conftest import need_tool

# name: ewfacquire arguments (format, compression, sectors per chunk, segment size).
VARIANTS: dict[str, list[str]] = {
    "fast-32k-segments": ["-f", "encase6", "-c", "deflate:fast", "-b", "64", "-S", "1MiB"],
    "best-1m": ["-f", "encase6", "-c", "deflate:best", "-b", "2048", "-d", "sha1"],
    "none-64k-segments": ["-f", "encase6", "-c", "deflate:none", "-b", "128", "-S", "3MiB"],
    "encase5-256k": ["-f", "encase5", "-c", "deflate:fast", "-b", "512"],
    "encase1-32k": ["-f", "encase1", "-c", "deflate:fast", "-b", "64", "-S", "2MiB"],
    "smart-32k-segments": ["-f", "smart", "-c", "deflate:fast", "-b", "64", "-S", "2MiB"],
    "ftk-128k": ["-f", "ftk", "-c", "deflate:best", "-b", "256"],
}


def ewfacquire(source: Path, target: Path, args: list[str]) -> Path:
    """Run ewfacquire; returns the first segment."""
    tool = need_tool("ewfacquire")
    subprocess.run(
        [tool, "-u", "-q", "-B", str(MEDIA), "-t", str(target), *args, str(source)],
        check=True,
        capture_output=True,
    )
    first = sorted(target.parent.glob(target.name + ".[EeSs]01"))
    assert first, f"ewfacquire wrote nothing for {target}"
    return first[0]


@pytest.fixture(scope="session")
def e01s(media: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ewf-sets")
    out = {}
    for name, args in VARIANTS.items():
        folder = base / name
        folder.mkdir()
        out[name] = ewfacquire(media, folder / "img", args)
    return out


def coreutils_hash(tool: str, path: Path) -> str:
    return subprocess.run(
        [tool, str(path)], check=True, capture_output=True, text=True
    ).stdout.split()[0]


def stream_sha256(stream) -> str:
    h = hashlib.sha256()
    for offset in range(0, stream.size, 3 << 20):
        h.update(stream.read_at(offset, 3 << 20))
    return h.hexdigest()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_own_reader_equals_the_source(name, e01s, media, monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    raw = media.read_bytes()
    with open_source(e01s[name]) as src:
        details = src.info.details
        assert details["ewf.backend"] == "own", details.get("ewf.backend_note")
        assert src.info.size == MEDIA
        assert stream_sha256(src.stream) == coreutils_hash("sha256sum", media)
        assert details["stored_hash.md5"] == coreutils_hash("md5sum", media)
        if "sha1" in VARIANTS[name]:
            assert details["stored_hash.sha1"] == coreutils_hash("sha1sum", media)
        rng = random.Random(name)
        for _ in range(150):
            offset = rng.randrange(MEDIA)
            length = rng.choice((1, 512, 4096, 40000, 300000))
            assert src.stream.read_at(offset, length) == raw[offset : offset + length]
        chunk = int(details["ewf.chunk_size"])
        last = (MEDIA - 1) // chunk * chunk
        assert src.stream.read_at(last - 7, chunk + 100) == raw[last - 7 :]


def test_segment_boundaries_are_covered(e01s, media):
    """The multi-segment sets really have several segments; each boundary reads right."""
    raw = media.read_bytes()
    image = parse_image([str(p) for p in sorted(e01s["fast-32k-segments"].parent.iterdir())])
    assert len(image.segments) >= 5
    with open_source(e01s["fast-32k-segments"]) as src:
        cs = image.volume.chunk_size
        for first in image.segment_first_chunks[1:]:
            at = first * cs
            assert src.stream.read_at(at - 3000, 6000) == raw[at - 3000 : at + 3000]


def test_headers_from_the_header2_section(media, tmp_path):
    need_tool("ewfinfo")
    first = ewfacquire(
        media,
        tmp_path / "hdr",
        ["-f", "encase6", "-c", "deflate:fast", "-C", "CASE-7", "-E", "EV-9", "-e", "Ann Examiner",
         "-D", "lab disk", "-N", "a note"],
    )  # fmt: skip
    with open_source(first) as src:
        d = src.info.details
    info = subprocess.run(
        ["ewfinfo", str(first)], check=True, capture_output=True, text=True
    ).stdout
    for key, label in (
        ("case_number", "Case number"),
        ("evidence_number", "Evidence number"),
        ("examiner_name", "Examiner name"),
        ("description", "Description"),
        ("notes", "Notes"),
    ):
        shown = re.search(rf"^\s*{label}:\s*(.*)$", info, re.M)
        assert shown is not None and d[f"header.{key}"] == shown.group(1).strip()


def _damage(first: Path, copy_to: Path, *, compressed: bool) -> Path:
    """Copy a set and flip 8 bytes in the middle of its biggest (compressed or stored) chunk."""
    copy_to.mkdir()
    for seg in first.parent.iterdir():
        shutil.copy(seg, copy_to / seg.name)
    segments = [str(p) for p in sorted(copy_to.iterdir())]
    image = parse_image(segments)
    t = image.chunks
    candidates = [i for i in range(len(t)) if bool(t.compressed[i]) == compressed]
    index = max(candidates, key=lambda i: t.size[i])
    path = segments[t.segment[index]]
    with open(path, "r+b") as f:
        f.seek(t.offset[index] + t.size[index] // 2)
        data = f.read(8)
        f.seek(t.offset[index] + t.size[index] // 2)
        f.write(bytes(b ^ 0xA5 for b in data))
    return copy_to / first.name


def ewfverify_bad_sectors(first: Path) -> list[tuple[int, int]]:
    tool = need_tool("ewfverify")
    run = subprocess.run([tool, "-q", str(first)], capture_output=True, text=True)
    assert run.returncode != 0
    return [
        (int(a), int(b))
        for a, b in re.findall(r"at sector\(s\): (\d+) - (\d+)", run.stdout + run.stderr)
    ]


@pytest.mark.parametrize(
    ("name", "compressed"), [("fast-32k-segments", True), ("none-64k-segments", False)]
)
def test_damaged_chunk_is_reported_with_its_sectors(
    name, compressed, e01s, media, tmp_path, monkeypatch
):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    damaged = _damage(e01s[name], tmp_path / "damaged", compressed=compressed)
    ((first_bad, last_bad),) = ewfverify_bad_sectors(damaged)
    with open_source(damaged) as src:
        assert src.info.details["ewf.backend"] == "own"
        with pytest.raises(EwfChunkError) as caught:
            src.stream.read_at(first_bad * 512 + 100, 10)
        assert (caught.value.first_sector, caught.value.sector_count) == (
            first_bad,
            last_bad - first_bad + 1,
        )
        assert f"sectors {first_bad}-{last_bad}" in str(caught.value)
        result = hash_source(src.stream, ["md5"])
    assert result.unreadable == ((first_bad * 512, (last_bad - first_bad + 1) * 512),)
    # Everything else hashes as the source with that range zero-filled (never pyewf's zeros
    # passed off as data: the range is reported).
    raw = bytearray(media.read_bytes())
    raw[first_bad * 512 : (last_bad + 1) * 512] = bytes((last_bad - first_bad + 1) * 512)
    assert result.digests is not None
    assert result.digests.get("md5") == hashlib.md5(raw).hexdigest()


def test_backends_can_be_forced_and_agree(e01s, media, monkeypatch):
    expected = coreutils_hash("sha256sum", media)
    for backend in ("pyewf", "own"):
        monkeypatch.setenv(BACKEND_ENV, backend)
        with open_source(e01s["fast-32k-segments"]) as src:
            assert src.info.details["ewf.backend"] == backend
            assert stream_sha256(src.stream) == expected


def test_damaged_table_falls_back_to_pyewf(e01s, media, tmp_path, monkeypatch):
    """A table whose entries fail their checksum: libewf uses table2, the own reader steps aside."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    copy = tmp_path / "table"
    copy.mkdir()
    for seg in e01s["best-1m"].parent.iterdir():
        shutil.copy(seg, copy / seg.name)
    first = copy / e01s["best-1m"].name
    data = bytearray(first.read_bytes())
    table = data.index(b"table\0")  # the first table section's descriptor
    data[table + 76 + 24 + 9] ^= 0x10  # an entry: the footer checksum fails, table2 is intact
    first.write_bytes(bytes(data))
    with open_source(first) as src:
        assert src.info.details["ewf.backend"] == "pyewf"
        assert "checksum" in src.info.details["ewf.backend_note"]
        assert stream_sha256(src.stream) == coreutils_hash("sha256sum", media)

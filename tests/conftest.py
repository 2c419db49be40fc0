"""Shared test fixtures: decompressed fixture images and the ../shared reference data."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED = ROOT.parent / "shared" / "data"
VENV_BIN = ROOT / ".venv" / "bin"


def _gunzip(src: Path, dst: Path) -> Path:
    if not dst.exists():
        tmp = dst.with_suffix(dst.suffix + ".part")
        with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 4 << 20)
        tmp.rename(dst)
    return dst


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory: pytest.TempPathFactory):
    """``unpacked("gpt-ntfs.raw")`` -> path of the decompressed fixtures/<name>.gz.

    Random seeks through GzipFile are slow, so every image is decompressed once per
    session. Files that are not gzipped (e.g. E01 segments) are returned in place.
    """
    cache = tmp_path_factory.mktemp("fixtures")

    def get(name: str) -> Path:
        gz = FIXTURES / (name + ".gz")
        if gz.exists():
            return _gunzip(gz, cache / name)
        plain = FIXTURES / name
        if plain.exists():
            return plain
        pytest.fail(f"fixture {name} missing: run fixtures/build_all.sh")
        raise AssertionError  # unreachable

    return get


@pytest.fixture(scope="session")
def truth():
    """``truth("gpt-ntfs")`` -> the builder's ground-truth JSON for a fixture."""

    def get(name: str) -> dict:
        return json.loads((FIXTURES / f"{name}.truth.json").read_text(encoding="utf-8"))

    return get


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """``shared("bitlocker/aes_128.bin")`` -> decompressed ../shared/data file, or skip."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent: Windows-made reference images not available")
    cache = tmp_path_factory.mktemp("shared")

    def get(rel: str) -> Path:
        gz = SHARED / (rel + ".gz")
        if gz.exists():
            dst = cache / rel.replace("/", "__")
            return _gunzip(gz, dst)
        plain = SHARED / rel
        if plain.exists():
            return plain
        pytest.skip(f"../shared/data/{rel} is absent")
        raise AssertionError  # unreachable

    return get


def need_tool(name: str) -> str:
    """Path of a CLI oracle (The Sleuth Kit...), or skip when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install sleuthkit)")
    return path


class PhaseRecorder:
    """A ProgressSink that records every phase and the bytes advanced."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, int | None, int | None]] = []
        self.advanced = 0

    def phase(self, name: str, total_bytes: int | None, total_items: int | None) -> None:
        self.phases.append((name, total_bytes, total_items))

    def item(self, label: str) -> None:
        pass

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        self.advanced += nbytes

    def done(self) -> None:
        pass


# 6 MiB of the gpt-ntfs disk, then pseudo-random bytes (which do not compress: they make
# several segments and stored chunks beside compressed ones), 12 MiB + 3 sectors in all
# so the last chunk of every chunk size is short.
EWF_MEDIA = 12 * 2**20 + 3 * 512
EWF_DISK_PART = 6 * 2**20


@pytest.fixture(scope="session")
def media(unpacked, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw bytes of the E01 reader/writer tests, as a file (see EWF_MEDIA)."""
    raw = unpacked("gpt-ntfs.raw")
    out = tmp_path_factory.mktemp("ewf-media") / "media.raw"
    with open(raw, "rb") as fin, open(out, "wb") as fout:
        fout.write(fin.read(EWF_DISK_PART))
        fout.write(random.Random(13).randbytes(EWF_MEDIA - EWF_DISK_PART))
    return out

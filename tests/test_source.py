"""Sources: raw, split raw, bad input. Oracle: hashlib over the original file."""

from __future__ import annotations

import hashlib
import os

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.errors import SourceError
from selective_imager.sources import open_source


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_stream(stream) -> str:
    h = hashlib.sha256()
    offset = 0
    while chunk := stream.read_at(offset, 3 << 20):  # odd size: crosses segment borders
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def small_image(tmp_path_factory):
    """A 5 MiB file of varied bytes standing in for a raw image."""
    path = tmp_path_factory.mktemp("raw") / "disk.raw"
    data = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)
    path.write_bytes(data)
    return path


def test_raw_reports_size_and_reads_exactly(small_image):
    with open_source(small_image) as src:
        assert src.info.format == "raw"
        assert src.info.size == small_image.stat().st_size
        assert src.info.sector_size == 512
        assert sha256_stream(src.stream) == sha256_file(small_image)
        assert src.stream.read_at(src.info.size - 10, 100) == small_image.read_bytes()[-10:]
        assert src.stream.read_at(src.info.size, 10) == b""


@pytest.mark.parametrize("style", ["numeric", "alpha"])
def test_split_raw(small_image, tmp_path, style):
    data = small_image.read_bytes()
    part = 1024 * 1024 + 512
    names = [f"disk.{i:03d}" for i in range(1, 6)] if style == "numeric" else [
        f"disk.a{c}" for c in "abcde"
    ]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(data[i * part : (i + 1) * part])
    with open_source(tmp_path / names[0]) as src:
        assert src.info.format == "split-raw"
        assert len(src.info.segments) == 5
        assert src.info.size == len(data)
        assert sha256_stream(src.stream) == hashlib.sha256(data).hexdigest()


def test_source_is_never_opened_for_writing(small_image):
    os.chmod(small_image, 0o444)
    before = sha256_file(small_image)
    with open_source(small_image) as src:
        src.stream.read_at(0, 4096)
    assert sha256_file(small_image) == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.raw", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: (p / "empty.raw").write_bytes(b"") or p / "empty.raw", "empty file"),
    ],
)
def test_bad_sources_raise(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        open_source(make(tmp_path))


def test_random_bytes_one_line_error_exit_2(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(1 << 20))
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert "not a disk image" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("target", ["missing", "dir", "empty"])
def test_cli_bad_input_exit_2_one_line(tmp_path, target):
    path = {"missing": tmp_path / "nope.E01", "dir": tmp_path, "empty": tmp_path / "e.raw"}[target]
    if target == "empty":
        path.write_bytes(b"")
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_compressed_image_gets_a_clear_message(tmp_path):
    import gzip as gz

    path = tmp_path / "disk.raw.gz"
    path.write_bytes(gz.compress(b"\0" * 4096))
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    assert "gzip-compressed" in result.output


def test_missing_binding_is_one_line_not_a_traceback(tmp_path):
    """A format whose library is not installed: one line naming it, exit 3 (no traceback).

    The binding is made unimportable in a child interpreter (``sys.modules[name] = None``
    makes ``import`` raise ImportError); the VMDK is written by qemu-img.
    """
    import subprocess
    import sys

    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(1 << 20))
    vmdk = tmp_path / "disk.vmdk"
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", raw, vmdk], check=True)
    code = (
        "import sys; sys.modules['pyvmdk'] = None; "
        "from selective_imager.cli.app import main; "
        f"sys.argv = ['selective-imager', 'info', {str(vmdk)!r}]; main()"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 3, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "pyvmdk" in lines[0] and "not installed" in lines[0]
    assert "Traceback" not in run.stderr

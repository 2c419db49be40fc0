"""A read error inside The Sleuth Kit's image callback is a typed error, never a traceback.

pytsk3 turns any exception raised by the Python ``read`` it calls into a bare
RuntimeError; the file-system layer must say what failed instead. The source is the
mbr-extended fixture with reads of its ext4 partition (TSK-only) failing after the
superblock, the way a source ending early or a damaged E01 chunk does.
"""

from __future__ import annotations

import pytest

from selective_imager.discovery import discover
from selective_imager.errors import FilesystemError, SourceError
from selective_imager.sources import open_source
from selective_imager.streams import ByteStream
from tests import oracles


class FailAfter(ByteStream):
    """Reads of ``[lo, hi)`` raise SourceError (as an unreadable source does)."""

    def __init__(self, inner: ByteStream, lo: int, hi: int) -> None:
        super().__init__(inner.size)
        self.inner, self.lo, self.hi = inner, lo, hi

    def _read_at(self, offset: int, size: int) -> bytes:
        if offset < self.hi and offset + size > self.lo:
            raise SourceError(f"cannot read {size} bytes at {offset}: medium error")
        return self.inner.read_at(offset, size)


@pytest.mark.parametrize("skip", [2048, 64 << 10, 1 << 20])
def test_tsk_callback_errors_are_filesystem_errors(unpacked, skip):
    image = unpacked("mbr-extended.raw")
    start, length, _ = next(p for p in oracles.mmls(image) if "Linux" in p[2])
    lo, hi = start * 512 + skip, (start + length) * 512
    src = open_source(image)
    src.stream = FailAfter(src.stream, lo, hi)
    disk = discover(src)
    try:
        vol = next(v for v in disk.volumes if v.report.volume.offset == start * 512)
        if vol.filesystem is None:
            assert "read error" in vol.report.error and "medium error" in vol.report.error
            return
        with pytest.raises(FilesystemError, match="medium error"):
            for _ in vol.filesystem.walk():
                pass
        # Other volumes are read as before.
        fat = next(v for v in disk.volumes if v.report.volume.offset == 2048 * 512)
        assert fat.filesystem is not None and fat.filesystem.lookup("readme.txt")
    finally:
        disk.close()


def test_logical_volumes_past_the_end_are_named_and_the_run_is_partial(unpacked, tmp_path):
    """Cut inside volume 2: the extended partition (its EBR per mmls) lies past the end."""
    import json
    import re

    from typer.testing import CliRunner

    from selective_imager.cli.app import app
    from tests.conftest import need_tool

    image = unpacked("mbr-extended.raw")
    table = oracles.run(need_tool("mmls"), str(image))
    first = re.search(r"Meta\s+(\d+)\s+\d+\s+\d+\s+DOS Extended", table)
    assert first, table
    extended = (int(first.group(1)),)
    cut = tmp_path / "cut.raw"
    with open(image, "rb") as fh:
        cut.write_bytes(fh.read(extended[0] * 512 - 100_000))
    info = CliRunner().invoke(app, ["info", str(cut), "--json"])
    problems = json.loads(info.stdout)["partition_table"]["problems"]
    assert any(f"extended partition at byte {extended[0] * 512}" in p and "cannot be listed" in p
               for p in problems), problems
    out = tmp_path / "cut.zip"
    result = CliRunner().invoke(app, ["collect", str(cut), "-o", str(out), "-q", "--disk-hash", "none"])
    assert result.exit_code == 1, result.output


def test_a_volume_without_a_table_cut_short_is_named_truncated(unpacked, truth, tmp_path):
    """No partition table: the NTFS boot sector's size says how much is missing."""
    import json

    from typer.testing import CliRunner

    from selective_imager.cli.app import app

    size = truth("ntfs-noparts")["size"]
    cut = tmp_path / "cut.raw"
    with open(unpacked("ntfs-noparts.raw"), "rb") as fh:
        cut.write_bytes(fh.read(9_000_000))
    info = CliRunner().invoke(app, ["info", str(cut), "--json"])
    (vol,) = json.loads(info.stdout)["volumes"]
    assert vol["note"].startswith("image truncated")
    assert f"{size - 9_000_000} bytes past the end" in vol["note"]
    out = tmp_path / "cut.zip"
    result = CliRunner().invoke(app, ["collect", str(cut), "-o", str(out), "-q", "--disk-hash", "none"])
    assert result.exit_code == 1, result.output

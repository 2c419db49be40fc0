"""``ls`` as a person reads it: headers, links, escaped names, drive letters.

The image is built here with ``mkfs.ext4 -d`` (e2fsprogs); the oracle is what the test
put in it and The Sleuth Kit's ``fls`` type column for the symlink.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import need_tool
from tests.oracles import run


@pytest.fixture(scope="module")
def ext4(tmp_path_factory):
    root = tmp_path_factory.mktemp("ext4")
    tree = root / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("lab\n")
    os.symlink("/etc/hostname", tree / "etc" / "name-link")
    (tree / "evil\x1b[31mname").write_text("x")
    image = root / "ext4.img"
    with open(image, "wb") as fh:
        fh.truncate(8 << 20)
    subprocess.run(
        [need_tool("mkfs.ext4"), "-q", "-F", "-d", str(tree), str(image)],
        check=True, capture_output=True,
    )
    return image


def test_header_link_and_escaped_name(ext4):
    result = CliRunner().invoke(app, ["ls", str(ext4), "-r"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["t", "entry-seq", "size", "modified", "(UTC)", "path"]
    link = next(line for line in lines if "name-link" in line)
    assert link.startswith("l ") and link.endswith("etc/name-link -> /etc/hostname")
    # fls agrees that it is a link.
    fls = run(need_tool("fls"), "-r", "-p", str(ext4))
    assert any(line.startswith("l/l") and "etc/name-link" in line for line in fls.splitlines())
    assert "\x1b" not in result.stdout
    assert "evil\\x1b[31mname" in result.stdout


def test_drive_letter_is_dropped_with_a_note(ext4):
    result = CliRunner().invoke(app, ["ls", str(ext4), "C:\\etc"])
    assert result.exit_code == 0, result.output
    assert "etc/hostname" in result.stdout
    assert "drive letter C: dropped" in result.output


def test_quiet_collect_prints_nothing(ext4, tmp_path):
    out = tmp_path / "q.zip"
    proc = subprocess.run(
        [
            sys.executable, "-m", "selective_imager",
            "collect", str(ext4), "-o", str(out), "--quiet", "--disk-hash", "none",
            "--rule-path", str(tmp_path), "-R", str(_hostname_rule(tmp_path)),
        ],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    run(need_tool("unzip"), "-tq", str(out))


def _hostname_rule(folder):
    rule = folder / "hostname.yaml"
    rule.write_text("name: hostname\ntitle: t\ntargets:\n  - name: h\n    paths: ['etc/hostname']\n")
    return rule


def test_c_drive_names_the_windows_volume_on_a_multi_volume_disk(unpacked):
    """``ls disk C:/Windows`` without --volume on the GPT fixture (FAT ESP + NTFS): C: is the
    volume holding Windows/System32, as fls of that partition lists it."""
    image = unpacked("gpt-ntfs.raw")
    result = CliRunner().invoke(app, ["ls", str(image), "C:/Windows"])
    assert result.exit_code == 0, result.output
    assert "drive letter C: dropped: listing volume p3 (the one holding Windows/System32)" in result.output
    listed = {line.split()[-1] for line in result.stdout.splitlines()[1:]}
    fls = run(need_tool("fls"), "-p", "-o", "20480", str(image), str(_fls_inode(image, "Windows")))
    names = {"Windows/" + line.split(":\t", 1)[1] for line in fls.splitlines() if ":\t" in line}
    assert listed == names
    # Another drive letter still needs --volume.
    other = CliRunner().invoke(app, ["ls", str(image), "D:/EFI"])
    assert other.exit_code != 0 and "--volume" in other.output


def _fls_inode(image, name: str) -> str:
    """The metadata address of a root-directory entry of the NTFS partition (fls)."""
    for line in run(need_tool("fls"), "-o", "20480", str(image)).splitlines():
        head, _, entry = line.partition(":\t")
        if entry == name:
            return head.split()[-1]
    raise AssertionError(f"{name} not in the root directory")

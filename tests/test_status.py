"""The status word and exit code are honest: summary, acquisition.json, show and verify agree.

Oracles: the builder's truth (which volume is BitLocker, how many volumes a disk has),
``ewfinfo`` for the E01's stored MD5, Python's zipfile for reading the container.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import zipfile

from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.collect.stored_hash import compare_stored_hashes
from selective_imager.models import Digests
from tests.conftest import FIXTURES, need_tool


def acquisition(container) -> dict:
    with zipfile.ZipFile(container) as zf:
        return json.loads(zf.read("acquisition.json"))


def collect(*args: str):
    return CliRunner().invoke(app, ["collect", *args, "--quiet", "--json"])


def test_only_volume_locked_is_not_complete(unpacked, truth, tmp_path):
    image = unpacked("gpt-bitlocker.raw")
    locked = next(p["index"] for p in truth("gpt-bitlocker")["partitions"] if p["index"] == 2)
    out = tmp_path / "locked.zip"
    result = collect(str(image), "-o", str(out), "--volume", str(locked), "--disk-hash", "md5")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "partial"
    assert sum(summary["counts"].values()) == 0
    assert any("locked" in r for r in summary["status_reasons"])
    assert any("nothing matched" in n for n in summary["notes"])
    acq = acquisition(out)
    assert acq["status"] == "partial" and acq["status_reasons"] == summary["status_reasons"]
    verified = CliRunner().invoke(app, ["verify", str(out), "--json"])
    assert verified.exit_code == 1
    answer = json.loads(verified.stdout)
    assert answer["intact"] is True and answer["complete"] is False and not answer["ok"]
    assert answer["status"] == "partial"
    show = CliRunner().invoke(app, ["show", str(out)])
    assert show.exit_code == 0 and "status partial" in show.output


def test_missing_volume_is_a_usage_error(unpacked, truth, tmp_path):
    image = unpacked("ntfs-noparts.raw")
    assert not truth("ntfs-noparts")["partitions"]  # one volume, no partition table
    out = tmp_path / "v2.zip"
    result = CliRunner().invoke(app, ["collect", str(image), "-o", str(out), "--volume", "2", "-q"])
    assert result.exit_code == 2
    assert "no volume 2" in result.output and "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.iterdir())
    dry = CliRunner().invoke(app, ["collect", str(image), "--dry-run", "--volume", "2"])
    assert dry.exit_code == 2


def test_nothing_matched_says_so(unpacked, tmp_path):
    out = tmp_path / "none.zip"
    result = collect(
        str(unpacked("gpt-ntfs.raw")), "-o", str(out), "--rule", "linux-ssh", "--volume", "3",
        "--disk-hash", "md5",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete" and sum(summary["counts"].values()) == 0
    assert summary["notes"] == ["nothing matched the rules: no item was collected"]
    assert acquisition(out)["notes"] == summary["notes"]
    text = CliRunner().invoke(
        app, ["collect", str(unpacked("gpt-ntfs.raw")), "-o", str(tmp_path / "n2.zip"),
              "--rule", "linux-ssh", "--volume", "3", "--disk-hash", "none"],
    )
    assert "nothing matched" in text.output


def test_e01_stored_hash_compared_during_collect(tmp_path):
    ewfinfo = need_tool("ewfinfo")
    e01 = FIXTURES / "gpt-ntfs.E01"
    info = subprocess.run([ewfinfo, str(e01)], capture_output=True, text=True, check=True).stdout
    stored_md5 = re.search(r"MD5:\s*([0-9a-f]{32})", info).group(1)
    out = tmp_path / "e.zip"
    result = collect(str(e01), "-o", str(out), "--rule", "ntfs-mft", "--disk-hash", "md5,sha1")
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["stored_hash_check"]
    assert check["verdict"] == "match"
    assert check["stored"]["md5"] == stored_md5 and "md5" in check["matched"]
    assert acquisition(out)["stored_hash_check"] == check
    hashed = CliRunner().invoke(app, ["hash", str(e01), "--disk-hash", "md5", "--json"])
    assert hashed.exit_code == 0
    assert json.loads(hashed.stdout)["stored_hash_check"]["verdict"] == "match"


def test_stored_hash_mismatch_is_named():
    data = b"media"
    good = hashlib.md5(data).hexdigest()
    details = {"stored_hash.md5": good.upper(), "stored_hash.sha1": "00" * 20, "other": "x"}
    computed = Digests((("md5", good), ("sha1", hashlib.sha1(data).hexdigest())))
    check = compare_stored_hashes(details, computed)
    assert check.matched == ("md5",) and check.mismatched == ("sha1",)
    assert check.verdict == "MISMATCH"
    assert compare_stored_hashes(details, None).verdict == "unchecked"
    assert compare_stored_hashes({}, computed).verdict == "none"

"""A collection killed with SIGKILL at random moments, then ``recover`` and ``--resume``.

Oracles: The Sleuth Kit (fls/icat) for every kept member and every resumed item, an
uninterrupted run of the same command for the final item set, Python's zipfile and
Info-ZIP ``unzip -t`` for the rebuilt ZIP. The kill points are seeded: half when the
container reaches a random size, half when the manifest journal reaches a random
number of lines (so the disk-hash and finishing phases are hit too).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests import oracles
from tests.conftest import VENV_BIN, need_tool

SEED = 10
POINTS = 8
RULE = "triage"


def _cli() -> str:
    exe = VENV_BIN / "selective-imager"
    if not exe.exists():
        pytest.skip("the console script is not installed in .venv (run scripts/setup.sh)")
    return str(exe)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def items(container: Path) -> list[dict]:
    with zipfile.ZipFile(container) as zf:
        return [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines() if x]


def item_set(container: Path) -> set[tuple[int, str, str, str]]:
    return {
        (i["volume"], i["path"], i["stream"], (i["hashes"] or {}).get("sha256"))
        for i in items(container)
    }


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def assert_exports(container: Path) -> None:
    """CopyLog/SkipLog rows equal the manifest (read with csv); bodyfile and report exist;
    every kept sparse member has its range map beside it."""
    import csv
    import io

    with zipfile.ZipFile(container) as zf:
        records = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines() if x]
        names = set(zf.namelist())
        assert {"bodyfile.txt", "report.html"} <= names, sorted(names)
        copylog = list(csv.DictReader(io.StringIO(zf.read("CopyLog.csv").decode())))
        skiplog = list(csv.DictReader(io.StringIO(zf.read("SkipLog.csv").decode())))
        report = zf.read("report.html").decode()
    stored = [r for r in records if r["outcome"] in ("collected", "partial")]
    assert sorted(row["DestinationFile"] for row in copylog) == sorted(
        r["container_path"] for r in stored
    )
    assert len(skiplog) == len(records) - len(stored)
    for r in stored:
        if r.get("sparse"):
            assert r["container_path"].endswith(".sparse")
            assert r["sparse"]["map"] in names, r["sparse"]["map"]
    assert "<html" in report.lower() and "http://" not in report and "https://" not in report


def killed_run(image: Path, out: Path, trigger: tuple[str, int]) -> int:
    """Start ``collect`` and SIGKILL it when ``trigger`` is reached; its return code."""
    manifest_journal = out.with_name(out.name + ".manifest.jsonl.part")
    proc = subprocess.Popen(
        [_cli(), "collect", str(image), "-o", str(out), "--rule", RULE, "--quiet", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kind, value = trigger
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            reached = (
                out.stat().st_size >= value if kind == "size" else journal_lines(manifest_journal) >= value
            )
        except FileNotFoundError:
            reached = False
        if reached:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    return proc.wait(timeout=60)


@pytest.fixture(scope="module")
def reference(unpacked, tmp_path_factory):
    """An uninterrupted run, and the icat SHA-256 of every item it holds."""
    need_tool("icat")
    image = unpacked("gpt-ntfs.raw")
    out = tmp_path_factory.mktemp("reference") / "full.zip"
    result = CliRunner().invoke(app, ["collect", str(image), "-o", str(out), "--rule", RULE, "-q"])
    assert result.exit_code == 0, result.output
    return image, out


@pytest.fixture(scope="module")
def icat(truth):
    """``icat(image, volume, path, stream)`` -> SHA-256, cached (TSK is the oracle)."""
    parts = {p["index"]: p["start_sector"] for p in truth("gpt-ntfs")["partitions"]}
    addresses: dict[int, dict[str, str]] = {}
    cache: dict[tuple[int, str, str], str] = {}

    def get(image: Path, volume: int, path: str, stream: str) -> str:
        key = (volume, path, stream)
        if key not in cache:
            if volume not in addresses:
                addresses[volume] = oracles.fls_streams(image, parts[volume])
            name = path + (f":{stream}" if stream else "")
            cache[key] = oracles.icat_sha256(image, parts[volume], addresses[volume][name])
        return cache[key]

    return get


def logical_sha256(zf: zipfile.ZipFile, record: dict) -> str:
    """SHA-256 of an item's logical content rebuilt from its member (sparse: with holes)."""
    data = zf.read(record["container_path"])
    sparse = record.get("sparse")
    if not sparse:
        return hashlib.sha256(data).hexdigest()
    logical = bytearray(sparse["logical_size"])
    pos = 0
    for offset, length in sparse["ranges"]:
        logical[offset : offset + length] = data[pos : pos + length]
        pos += length
    return hashlib.sha256(logical).hexdigest()


def member_bytes(container: Path) -> dict[str, tuple[int, bytes]]:
    """Raw bytes (local header + data) of every content member, by name."""
    raw = container.read_bytes()
    found = {}
    with zipfile.ZipFile(container) as zf:
        for info in zf.infolist():
            if not info.filename.startswith("files/"):
                continue
            start = info.header_offset
            name_len, extra_len = int.from_bytes(raw[start + 26 : start + 28], "little"), int.from_bytes(
                raw[start + 28 : start + 30], "little"
            )
            end = start + 30 + name_len + extra_len + info.compress_size
            found[info.filename] = (start, raw[start:end])
    return found


def test_sigkill_then_recover_then_resume(reference, icat, tmp_path):
    image, full = reference
    rng = random.Random(SEED)
    final_size = full.stat().st_size
    total_items = len(items(full))
    triggers = []
    for n in range(POINTS):
        if n % 2 == 0:
            triggers.append(("size", rng.randrange(0, final_size)))
        else:
            triggers.append(("lines", rng.randrange(1, total_items + 1)))
    runner = CliRunner()
    expected = item_set(full)
    summary = []
    for n, trigger in enumerate(triggers):
        out = tmp_path / f"k{n}.zip"
        code = killed_run(image, out, trigger)
        journals = [out.with_name(out.name + s) for s in (".manifest.jsonl.part", ".log.jsonl.part")]
        if code != -signal.SIGKILL:
            # The run finished before the trigger fired: a finished container, no journals.
            assert code == 0 and not any(j.exists() for j in journals)
            summary.append((trigger, "finished"))
            continue
        assert out.exists()
        if not any(j.exists() for j in journals):
            # Killed after the container was finished and its journals removed.
            assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
            summary.append((trigger, "finished"))
            continue

        # --force never removes a partial container or its journals.
        before = {p: sha256_file(p) for p in [out, *journals] if p.exists()}
        forced = runner.invoke(app, ["collect", str(image), "-o", str(out), "--force", "-q"])
        assert forced.exit_code == 2, forced.output
        assert "recover" in forced.output and "--resume" in forced.output
        assert {p: sha256_file(p) for p in before} == before

        rec = runner.invoke(app, ["recover", str(out), "--json"])
        assert rec.exit_code == 0, rec.output
        report = json.loads(rec.stdout)
        assert report["recovered"] is True
        assert not any(j.exists() for j in journals)
        with zipfile.ZipFile(out) as zf:
            assert zf.testzip() is None
            acq = json.loads(zf.read("acquisition.json"))
            assert acq["status"] == "incomplete"
            kept = [r for r in items(out) if r["outcome"] in ("collected", "duplicate", "partial")]
            for record in kept:
                want = icat(image, record["volume"], record["path"], record["stream"])
                assert record["hashes"]["sha256"] == want, record["path"]
                assert logical_sha256(zf, record) == want, record["path"]
        unzip = shutil.which("unzip")
        if unzip:
            subprocess.run([unzip, "-tqq", str(out)], check=True, capture_output=True)
        assert_exports(out)
        verified = runner.invoke(app, ["verify", str(out), "--json"])
        assert verified.exit_code == 1
        answer = json.loads(verified.stdout)
        assert answer["intact"] is True and answer["complete"] is False

        # Idempotent: a second recover changes nothing.
        recovered_sha = sha256_file(out)
        again = runner.invoke(app, ["recover", str(out)])
        assert again.exit_code == 0 and "nothing to recover" in again.output
        assert sha256_file(out) == recovered_sha
        kept_bytes = member_bytes(out)

        resumed = runner.invoke(
            app,
            # One disk-hash algorithm keeps the campaign short; the item set is the point.
            ["collect", str(image), "-o", str(out), "--rule", RULE, "--resume", "-q", "--json",
             "--disk-hash", "md5"],
        )
        assert resumed.exit_code == 0, resumed.output
        result = json.loads(resumed.stdout)
        assert result["status"] == "complete" and result["resumed"] is True
        assert item_set(out) == expected
        for volume, path, stream, sha in item_set(out):
            assert sha == icat(image, volume, path, stream), path
        # The members kept by recover are still there, byte for byte, at the same offset.
        after = member_bytes(out)
        for name, (offset, data) in kept_bytes.items():
            assert after[name] == (offset, data), name
        final = runner.invoke(app, ["verify", str(out), "--json"])
        assert final.exit_code == 0, final.output
        assert_exports(out)
        summary.append((trigger, f"kept {len(kept_bytes)} members"))
    # The campaign must have killed runs in several places, not only finished ones.
    assert sum(1 for _, what in summary if what != "finished") >= POINTS // 2, summary


def test_resume_an_interrupted_container(reference, tmp_path):
    """Ctrl-C (a sealed incomplete container): --resume finishes it like a full run."""
    from selective_imager.collect.collector import CollectOptions, collect
    from selective_imager.discovery import open_disk
    from selective_imager.selection.rules import resolve
    from tests.test_interrupt import InterruptAt

    image, full = reference
    out = tmp_path / "i.zip"
    with open_disk(image) as disk, pytest.raises(KeyboardInterrupt):
        collect(disk, resolve([RULE]), out, CollectOptions(), InterruptAt(items=20))
    runner = CliRunner()
    show = runner.invoke(app, ["show", str(out)])
    assert show.exit_code == 0 and "status incomplete" in show.output
    verified = runner.invoke(app, ["verify", str(out)])
    assert verified.exit_code == 1
    assert "intact: yes" in verified.output and "complete: NO" in verified.output
    assert "OK: intact and complete" not in verified.output
    assert_exports(out)
    resumed = runner.invoke(app, ["collect", str(image), "-o", str(out), "--rule", RULE, "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert item_set(out) == item_set(full)
    assert_exports(out)
    again = runner.invoke(app, ["collect", str(image), "-o", str(out), "--rule", RULE, "--resume", "-q"])
    assert again.exit_code == 0 and "nothing to resume" in again.output


def test_resume_refuses_another_source(reference, unpacked, tmp_path):
    image, _ = reference
    out = tmp_path / "r.zip"
    code = killed_run(image, out, ("lines", 5))
    assert code == -signal.SIGKILL
    other = tmp_path / "other.raw"
    shutil.copyfile(image, other)
    with open(other, "r+b") as fh:  # same size and layout, different last MiB
        fh.seek(os.path.getsize(other) - 4096)
        fh.write(b"\xff" * 16)
    result = CliRunner().invoke(app, ["collect", str(other), "-o", str(out), "--resume", "-q"])
    assert result.exit_code == 3
    assert "not the same source" in result.output


def test_force_replaces_only_a_finished_container(reference, tmp_path):
    image, _ = reference
    runner = CliRunner()
    out = tmp_path / "f.zip"
    out.write_bytes(b"PK\x03\x04 a partial container with no journals")
    before = sha256_file(out)
    result = runner.invoke(app, ["collect", str(image), "-o", str(out), "--force", "-q"])
    assert result.exit_code == 2 and "not a finished container" in result.output
    assert sha256_file(out) == before
    out.unlink()
    first = runner.invoke(app, ["collect", str(image), "-o", str(out), "--rule", "registry-and-mft", "-q"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["collect", str(image), "-o", str(out), "--rule", "registry-and-mft", "-q", "--force"])
    assert second.exit_code == 0, second.output


def test_recover_answers_in_one_line(tmp_path, reference):
    _, full = reference
    runner = CliRunner()
    done = runner.invoke(app, ["recover", str(full)])
    assert done.exit_code == 0 and "nothing to recover" in done.output
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    bad = runner.invoke(app, ["recover", str(junk)])
    assert bad.exit_code == 3 and len(bad.output.strip().splitlines()) == 1
    assert "Traceback" not in bad.output

"""End-to-end collection on the fixtures, checked against independent oracles.

Oracles: The Sleuth Kit (icat/istat) for content and times, coreutils md5sum/sha256sum
for the disk hash, the builder's truth, Info-ZIP ``unzip -t`` and Python's zipfile.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests import oracles
from tests.conftest import FIXTURES, PhaseRecorder, need_tool


def run_collect(image, out, *extra: str) -> dict:
    result = CliRunner().invoke(
        app, ["collect", str(image), "-o", str(out), "--json", "--quiet", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def manifest(container) -> list[dict]:
    with zipfile.ZipFile(container) as zf:
        return [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]


def registry_and_mft_files(truth) -> list[dict]:
    """The builder's files the registry-and-mft rule selects (besides $MFT)."""
    return [
        f
        for f in truth("gpt-ntfs")["volumes"]["3"]["files"]
        if any(k.startswith("registry") or k in ("amcache", "syscache") for k in f.get("kind", []))
    ]


@pytest.fixture(scope="module")
def gpt_container(unpacked, tmp_path_factory):
    image = unpacked("gpt-ntfs.raw")
    out = tmp_path_factory.mktemp("collect") / "gpt.zip"
    summary = run_collect(image, out, "--rule", "triage", "--case", "CASE-1", "--examiner", "E. X.")
    return image, out, summary


def test_every_item_equals_icat(gpt_container, truth):
    image, out, _ = gpt_container
    parts = {p["index"]: p["start_sector"] for p in truth("gpt-ntfs")["partitions"]}
    addresses = {v: oracles.fls_streams(image, s) for v, s in parts.items() if v in (1, 3)}
    items = manifest(out)
    assert items
    checked = 0
    for item in items:
        assert item["outcome"] in ("collected", "duplicate"), item
        key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
        addr = addresses[item["volume"]][key]
        assert item["hashes"]["sha256"] == oracles.icat_sha256(image, parts[item["volume"]], addr), key
        checked += 1
    assert checked == len(items)


def test_triage_collects_every_tagged_artifact(gpt_container, truth):
    _, out, _ = gpt_container
    paths = {i["path"] for i in manifest(out) if not i["stream"]}
    vol = truth("gpt-ntfs")["volumes"]["3"]
    opt_in = {"pagefile", "hiberfil", "other", "document"}
    wanted = {f["path"] for f in vol["files"] if set(f.get("kind", [])) - opt_in}
    # The recycle-bin rule takes the $I metadata files (deletion time, original path),
    # not the $R copies of the deleted content.
    wanted = {p for p in wanted if "$Recycle.Bin" not in p or p.rsplit("/", 1)[-1].startswith("$I")}
    assert wanted <= paths, sorted(wanted - paths)
    # Memory files are opt-in only.
    assert not any(f["path"] in paths for f in vol["files"] if {"pagefile", "hiberfil"} & set(f.get("kind", [])))


def test_usnjrnl_sparse_and_ads(gpt_container, truth):
    _, out, _ = gpt_container
    usn = truth("gpt-ntfs")["volumes"]["3"]["usnjrnl"]
    items = {(i["path"], i["stream"]): i for i in manifest(out)}
    j = items[("$Extend/$UsnJrnl", "$J")]
    assert j["size"] == usn["J_size"]
    assert j["hashes"]["sha256"] == usn["J_sha256"]
    assert j["container_path"] == "files/p3/$Extend/$UsnJrnl%3A$J.sparse"
    assert j["sparse"]["logical_size"] == usn["J_size"]
    stored = sum(n for _, n in j["sparse"]["ranges"])
    assert stored == usn["J_size"] - usn["J_sparse_bytes"]
    with zipfile.ZipFile(out) as zf:
        assert zf.getinfo(j["container_path"]).file_size == stored
    mx = items[("$Extend/$UsnJrnl", "$Max")]
    assert mx["hashes"]["sha256"] == usn["Max_sha256"]


def test_manifest_context_fields(gpt_container, truth):
    _, out, _ = gpt_container
    items = {i["path"]: i for i in manifest(out) if not i["stream"]}
    system = items["Windows/System32/config/SYSTEM"]
    t = next(f for f in truth("gpt-ntfs")["volumes"]["3"]["files"] if f["path"] == system["path"])
    assert system["entry"] == t["mft_entry"]
    assert system["container_path"] == "files/p3/Windows/System32/config/SYSTEM"
    assert system["timestamps"]["si"]["created"] == t["times"]["created"]
    assert system["timestamps"]["si"]["modified"] == t["times"]["modified"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", system["timestamps"]["fn"]["created"])
    assert system["timestamps"]["i30"] is not None
    assert set(system["hashes"]) == {"md5", "sha1", "sha256"}
    assert system["hashes"]["md5"] == t["md5"] and system["hashes"]["sha1"] == t["sha1"]
    assert system["rules"] == ["windows-registry"]
    assert system["volume"] == 3
    if not system["resident"]:
        assert system["data_runs"] and all("disk_offset" in r for r in system["data_runs"])


def test_times_equal_istat(gpt_container, truth):
    image, out, _ = gpt_container
    start = truth("gpt-ntfs")["partitions"][2]["start_sector"]
    items = [i for i in manifest(out) if not i["stream"] and i["path"].startswith("Windows/System32/config/S")]
    assert items
    for item in items[:4]:
        text = oracles.run(need_tool("istat"), "-o", str(start), str(image), str(item["entry"]))
        si = text.split("$STANDARD_INFORMATION Attribute Values:")[1].split("$FILE_NAME")[0]
        fn = text.split("$FILE_NAME Attribute Values:")[1].split("Attributes:")[0]
        for block, key in ((si, "si"), (fn, "fn")):
            for label, field in (("Created", "created"), ("File Modified", "modified"),
                                 ("MFT Modified", "mft_modified"), ("Accessed", "accessed")):
                m = re.search(rf"{label}:\s+(\S+) (\S+)\.(\d+) \(UTC\)", block)
                assert m, (label, block)
                istat = f"{m.group(1)}T{m.group(2)}.{m.group(3)[:7]}Z"
                assert item["timestamps"][key][field] == istat, (item["path"], key, field)


def test_disk_hash_equals_coreutils(gpt_container, unpacked):
    image, out, summary = gpt_container
    digests = summary["disk_hash"]["digests"]
    assert digests["md5"] == oracles.file_digest(image, "md5sum")
    assert digests["sha256"] == oracles.file_digest(image, "sha256sum")
    with zipfile.ZipFile(out) as zf:
        acq = json.loads(zf.read("acquisition.json"))
    assert acq["disk_hash"]["digests"]["sha1"] == oracles.file_digest(image, "sha1sum")
    assert acq["case"]["case_number"] == "CASE-1"
    assert acq["status"] == "complete"


def test_container_is_a_valid_zip(gpt_container):
    _, out, summary = gpt_container
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
    assert names[-1] == "SEAL.json"
    assert {"manifest.jsonl", "log.jsonl", "acquisition.json"} <= set(names)
    unzip = shutil.which("unzip")
    if unzip:
        assert subprocess.run([unzip, "-tq", str(out)], capture_output=True).returncode == 0
    assert summary["container_sha256"] == oracles.file_digest(out, "sha256sum")


def test_duplicates_point_at_a_stored_member(gpt_container):
    _, out, _ = gpt_container
    items = manifest(out)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    by_member = {i["container_path"]: i for i in items if i["outcome"] == "collected"}
    dups = [i for i in items if i["outcome"] == "duplicate"]
    assert dups
    for dup in dups:
        assert dup["container_path"] in names
        assert by_member[dup["container_path"]]["hashes"]["sha256"] == dup["hashes"]["sha256"]


def test_output_never_overwritten(gpt_container, unpacked):
    image, out, _ = gpt_container
    before = out.read_bytes()
    result = CliRunner().invoke(app, ["collect", str(image), "-o", str(out), "--quiet"])
    assert result.exit_code == 2
    assert "exists" in result.output
    assert out.read_bytes() == before


def test_output_on_source_refused(unpacked, tmp_path):
    image = tmp_path / "disk.raw"
    shutil.copy(unpacked("gpt-ntfs.raw"), image)
    result = CliRunner().invoke(app, ["collect", str(image), "-o", str(image), "--force", "--quiet"])
    assert result.exit_code != 0
    assert "source" in result.output


def test_bitlocker_collect_equals_plain_volume(unpacked, tmp_path):
    image = unpacked("gpt-bitlocker.raw")
    plain = unpacked("gpt-bitlocker.plain-volume.raw")
    addresses = oracles.fls_streams(plain, 0)
    for flag, cred in (
        ("--password-file", FIXTURES / "gpt-bitlocker.password.txt"),
        ("--recovery-password-file", FIXTURES / "gpt-bitlocker.recovery.txt"),
    ):
        out = tmp_path / f"bl{flag}.zip"
        summary = run_collect(image, out, flag, str(cred), "--rule", "triage")
        assert summary["disk_hash"]["digests"]["md5"] == oracles.file_digest(image, "md5sum")
        items = manifest(out)
        assert any(i["path"] == "Windows/System32/config/SYSTEM" for i in items)
        for item in items:
            key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
            assert item["hashes"]["sha256"] == oracles.icat_sha256(plain, 0, addresses[key]), key
        with zipfile.ZipFile(out) as zf:
            acq = json.loads(zf.read("acquisition.json"))
        enc = acq["volumes"][1]["encryption"]
        assert enc["state"] == "unlocked"
        assert enc["unlocked_with"] == flag.removeprefix("--").removesuffix("-file").replace("-", "_")


def test_locked_bitlocker_collects_rest_exit_1(unpacked, tmp_path):
    out = tmp_path / "locked.zip"
    result = CliRunner().invoke(
        app, ["collect", str(unpacked("gpt-bitlocker.raw")), "-o", str(out), "--quiet", "--json"]
    )
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert any("locked" in e for e in summary["volume_errors"])
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None


def test_lastaccess_si_and_i30_in_manifest(shared, tmp_path):
    """Documented: $SI last access 12:37:55, the $I30 index entry's 12:35:17."""
    image = shared("ntfs-samples/ntfs-lastaccess.raw")
    rule = tmp_path / "one.yaml"
    rule.write_text("name: one-file\ntitle: t\ntargets:\n  - name: t\n    paths: [test/1.txt]\n")
    out = tmp_path / "la.zip"
    run_collect(image, out, "--rule", str(rule), "--disk-hash", "none")
    (item,) = manifest(out)
    assert item["timestamps"]["si"]["accessed"].startswith("2019-03-03T12:37:55.")
    assert item["timestamps"]["i30"]["accessed"].startswith("2019-03-03T12:35:17.")


def _rewrite_zip(src, dst, *, flip: str | None = None, drop: str | None = None) -> None:
    """Copy a container, flipping one byte of a member's content or leaving one out."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info.filename)
            if info.filename == flip:
                data = bytes([data[0] ^ 1]) + data[1:]
            zout.writestr(info, data)


def test_verify_passes_then_names_the_tampered_member(gpt_container, tmp_path):
    _, out, _ = gpt_container
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(out), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    member = "files/p3/Windows/System32/config/SYSTEM"
    flipped = tmp_path / "flipped.zip"
    _rewrite_zip(out, flipped, flip=member)
    bad = runner.invoke(app, ["verify", str(flipped), "--json"])
    assert bad.exit_code == 1
    diffs = json.loads(bad.stdout)["differences"]
    assert any(d["what"] == member and d["kind"] == "modified" for d in diffs), diffs
    dropped = tmp_path / "dropped.zip"
    _rewrite_zip(out, dropped, drop=member)
    bad = runner.invoke(app, ["verify", str(dropped), "--json"])
    assert bad.exit_code == 1
    assert any(d["what"] == member and d["kind"] == "missing" for d in json.loads(bad.stdout)["differences"])


def test_verify_in_place_byte_flip(gpt_container, tmp_path):
    """Flip one byte inside the ZIP file itself (a stored member's data)."""
    _, out, _ = gpt_container
    copy = tmp_path / "inplace.zip"
    shutil.copy(out, copy)
    with zipfile.ZipFile(copy) as zf:
        info = next(i for i in zf.infolist() if i.compress_type == zipfile.ZIP_STORED and i.file_size > 100
                    and i.filename.startswith("files/"))
    raw = bytearray(copy.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    data_at = info.header_offset + 30 + name_len + extra_len
    raw[data_at + 10] ^= 0xFF
    copy.write_bytes(bytes(raw))
    result = CliRunner().invoke(app, ["verify", str(copy), "--json"])
    assert result.exit_code == 1
    assert info.filename in result.stdout


def test_verify_against_source(gpt_container):
    image, out, _ = gpt_container
    result = CliRunner().invoke(app, ["verify", str(out), "--source", str(image), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["source_items_checked"] == len(manifest(out))


def test_extract_restores_ads_and_sparse_j(gpt_container, truth, tmp_path):
    import hashlib

    image, out, _ = gpt_container
    start = truth("gpt-ntfs")["partitions"][2]["start_sector"]
    addresses = oracles.fls_streams(image, start)
    dest = tmp_path / "x"
    result = CliRunner().invoke(app, ["extract", str(out), str(dest), "--json"])
    assert result.exit_code == 0, result.output
    j = next(dest.rglob("$UsnJrnl:$J"))
    assert hashlib.sha256(j.read_bytes()).hexdigest() == oracles.icat_sha256(
        image, start, addresses["$Extend/$UsnJrnl:$J"]
    )
    system = next(dest.rglob("SYSTEM"))
    t = next(f for f in truth("gpt-ntfs")["volumes"]["3"]["files"] if f["path"] == "Windows/System32/config/SYSTEM")
    assert hashlib.sha256(system.read_bytes()).hexdigest() == t["sha256"]
    # Modification time restored from $SI.
    import datetime as dt

    want = dt.datetime.fromisoformat(t["times"]["modified"][:26] + "+00:00").timestamp()
    assert abs(system.stat().st_mtime - want) < 1e-3


def test_extract_refuses_escape(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("files/p1/../../../../escape.txt", b"x")
        zf.writestr("manifest.jsonl", json.dumps({
            "path": "../../escape.txt", "stream": "", "volume": 1, "volume_label": "p1",
            "container_path": "files/p1/../../../../escape.txt", "size": 1,
            "hashes": {"sha256": "0" * 64}, "outcome": "collected", "rules": [],
        }) + "\n")
    result = CliRunner().invoke(app, ["extract", str(evil), str(tmp_path / "dest")])
    assert not (tmp_path / "escape.txt").exists()
    assert not list(tmp_path.glob("**/escape.txt")) or all(
        str(p).startswith(str(tmp_path / "dest")) for p in tmp_path.glob("**/escape.txt")
    )
    assert result.exit_code in (0, 1, 3)


def test_registry_and_mft_dry_run_is_exactly_the_truth(unpacked, truth):
    """The quick rule lists exactly the hives, logs, Amcache/Syscache and $MFT there are."""
    result = CliRunner().invoke(
        app, ["collect", str(unpacked("gpt-ntfs.raw")), "--dry-run", "--json", "--rule", "registry-and-mft"]
    )
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    got = {(i["volume"], i["path"], i["stream"]) for i in items}
    wanted = {(3, f["path"], "") for f in registry_and_mft_files(truth)}
    wanted.add((3, "$MFT", ""))
    assert got == wanted


@pytest.mark.parametrize("fixture", ["mbr-extended", "e01"])
def test_collect_mbr_and_e01_equal_icat_and_disk_hashes(unpacked, truth, tmp_path, fixture):
    """Every item equals icat of the same entry; the disk hashes equal coreutils / the E01."""
    rule = tmp_path / "every.yaml"
    rule.write_text("name: every-file\ntitle: t\ntargets:\n  - name: all\n    paths: ['**', '**:*']\n")
    if fixture == "e01":
        source = FIXTURES / "gpt-ntfs.E01"
        raw = unpacked("gpt-ntfs.raw")  # the same media, for icat and coreutils
        parts = {p["index"]: p["start_sector"] for p in truth("gpt-ntfs")["partitions"]}
    else:
        source = raw = unpacked("mbr-extended.raw")
        parts = {}
    out = tmp_path / f"{fixture}.zip"
    result = CliRunner().invoke(
        app, ["collect", str(source), "-o", str(out), "--rule", str(rule), "--quiet", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["disk_hash"]["digests"]["md5"] == oracles.file_digest(raw, "md5sum")
    assert summary["disk_hash"]["digests"]["sha256"] == oracles.file_digest(raw, "sha256sum")
    with zipfile.ZipFile(out) as zf:
        acq = json.loads(zf.read("acquisition.json"))
    if fixture == "e01":
        assert summary["disk_hash"]["digests"]["md5"] == acq["source"]["details"]["stored_hash.md5"]
    else:
        parts = {v["index"]: v["offset"] // 512 for v in acq["volumes"]}
    items = manifest(out)
    addresses = {v: oracles.fls_streams(raw, parts[v]) for v in {i["volume"] for i in items}}
    checked = 0
    for item in items:
        if item["outcome"] not in ("collected", "duplicate") or "virtual" in item["attributes"]:
            continue
        key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
        addr = addresses[item["volume"]].get(key)
        if addr is None or ("-" in addr and addr.split("-")[1] != "128"):
            continue  # TSK's own virtual files, or NTFS index streams fls prints as ':$I30'
        if key == "$BadClus:$Bad":
            # All sparse, as long as the volume; icat prints nothing for it, the logical
            # content is zeros (hashed here independently).
            import hashlib

            zeros = hashlib.sha256()
            for _ in range(item["size"] // (1 << 20)):
                zeros.update(bytes(1 << 20))
            zeros.update(bytes(item["size"] % (1 << 20)))
            assert item["hashes"]["sha256"] == zeros.hexdigest()
            continue
        assert item["hashes"]["sha256"] == oracles.icat_sha256(raw, parts[item["volume"]], addr), key
        checked += 1
    assert checked > 20


def test_piecewise_disk_hash_localizes_a_changed_source(unpacked, tmp_path):
    """Opt-in pieces: each equals hashlib over that slice; a flipped byte names its piece."""
    import hashlib

    image = unpacked("gpt-ntfs.raw")
    out = tmp_path / "pieces.zip"
    run_collect(image, out, "--rule", "registry-and-mft", "--piece-size", "1MiB")
    with zipfile.ZipFile(out) as zf:
        disk = json.loads(zf.read("acquisition.json"))["disk_hash"]
    data = image.read_bytes()
    assert disk["piece_size"] == 1 << 20
    assert [p["sha256"] for p in disk["pieces"]] == [
        hashlib.sha256(data[i : i + (1 << 20)]).hexdigest() for i in range(0, len(data), 1 << 20)
    ]
    # A byte in the gap between the GPT entries and the first partition: no file changes.
    changed = bytearray(data)
    changed[100 * 512] ^= 0xFF
    copy = tmp_path / "changed.raw"
    copy.write_bytes(bytes(changed))
    result = CliRunner().invoke(app, ["verify", str(out), "--source", str(copy), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    where = sorted({d["what"] for d in report["differences"]})
    assert where == ["disk", "disk piece 0 [0, 1048576)"], report


def test_full_output_disk_stops_cleanly_and_keeps_what_was_collected(unpacked, truth, tmp_path):
    """Output on a 200 KiB tmpfs: one-line error, exit 3, a valid ZIP of the members
    closed before, each equal to icat, and the journals left beside it."""
    import gzip
    import hashlib
    import os

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    image = unpacked("gpt-ntfs.raw")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(small)], check=True)
    try:
        out = small / "c.zip"
        result = CliRunner().invoke(
            app, ["collect", str(image), "-o", str(out), "--rule", "triage", "--store", "-q"]
        )
        assert result.exit_code == 3, result.output
        message = result.output.strip()
        assert "\n" not in message and "No space left on device" in message, message
        assert "c.zip.manifest.jsonl.part" in message
        journal = [json.loads(x) for x in (small / "c.zip.manifest.jsonl.part").read_text().splitlines()]
        kept = [r for r in journal if r["outcome"] == "collected"]
        assert kept and any(r["outcome"] == "failed" for r in journal)
        parts = {p["index"]: p["start_sector"] for p in truth("gpt-ntfs")["partitions"]}
        with zipfile.ZipFile(out) as zf:
            assert zf.testzip() is None
            # The file listing of a volume already walked is a member too (--listing is on
            # for triage); it is whole: its JSON Lines parse.
            listing = [n for n in zf.namelist() if n.startswith("listing/")]
            for name in listing:
                if name.endswith(".jsonl.gz"):
                    rows = gzip.decompress(zf.read(name)).decode().splitlines()
                    assert rows and all("path" in json.loads(row) for row in rows)
            files = sorted(set(zf.namelist()) - set(listing))
            assert files == sorted(r["container_path"] for r in kept)
            for rec in kept:
                data = zf.read(rec["container_path"])
                assert hashlib.sha256(data).hexdigest() == rec["hashes"]["sha256"]
                streams = oracles.fls_streams(image, parts[rec["volume"]])
                addr = streams[rec["path"] + (f":{rec['stream']}" if rec["stream"] else "")]
                assert rec["hashes"]["sha256"] == oracles.icat_sha256(
                    image, parts[rec["volume"]], addr
                )
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_progress_knows_each_volume_total_before_copying(unpacked, truth, tmp_path):
    """The total announced per volume (for the ETA) is the bytes the builder wrote plus
    the $MFT size istat reports, and exactly that many bytes are then copied."""
    from selective_imager.collect.collector import CollectOptions, collect
    from selective_imager.discovery import open_disk
    from selective_imager.selection.rules import resolve

    image = unpacked("gpt-ntfs.raw")
    wanted = registry_and_mft_files(truth)
    start = truth("gpt-ntfs")["partitions"][2]["start_sector"]
    istat = oracles.run("istat", "-o", str(start), str(image), "0")
    mft = int(re.search(r"\$DATA \(128-\d+\)\s+Name: N/A\s+Non-Resident\s+size: (\d+)", istat)[1])
    recorder = PhaseRecorder()
    with open_disk(image) as disk:
        collect(
            disk, resolve(["registry-and-mft"]), tmp_path / "p.zip", CollectOptions(disk_hash=()),
            recorder,
        )
    expected = sum(f["size"] for f in wanted) + mft
    assert ("collect p3", expected, len(wanted) + 1) in recorder.phases
    assert recorder.advanced == expected


def test_beyond_the_precount_limit_matches_stream_without_a_total(unpacked, truth, tmp_path, monkeypatch):
    """Past the pre-count limit the total is unknown, and every match is still copied."""
    from selective_imager.collect import collector
    from selective_imager.discovery import open_disk
    from selective_imager.selection.rules import resolve

    monkeypatch.setattr(collector, "_PRECOUNT_MAX", 3)
    recorder = PhaseRecorder()
    out = tmp_path / "s.zip"
    with open_disk(unpacked("gpt-ntfs.raw")) as disk:
        report = collector.collect(
            disk, resolve(["registry-and-mft"]), out, collector.CollectOptions(disk_hash=()),
            recorder,
        )
    assert ("collect p3", None, None) in recorder.phases
    wanted = {f["path"] for f in registry_and_mft_files(truth)}
    assert {i["path"] for i in manifest(out)} == wanted | {"$MFT"}
    assert report.status == "complete"


def test_concurrent_disk_hash_equals_coreutils(unpacked, truth, tmp_path):
    """--disk-hash-mode concurrent: the disk hash (read beside the collection) equals
    coreutils, and the items still equal icat."""
    image = unpacked("gpt-ntfs.raw")
    out = tmp_path / "conc.zip"
    summary = run_collect(
        image, out, "--rule", "registry-and-mft", "--disk-hash-mode", "concurrent", "--store"
    )
    digests = summary["disk_hash"]["digests"]
    assert digests["md5"] == oracles.file_digest(image, "md5sum")
    assert digests["sha1"] == oracles.file_digest(image, "sha1sum")
    assert digests["sha256"] == oracles.file_digest(image, "sha256sum")
    start = truth("gpt-ntfs")["partitions"][2]["start_sector"]
    streams = oracles.fls_streams(image, start)
    items = manifest(out)
    assert items
    for item in items:
        assert item["hashes"]["sha256"] == oracles.icat_sha256(image, start, streams[item["path"]])

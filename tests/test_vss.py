"""Volume Shadow Copies on the Windows-made reference volume (../shared/data/vss).

Oracles, none of them this tool: ``vshadowinfo`` for the store list, identifiers and
creation times; ``vshadowmount`` (FUSE) exposing each store as a file, read by The Sleuth
Kit's ``fls -r -p`` and ``icat``; ``unzip`` for the container.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, need_tool
from tests.oracles import ENV, fls_streams, fls_tree, icat_sha256

CLI = str(VENV_BIN / "selective-imager")
# What the reference volume holds at its root (vshadowmount + fls): another_file and
# password.txt only live/in store 2, syslog only in store 1 (renamed syslog.gz later),
# plus NTFS metadata files and the VSS catalog, which are in every state.
CATALOG = "System Volume Information/{3808876b-c176-4e48-b7ae-04046e6cc752}"
WANTED = {
    "another_file",
    "password.txt",
    "syslog",
    "syslog.gz",
    "$MFT",
    "$MFTMirr",
    "$UpCase",
    "$Secure:$SDS",
    CATALOG,
}
RULE = """\
name: vss-test
title: Files of the VSS reference volume
targets:
  - name: root files
    paths: [another_file, password.txt, syslog, syslog.gz, '$MFT', '$MFTMirr', '$UpCase',
            '$Secure:$SDS', 'System Volume Information/[{]3808876b-c176-4e48-b7ae-04046e6cc752[}]']
"""


def cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CLI, *args], capture_output=True, text=True)
    if check is not None:
        assert done.returncode == check, (done.returncode, done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def image(shared) -> Path:
    return shared("vss/vsstest.raw")


@pytest.fixture(scope="module")
def rule(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vssrule") / "vss-test.yaml"
    path.write_text(RULE, encoding="utf-8")
    return path


def _vshadowinfo(image: Path) -> list[dict[str, str]]:
    text = subprocess.run(
        [need_tool("vshadowinfo"), str(image)], capture_output=True, text=True, env=ENV
    ).stdout
    stores: list[dict[str, str]] = []
    for line in text.splitlines():
        if m := re.match(r"^Store: (\d+)", line):
            stores.append({"index": m.group(1)})
        elif stores and (m := re.match(r"^\s+([A-Za-z ]+?)\s*: (.*)$", line)):
            stores[-1][m.group(1)] = m.group(2).strip()
    return stores


def _iso(vshadow_time: str) -> str:
    """``Dec 03, 2013 06:35:09.736378700 UTC`` -> ``2013-12-03T06:35:09.7363787Z``."""
    head, frac = vshadow_time.removesuffix(" UTC").rsplit(".", 1)
    when = dt.datetime.strptime(head, "%b %d, %Y %H:%M:%S")
    assert frac.endswith("00"), frac  # FILETIME: 100 ns
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + frac[:7] + "Z"


@pytest.fixture(scope="module")
def oracle_stores(image: Path) -> list[dict[str, str]]:
    stores = _vshadowinfo(image)
    assert len(stores) == 2
    return stores


@pytest.fixture(scope="module")
def mounted(image: Path, tmp_path_factory: pytest.TempPathFactory):
    """The stores as files (``vss1``, ``vss2``) through vshadowmount; unmounted after."""
    tool = need_tool("vshadowmount")
    if not Path("/dev/fuse").exists():
        pytest.skip("/dev/fuse absent: vshadowmount (the store oracle) cannot run")
    point = tmp_path_factory.mktemp("vshadowmount")
    started = subprocess.run([tool, str(image), str(point)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"vshadowmount failed here: {started.stderr.strip()[:200]}")
    for _ in range(50):
        if (point / "vss2").exists():
            break
        time.sleep(0.1)
    yield point
    unmount = shutil.which("fusermount3") or shutil.which("fusermount")
    if unmount:
        subprocess.run([unmount, "-u", str(point)], capture_output=True)
    else:
        subprocess.run(["umount", str(point)], capture_output=True)


def _oracle_items(path: Path) -> dict[str, str]:
    """Wanted path -> SHA-256 per fls + icat on one state of the volume."""
    listed = fls_streams(path, 0)
    return {name: icat_sha256(path, 0, addr) for name, addr in listed.items() if name in WANTED}


@pytest.fixture(scope="module")
def oracle(image: Path, mounted: Path) -> dict[str, dict[str, str]]:
    """Label -> {path -> SHA-256} of every wanted file, live and in each store."""
    return {
        "v0": _oracle_items(image),
        "v0/vss1": _oracle_items(mounted / "vss1"),
        "v0/vss2": _oracle_items(mounted / "vss2"),
    }


@pytest.fixture(scope="module")
def collected(image: Path, rule: Path, tmp_path_factory: pytest.TempPathFactory):
    """``collect --vss`` on the reference volume: (summary, manifest, zip path)."""
    out = tmp_path_factory.mktemp("vsscollect") / "case.zip"
    done = cli("collect", str(image), "-o", str(out), "--vss", "--rule", str(rule),
               "--disk-hash", "none", "-q", "--json")
    summary = json.loads(done.stdout)
    with zipfile.ZipFile(out) as zf:
        manifest = [json.loads(line) for line in zf.read("manifest.jsonl").splitlines()]
        acquisition = json.loads(zf.read("acquisition.json"))
    return summary, manifest, acquisition, out


def _name(record: dict) -> str:
    return record["path"] + (f":{record['stream']}" if record["stream"] else "")


def test_info_lists_both_stores_as_vshadowinfo(image: Path, oracle_stores) -> None:
    data = json.loads(cli("info", str(image), "--json").stdout)
    (volume,) = data["volumes"]  # stores are listed, not opened, without --vss
    listed = volume["shadow_copies"]
    assert [s["index"] for s in listed] == [1, 2]
    for mine, theirs in zip(listed, oracle_stores, strict=True):
        assert mine["identifier"] == theirs["Identifier"]
        assert mine["copy_identifier"] == theirs["Shadow copy ID"]
        assert mine["copy_set_identifier"] == theirs["Shadow copy set ID"]
        assert mine["creation_time"] == _iso(theirs["Creation time"])
        assert mine["in_volume_data"] is True
        assert mine["size"] == int(re.search(r"\((\d+) bytes\)", theirs["Volume size"])[1])
        assert mine["error"] is None
    # In-process (CliRunner) as through the console script.
    from typer.testing import CliRunner

    from selective_imager.cli.app import app

    result = CliRunner().invoke(app, ["info", str(image), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["volumes"][0]["shadow_copies"] == listed
    text = cli("info", str(image)).stdout
    for theirs in oracle_stores:
        assert theirs["Identifier"] in text and _iso(theirs["Creation time"]) in text


def test_ls_vss_lists_the_store_tree(image: Path, mounted: Path) -> None:
    for k in (1, 2):
        lines = cli("ls", str(image), "--vss", str(k), "--json").stdout.splitlines()
        mine = {json.loads(line)["path"] for line in lines}
        theirs = {name for name in fls_tree(mounted / f"vss{k}", 0)[0] if "/" not in name}
        assert mine == theirs
    assert "syslog" in mine_root(image, 1) and "syslog" not in mine_root(image, None)
    bad = cli("ls", str(image), "--vss", "3", check=2)
    assert "no shadow copy 3" in bad.stderr and "Traceback" not in bad.stderr


def mine_root(image: Path, store: int | None) -> set[str]:
    args = ["ls", str(image), "--json"] + (["--vss", str(store)] if store else [])
    return {json.loads(line)["path"] for line in cli(*args).stdout.splitlines()}


def test_collect_vss_every_item_equals_the_oracle(collected, oracle, oracle_stores) -> None:
    summary, manifest, acquisition, out = collected
    assert summary["status"] == "complete" and summary["volume_errors"] == []
    by_label: dict[str, dict[str, dict]] = {}
    for record in manifest:
        by_label.setdefault(record["volume_label"], {})[_name(record)] = record
    # Nothing dropped, nothing invented: each state's wanted files exactly.
    assert {label: set(items) for label, items in by_label.items()} == {
        label: set(items) for label, items in oracle.items()
    }
    times = {int(s["index"]): s for s in oracle_stores}
    with zipfile.ZipFile(out) as zf:
        for label, items in by_label.items():
            for name, record in items.items():
                assert record["outcome"] in ("collected", "duplicate"), record
                assert record["hashes"]["sha256"] == oracle[label][name], (label, name)
                member = zf.read(record["container_path"])
                assert hashlib.sha256(member).hexdigest() == oracle[label][name]
                if label == "v0":
                    assert record["vss"] is None
                    continue
                k = int(label.rsplit("vss", 1)[1])
                assert record["vss"] == {
                    "index": k,
                    "identifier": times[k]["Identifier"],
                    "creation_time": _iso(times[k]["Creation time"]),
                }
    # Members of a store live under its own prefix.
    assert by_label["v0/vss1"]["syslog"]["container_path"] == "files/v0/vss1/syslog"
    # The stores are listed in acquisition.json under their live volume.
    live = next(v for v in acquisition["volumes"] if v["snapshot"] is None)
    assert [s["identifier"] for s in live["shadow_copies"]] == [
        s["Identifier"] for s in oracle_stores
    ]


def test_file_only_in_a_store_is_collected(collected, oracle) -> None:
    _, manifest, _, _ = collected
    # syslog exists only in store 1 (the live volume has syslog.gz instead).
    assert "syslog" not in oracle["v0"] and "syslog" in oracle["v0/vss1"]
    (record,) = [r for r in manifest if r["path"] == "syslog"]
    assert record["outcome"] == "collected" and record["volume_label"] == "v0/vss1"


def test_unchanged_file_is_stored_once_with_a_duplicate_per_store(collected, oracle) -> None:
    _, manifest, _, out = collected
    same = {oracle[label][CATALOG] for label in oracle}
    assert len(same) == 1  # the oracle says the catalog file is equal in all three states
    records = [r for r in manifest if r["path"] == CATALOG]
    assert sorted(r["volume_label"] for r in records) == ["v0", "v0/vss1", "v0/vss2"]
    (stored,) = [r for r in records if r["outcome"] == "collected"]
    assert stored["volume_label"] == "v0"
    for r in records:
        if r is not stored:
            assert r["outcome"] == "duplicate"
            assert r["container_path"] == stored["container_path"]
    digest = same.pop()
    with zipfile.ZipFile(out) as zf:
        holding = [
            i.filename
            for i in zf.infolist()
            if i.filename.startswith("files/") and hashlib.sha256(zf.read(i)).hexdigest() == digest
        ]
    assert holding == [stored["container_path"]]


def test_unchanged_items_are_not_read_and_equal_the_store(collected, oracle) -> None:
    """Items recorded as the live file without a read still equal icat on the store."""
    summary, manifest, _, _ = collected
    reused = [r for r in manifest if r.get("unchanged_from")]
    assert summary["vss_unchanged_not_read"] == len(reused) > 0
    for r in reused:
        assert r["outcome"] == "duplicate" and r["unchanged_from"] == "v0"
        assert r["hashes"]["sha256"] == oracle[r["volume_label"]][_name(r)]


def test_store_selection(image: Path, rule: Path, oracle_stores) -> None:
    def labels(*vss: str) -> set[str]:
        done = cli("collect", str(image), "--dry-run", "--json", "--rule", str(rule), *vss)
        return {item["volume_label"] for item in json.loads(done.stdout)["items"]}

    assert labels() == {"v0"}
    assert labels("--vss", "1") == {"v0", "v0/vss1"}
    assert labels("--vss", "latest") == {"v0", "v0/vss2"}
    # Between the two creation times (vshadowinfo's): only the newer store.
    first = dt.datetime.fromisoformat(_iso(oracle_stores[0]["Creation time"])[:19])
    since = (first + dt.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert labels("--vss-since", since) == {"v0", "v0/vss2"}
    bad = cli("collect", str(image), "--dry-run", "--vss", "0", check=2)
    assert "store indexes start at 1" in bad.stderr


@pytest.fixture(scope="module")
def damaged(image: Path, tmp_path_factory: pytest.TempPathFactory):
    """Copies of the volume with store 1's block list, or the catalog, overwritten."""
    head = _read(image, 0x1E00, 64)  # the VSS volume header
    catalog = int.from_bytes(head[48:56], "little")
    block = _read(image, catalog, 0x4000)
    # Catalog entry type 3 of the first store: its block list offset (libvshadow's document).
    entry = next(
        block[pos : pos + 128]
        for pos in range(128, 0x4000, 128)
        if int.from_bytes(block[pos : pos + 8], "little") == 3
    )
    block_list = int.from_bytes(entry[8:16], "little")
    folder = tmp_path_factory.mktemp("vssbad")
    made = {}
    for name, offset in (("block-list", block_list), ("catalog", catalog)):
        path = folder / f"{name}.raw"
        subprocess.run(["cp", "--sparse=always", str(image), str(path)], check=True)
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\xff" * 16)
        made[name] = path
    return made


def _read(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def test_damaged_store_block_list(damaged, rule: Path, tmp_path: Path) -> None:
    image = damaged["block-list"]
    listed = json.loads(cli("info", str(image), "--json").stdout)["volumes"][0]["shadow_copies"]
    assert "block list unreadable" in listed[0]["error"] and listed[1]["error"] is None
    out = tmp_path / "case.zip"
    done = cli("collect", str(image), "-o", str(out), "--vss", "--rule", str(rule),
               "--disk-hash", "none", "-q", "--json", check=1)
    summary = json.loads(done.stdout)
    assert any("vss1" in e and "block list unreadable" in e for e in summary["volume_errors"])
    with zipfile.ZipFile(out) as zf:
        manifest = [json.loads(line) for line in zf.read("manifest.jsonl").splitlines()]
    labels = {r["volume_label"] for r in manifest}
    assert labels == {"v0", "v0/vss2"}  # the live volume and the readable store go on
    live = fls_streams(image, 0)
    for r in manifest:
        if r["volume_label"] == "v0":
            assert r["hashes"]["sha256"] == icat_sha256(image, 0, live[_name(r)])


def test_damaged_catalog(damaged, rule: Path, tmp_path: Path) -> None:
    image = damaged["catalog"]
    volume = json.loads(cli("info", str(image), "--json").stdout)["volumes"][0]
    assert volume["filesystem"]["type"] == "ntfs"
    assert "unreadable" in volume["shadow_copies_error"]
    out = tmp_path / "case.zip"
    done = cli("collect", str(image), "-o", str(out), "--vss", "--rule", str(rule),
               "--disk-hash", "none", "-q", "--json", check=1)
    summary = json.loads(done.stdout)
    assert summary["counts"]["collected"] > 0
    assert any("shadow copies present but unreadable" in e for e in summary["volume_errors"])


def test_shadow_copies_inside_a_partition(image: Path, rule: Path, oracle, tmp_path: Path) -> None:
    """The layer is asked on every stream of the worklist: here an MBR partition."""
    need_tool("sfdisk")
    disk = tmp_path / "disk.raw"
    start = 2048
    size = image.stat().st_size
    with open(disk, "wb") as fh:
        fh.truncate(start * 512 + size + (1 << 20))
    subprocess.run(
        ["sfdisk", "-q", str(disk)], input=f"start={start}, size={size // 512}, type=7\n",
        text=True, check=True, capture_output=True,
    )
    subprocess.run(
        ["dd", f"if={image}", f"of={disk}", "bs=4M", f"seek={start * 512}", "oflag=seek_bytes",
         "conv=notrunc,sparse", "status=none"],
        check=True,
    )
    volume = json.loads(cli("info", str(disk), "--json").stdout)["volumes"][0]
    assert volume["label"] == "p1" and len(volume["shadow_copies"]) == 2
    out = tmp_path / "case.zip"
    cli("collect", str(disk), "-o", str(out), "--vss", "--rule", str(rule), "--disk-hash", "none", "-q")
    with zipfile.ZipFile(out) as zf:
        manifest = [json.loads(line) for line in zf.read("manifest.jsonl").splitlines()]
    got = {(r["volume_label"], _name(r)): r["hashes"]["sha256"] for r in manifest}
    # The same states as the bare volume's oracle, now named p1, p1/vss1, p1/vss2.
    assert got == {
        (label.replace("v0", "p1"), name): digest
        for label, items in oracle.items()
        for name, digest in items.items()
    }
    assert {r["container_path"].split("/")[1:3][0] for r in manifest} == {"p1"}
    assert any(r["container_path"].startswith("files/p1/vss2/") for r in manifest)


def test_verify_and_extract_keep_the_stores_apart(collected, image: Path, oracle, tmp_path) -> None:
    _, _, _, out = collected
    done = cli("verify", str(out), "--source", str(image))
    items = sum(len(v) for v in oracle.values())
    assert done.stdout.startswith("OK") and f"{items} items re-read from the source" in done.stdout
    dest = tmp_path / "out"
    cli("extract", str(out), str(dest))
    got = {
        str(p.relative_to(dest)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in dest.rglob("*")
        if p.is_file()
    }
    # Live files under 0/, each store's under 0/vssK/ (oracle: fls + icat per state).
    assert got == {
        (f"0/{label[3:]}/{name}" if label != "v0" else f"0/{name}"): digest
        for label, items in oracle.items()
        for name, digest in items.items()
    }


def test_blocks_said_unchanged_read_as_live_in_vshadowmount(image: Path, mounted: Path) -> None:
    """The shortcut's premise, block by block: what the layer says a store did not change
    reads byte for byte as the live volume in vshadowmount's store file."""
    from selective_imager.discovery import open_disk
    from selective_imager.volumes.base import DiscoveryOptions
    from selective_imager.volumes.vss import BLOCK_SIZE

    blocks = range(0, image.stat().st_size // BLOCK_SIZE, 4)  # every 4th 16 KiB block
    with open_disk(image, options=DiscoveryOptions(vss=True)) as disk:
        said = {
            v.report.snapshot["index"]: [
                b for b in blocks if v.raw.unchanged([(b * BLOCK_SIZE, BLOCK_SIZE)])
            ]
            for v in disk.volumes
            if v.report.snapshot
        }
    assert sorted(said) == [1, 2]
    with open(image, "rb") as live:
        for k, unchanged in said.items():
            # Store 1 shares most of the volume; the newest store zero-fills the blocks its
            # bitmap marks unused (most of this near-empty volume), so it shares few.
            assert len(unchanged) > (10_000 if k == 1 else 100)
            with open(mounted / f"vss{k}", "rb") as store:
                for b in unchanged:
                    live.seek(b * BLOCK_SIZE)
                    store.seek(b * BLOCK_SIZE)
                    assert store.read(BLOCK_SIZE) == live.read(BLOCK_SIZE), (k, b)

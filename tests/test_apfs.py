"""APFS: the macOS-made reference container against fsapfsinfo, mkapfs containers, bad input.

Oracles: ``fsapfsinfo`` (libfsapfs-utils, a C tool of its own release, not the Python
binding) for the listing, the inode numbers and the four times to the nanosecond
(``-E all``), and for content MD5s (``-B -d``); ``fsapfsmount`` (FUSE) for SHA-256 of
content when FUSE works here; ``mkapfs`` (apfsprogs) for the containers it builds.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import need_tool
from tests.oracles import ENV

_TIME_KEYS = {
    "Creation time": "created",
    "Modification time": "modified",
    "Inode change time": "changed",
    "Access time": "accessed",
}


def _fsapfsinfo(*args: str) -> str:
    tool = need_tool("fsapfsinfo")
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True, env=ENV).stdout


@pytest.fixture(scope="module")
def image(shared) -> Path:
    return shared("apfs/apfs.raw")


@pytest.fixture(scope="module")
def oracle(image, tmp_path_factory) -> dict:
    """Per path: inode, MD5 (bodyfile); per inode: size, mode, owners, times, xattr names."""
    body = tmp_path_factory.mktemp("apfs-oracle") / "body.txt"
    info = _fsapfsinfo(str(image))
    container = re.search(r"Container information:\n\tIdentifier\s+: (\S+)", info)
    volume = re.search(r"Volume: 1 information:\n\tIdentifier\s+: (\S+)\n\tName\s+: (.*)", info)
    assert container and volume
    _fsapfsinfo("-B", str(body), "-d", "-H", str(image))
    paths: dict[str, dict] = {}
    for line in body.read_text().splitlines():
        md5, name, inode, mode, *_ = line.split("|")
        name = name.split(" -> ")[0]
        rel = name.split("}/", 1)[1] if "}/" in name else ""
        paths[rel] = {"inode": int(inode), "md5": md5, "mode": mode}
    inodes: dict[int, dict] = {}
    for block in _fsapfsinfo("-E", "all", str(image)).split("File entry:")[1:]:
        fields = dict(re.findall(r"^\t(\w[\w ]*?)\s*: (.*)$", block, re.M))
        entry = {
            "size": int(fields["Size"]),
            "uid": int(fields["Owner identifier"]),
            "gid": int(fields["Group identifier"]),
            "mode": int(re.search(r"\((\d+)\)", fields["File mode"]).group(1), 8),
            "link": fields.get("Symbolic link target", ""),
            "times": {ours: fields[theirs] for theirs, ours in _TIME_KEYS.items()},
            "xattrs": sorted(re.findall(r"^\t\tAttribute: \d+\t: (.*)$", block, re.M)),
        }
        inodes[int(fields["Identifier"])] = entry
    return {
        "container": container.group(1),
        "volume": volume.group(1),
        "name": volume.group(2).strip(),
        "paths": paths,
        "inodes": inodes,
    }


def _invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_info_names_the_container_and_its_volume(image, oracle):
    result = _invoke("info", str(image), "--json")
    assert result.exit_code == 0, result.output
    (vol,) = json.loads(result.stdout)["volumes"]
    assert vol["label"] == "v0/apfs1"
    assert vol["filesystem"]["type"] == "apfs"
    assert vol["filesystem"]["backend"] == "pyfsapfs"
    assert vol["filesystem"]["label"] == oracle["name"] == "apfs_test"
    assert vol["filesystem"]["serial"] == oracle["volume"]
    assert vol["apfs_container"]["identifier"] == oracle["container"]
    assert vol["apfs_volume"]["identifier"] == oracle["volume"]
    assert vol["apfs_volume"]["snapshot_count"] == 0
    assert vol["encryption"] is None


def test_ls_equals_fsapfsinfo_to_the_nanosecond(image, oracle):
    result = _invoke("ls", str(image), "-r", "--json", "--volume", "v0/apfs1")
    assert result.exit_code == 0, result.output
    entries = {e["path"]: e for e in map(json.loads, result.stdout.splitlines())}
    expected = {p for p in oracle["paths"] if p}
    assert set(entries) == expected
    for path, entry in entries.items():
        inode = oracle["paths"][path]["inode"]
        truth = oracle["inodes"][inode]
        assert entry["entry"] == inode, path
        assert entry["timestamps"]["times"] == truth["times"], path
        assert entry["mode"] == truth["mode"], path
        assert (entry["uid"], entry["gid"]) == (truth["uid"], truth["gid"]), path
        if entry["type"] == "file":
            assert entry["size"] == truth["size"], path
        assert entry.get("link_target", "") == truth["link"], path
        assert sorted(s["name"] for s in entry["streams"]) == truth["xattrs"], path
    assert entries["a_link"]["link_target"] == "a_directory/another_file"
    fork = entries["a_directory/a_resourcefork"]["streams"]
    assert [s["name"] for s in fork] == ["com.apple.ResourceFork"]


@pytest.fixture(scope="module")
def collected(image, tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("apfs-collect")
    rule = tmp / "everything.yaml"
    rule.write_text(
        "name: everything\ntitle: All files and streams\ndescription: test\nversion: 1\n"
        "author: test\ntargets:\n  - name: all\n    paths: ['**', '**:*']\n"
    )
    out = tmp / "apfs.zip"
    result = _invoke("collect", str(image), "-o", str(out), "--rule", str(rule), "--quiet")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
        for item in items:
            item["_data"] = zf.read(item["container_path"]) if item.get("container_path") else b""
    return items


def test_collect_equals_fsapfsinfo(collected, oracle, image):
    files = {i["path"]: i for i in collected if not i["stream"]}
    expected = {p for p, v in oracle["paths"].items() if p and v["mode"][0] in "-l"}
    assert set(files) == expected
    for path, item in files.items():
        truth = oracle["paths"][path]
        assert item["outcome"] in ("collected", "duplicate"), item
        if truth["mode"].startswith("l"):
            # A symbolic link: its target is the record's, its data stream is empty.
            assert item["link_target"] == oracle["inodes"][truth["inode"]]["link"]
            assert item["size"] == 0
        else:
            assert item["hashes"]["md5"] == truth["md5"], path
        assert item["timestamps"]["times"] == oracle["inodes"][truth["inode"]]["times"], path
        assert item["entry"] == truth["inode"]
        assert item["volume_label"] == "v0/apfs1"
    streams = {(i["path"], i["stream"]): i for i in collected if i["stream"]}
    raw = image.read_bytes()
    fork = streams[("a_directory/a_resourcefork", "com.apple.ResourceFork")]
    xattr = streams[("a_directory/a_file", "myxattr")]
    # Small xattrs are stored inline in the file-system tree, uncompressed: the value
    # must be there, byte for byte, in the image.
    for item in (fork, xattr):
        data = item["_data"]
        assert data and data in raw
        assert item["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert fork["_data"] == b"My resource fork\n"


def test_collect_content_equals_fsapfsmount(collected, image, tmp_path):
    tool = shutil.which("fsapfsmount")
    if tool is None or not Path("/dev/fuse").exists() or shutil.which("fusermount") is None:
        pytest.skip("fsapfsmount or FUSE not available")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen([tool, "-X", "allow_root", str(image), str(mnt)], env=ENV)
    try:
        for _ in range(50):
            if proc.poll() is not None or any(mnt.iterdir()):
                break
            time.sleep(0.1)
        if not any(mnt.iterdir()):
            pytest.skip("fsapfsmount did not mount (no FUSE permission?)")
        for item in collected:
            if item["stream"] or item.get("link_target"):
                continue
            data = (mnt / item["path"]).read_bytes()
            assert item["hashes"]["sha256"] == hashlib.sha256(data).hexdigest(), item["path"]
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], check=False)
        proc.wait(10)


@pytest.fixture(scope="module")
def mkapfs_images(tmp_path_factory) -> dict[str, Path]:
    tool = need_tool("mkapfs")
    tmp = tmp_path_factory.mktemp("mkapfs")
    out = {}
    for name, flags in (("insensitive", []), ("sensitive", ["-s"])):
        path = tmp / f"{name}.img"
        with open(path, "wb") as f:
            f.truncate(128 << 20)  # mkapfs refuses smaller containers
        subprocess.run(
            [tool, *flags, "-L", f"vol-{name}", "-U", "11111111-2222-3333-4444-555555555555",
             "-u", "66666666-7777-8888-9999-aaaaaaaaaaaa", str(path)],
            check=True, capture_output=True, env=ENV,
        )
        out[name] = path
    return out


@pytest.mark.parametrize("name", ["insensitive", "sensitive"])
def test_mkapfs_container_detected(mkapfs_images, name):
    result = _invoke("info", str(mkapfs_images[name]), "--json")
    assert result.exit_code == 0, result.output
    (vol,) = json.loads(result.stdout)["volumes"]
    assert vol["filesystem"]["type"] == "apfs"
    assert vol["filesystem"]["label"] == f"vol-{name}"
    assert vol["filesystem"]["serial"] == "66666666-7777-8888-9999-aaaaaaaaaaaa"
    assert vol["apfs_container"]["identifier"] == "11111111-2222-3333-4444-555555555555"
    assert vol["filesystem"]["case_sensitive"] is (name == "sensitive")
    listing = _invoke("ls", str(mkapfs_images[name]), "--json")
    assert listing.exit_code == 0 and listing.stdout == ""


def _one_line_error(result: object) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_damaged_superblocks_are_one_line(image, tmp_path):
    data = bytearray(image.read_bytes())
    block = 4096
    # Block 0 and every superblock copy of the checkpoint area (blocks 1-8 here).
    for number in range(9):
        if data[number * block + 32 : number * block + 36] == b"NXSB":
            data[number * block + 200] ^= 0xFF
    bad = tmp_path / "damaged.raw"
    bad.write_bytes(bytes(data))
    line = _one_line_error(_invoke("info", str(bad)))
    assert "APFS" in line and "damaged" in line


def test_truncated_container_is_one_line(image, tmp_path):
    bad = tmp_path / "truncated.raw"
    bad.write_bytes(image.read_bytes()[: 256 * 1024])
    result = _invoke("ls", str(bad), "-r")
    line = _one_line_error(result)
    assert "APFS" in line


def test_container_in_a_gpt_partition_is_p2_apfs1(image, oracle, tmp_path):
    """The worklist nests: GPT partition 2 of type APFS holds the container (sfdisk-made)."""
    sfdisk = need_tool("sfdisk")
    disk = tmp_path / "gpt-apfs.raw"
    data = image.read_bytes()
    with open(disk, "wb") as f:
        f.truncate(16 << 20)
    script = (
        "label: gpt\n"
        "start=2048, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        f"start=4096, size={len(data) // 512}, type=7C3457EF-0000-11AA-AA11-00306543ECAC\n"
    )
    subprocess.run([sfdisk, "-q", str(disk)], input=script, text=True, check=True, env=ENV)
    with open(disk, "r+b") as f:
        f.seek(4096 * 512)
        f.write(data)
    result = _invoke("info", str(disk), "--json")
    assert result.exit_code == 0, result.output
    vols = {v["label"]: v for v in json.loads(result.stdout)["volumes"]}
    assert vols["p2/apfs1"]["filesystem"]["serial"] == oracle["volume"]
    assert vols["p2/apfs1"]["offset"] == 4096 * 512
    listing = _invoke("ls", str(disk), "-r", "--json", "--volume", "p2/apfs1")
    assert listing.exit_code == 0, listing.output
    paths = {json.loads(x)["path"] for x in listing.stdout.splitlines()}
    assert paths == {p for p in oracle["paths"] if p}
    out = tmp_path / "c.zip"
    result = _invoke("collect", str(disk), "-o", str(out), "--volume", "p2/apfs1", "--quiet")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
    assert {(i["volume_label"], i["path"]) for i in items} == {
        ("p2/apfs1", p) for p in oracle["paths"] if p.startswith(".fseventsd/")
    }


def test_apfs_credentials_on_an_unencrypted_volume(image, tmp_path, monkeypatch):
    """Given APFS credentials, an unencrypted volume needs none: no prompt is shown, no
    secret appears, nothing is reported locked."""
    secret = "s3cret-apfs-Passw0rd"
    pw = tmp_path / "pw.txt"
    pw.write_text(secret + "\n")
    monkeypatch.setenv("APFS_PW", secret)
    result = CliRunner().invoke(
        app,
        ["info", str(image), "--json", "--apfs-password", "--apfs-password-file", str(pw),
         "--apfs-password-env", "APFS_PW", "--apfs-recovery-key-file", str(pw)],
        input="typed-secret\n",
    )
    assert result.exit_code == 0, result.output
    assert secret not in result.output and "typed-secret" not in result.output
    assert "password for" not in result.output  # never prompted
    (vol,) = json.loads(result.stdout)["volumes"]
    assert vol["encryption"] is None and vol["error"] is None

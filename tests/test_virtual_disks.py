"""Virtual disks (VMDK, VHD, VHDX, QCOW) and their differencing chains against the oracle.

Every image is made in the test session from ``fixtures/gpt-ntfs.raw.gz`` with
``qemu-img convert`` (VHD/VHDX children: a qemu-made dynamic disk turned into a child
by ``fixtures/vdisk_children.py``, since qemu-img cannot create those). A chain child
holds 2 MiB of whole blocks written with ``qemu-io``: the parent's bytes with 4 KiB of
``0xab`` inside ``Users/alice/NTUSER.DAT``, so the child changes a collected file.

Oracle: ``qemu-img convert -O raw`` of the same file (of the child for VMDK and QCOW
chains; qemu cannot read VHD/VHDX children, so for those the same ``qemu-io`` write
applied to the parent's raw conversion), then mmls/fls/icat and sha256sum on it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.sources import open_source
from tests import oracles
from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES))
import vdisk_children

NTFS = 20480  # start sector of the NTFS partition (gpt-ntfs.truth.json, index 3)
PATCH_AT = 2 << 20  # child writes are whole 2 MiB (VHD block) aligned ranges
SPLIT_MARK = (2 << 30) + (1 << 20)  # a write in the second 2 GiB extent


@dataclass
class VDisk:
    """One virtual-disk fixture and what the oracle knows about it."""

    name: str
    path: Path
    fmt: str
    files: list[tuple[Path, str]]  # (file, role) as received, child first
    oracle: Path
    ids: dict[str, str] = field(default_factory=dict)  # details key -> expected value
    chain_ids: list[tuple[str, str]] = field(default_factory=list)  # (identifier, parent id)
    big: bool = False  # 2 GiB+: no whole-disk hash in the tests


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, cwd=cwd
    ).stdout


def _qemu_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install qemu-utils)")
    return path


def _patch(base: Path, work: Path) -> tuple[int, Path]:
    """The 2 MiB the children write: the base's bytes, 4 KiB of 0xab inside NTUSER.DAT."""
    _, _, addr = oracles.fls_tree(base, NTFS)
    istat = oracles.run(oracles.need_tool("istat"), "-o", str(NTFS), str(base),
                        str(addr["Users/alice/NTUSER.DAT"]))
    first_cluster = int(istat.strip().splitlines()[-1].split()[0])
    target = NTFS * 512 + first_cluster * 4096 + 4096
    start = target // PATCH_AT * PATCH_AT
    with base.open("rb") as f:
        f.seek(start)
        data = bytearray(f.read(PATCH_AT))
    data[target - start : target - start + 4096] = b"\xab" * 4096
    blob = work / "patch.bin"
    blob.write_bytes(bytes(data))
    return start, blob


@pytest.fixture(scope="session")
def vdisks(unpacked, tmp_path_factory) -> dict[str, VDisk]:
    """Every virtual-disk fixture, built once per session (a few seconds)."""
    qemu_img, qemu_io = _qemu_tool("qemu-img"), _qemu_tool("qemu-io")
    base = unpacked("gpt-ntfs.raw")
    d = tmp_path_factory.mktemp("vdisks")
    start, blob = _patch(base, d)
    write = f"write -s {blob} {start} {PATCH_AT}"
    out: dict[str, VDisk] = {}

    def convert(name: str, fmt: str, *opts: str, source: Path = base) -> Path:
        target = d / name
        _run(qemu_img, "convert", "-f", "raw", "-O", fmt, *opts, source, target)
        return target

    def raw_of(path: Path, fmt: str) -> Path:
        target = d / (path.name + ".oracle.raw")
        _run(qemu_img, "convert", "-f", fmt, "-O", "raw", path, target)
        return target

    def qemu_info(path: Path) -> dict:
        return json.loads(_run(qemu_img, "info", "--output", "json", path))["format-specific"]["data"]

    def add(name: str, path: Path, fmt: str, qfmt: str, **kw: object) -> None:
        files = kw.pop("files", [(path, "image")])
        oracle = kw.pop("oracle", None) or raw_of(path, qfmt)
        out[name] = VDisk(name, path, fmt, files, oracle, **kw)  # type: ignore[arg-type]

    for name, opts in (
        ("vmdk-sparse", ()),
        ("vmdk-stream", ("-o", "subformat=streamOptimized")),
    ):
        p = convert(f"{name}.vmdk", "vmdk", *opts)
        add(name, p, "vmdk", "vmdk", ids={"vmdk.content_id": f"{qemu_info(p)['cid']:08x}"})
    p = convert("vmdk-flat.vmdk", "vmdk", "-o", "subformat=monolithicFlat")
    add("vmdk-flat", p, "vmdk", "vmdk",
        files=[(p, "image"), (d / "vmdk-flat-flat.vmdk", "extent")])

    # Split: 2 GiB extents, so the disk is made bigger than one and the second written.
    wide = d / "wide.raw"
    shutil.copy(base, wide)
    with wide.open("r+b") as f:
        f.truncate((2 << 30) + (64 << 20))
    p = convert("vmdk-split.vmdk", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", source=wide)
    wide.unlink()
    _run(qemu_io, "-f", "vmdk", "-c", f"write -P 0x5a {SPLIT_MARK} 65536", p)
    add("vmdk-split", p, "vmdk", "vmdk", big=True,
        files=[(p, "image"), (d / "vmdk-split-s001.vmdk", "extent"),
               (d / "vmdk-split-s002.vmdk", "extent")])

    # VMDK snapshot over the sparse one; qemu records the name as given (run in d).
    parent = out["vmdk-sparse"].path
    _run(qemu_img, "create", "-q", "-f", "vmdk", "-b", parent.name, "-F", "vmdk",
         "vmdk-snap.vmdk", cwd=d)
    child = d / "vmdk-snap.vmdk"
    _run(qemu_io, "-f", "vmdk", "-c", write, child)
    info = qemu_info(child)
    add("vmdk-snapshot", child, "vmdk", "vmdk",
        files=[(child, "child"), (parent, "parent")],
        ids={"vmdk.content_id": f"{info['cid']:08x}",
             "vmdk.parent_content_id": f"{info['parent-cid']:08x}"},
        chain_ids=[(f"{info['cid']:08x}", f"{info['parent-cid']:08x}"),
                   (out["vmdk-sparse"].ids["vmdk.content_id"], "")])

    for name, opts in (("vhd-fixed", ("-o", "subformat=fixed")), ("vhd-dynamic", ())):
        p = convert(f"{name}.vhd", "vpc", *opts)
        add(name, p, "vhd", "vpc", ids={"vhd.identifier": str(vdisk_children.vhd_identifier(p))})
    for name, opts in (("vhdx-fixed", ("-o", "subformat=fixed")), ("vhdx-dynamic", ())):
        p = convert(f"{name}.vhdx", "vhdx", *opts)
        add(name, p, "vhdx", "vhdx",
            ids={"vhdx.identifier": str(vdisk_children.vhdx_data_write_guid(p))})

    # VHD and VHDX children: qemu-made dynamic disks of the parent's size, then rewritten.
    for name, fmt, qfmt, parent_name, opts in (
        ("vhd-diff", "vhd", "vpc", "vhd-dynamic", ()),
        ("vhdx-diff", "vhdx", "vhdx", "vhdx-dynamic", ("-o", "block_size=1M")),
    ):
        parent = out[parent_name].path
        child = d / f"{name}.{fmt}"
        size = out[parent_name].oracle.stat().st_size
        _run(qemu_img, "create", "-q", "-f", qfmt, *opts, child, str(size))
        _run(qemu_io, "-f", qfmt, "-c", write, child)
        make = vdisk_children.make_vhd_child if fmt == "vhd" else vdisk_children.make_vhdx_child
        make(child, parent, parent.name)
        oracle = d / f"{name}.oracle.raw"
        shutil.copy(out[parent_name].oracle, oracle)
        _run(qemu_io, "-f", "raw", "-c", write, oracle)
        parent_id = out[parent_name].ids[f"{fmt}.identifier"]
        add(name, child, fmt, qfmt, oracle=oracle,
            files=[(child, "child"), (parent, "parent")],
            ids={f"{fmt}.parent_identifier": parent_id},
            chain_ids=[("", parent_id), (parent_id, "")])

    for name, fmt, opts in (
        ("qcow-v1", "qcow", ()),
        ("qcow2-v2", "qcow2", ("-o", "compat=0.10")),
        ("qcow2-v3", "qcow2", ()),
    ):
        p = convert(f"{name}.{fmt}", fmt, *opts)
        add(name, p, fmt, fmt, ids={"qcow.version": name[-1]})
    parent = out["qcow2-v3"].path
    _run(qemu_img, "create", "-q", "-f", "qcow2", "-b", parent.name, "-F", "qcow2",
         "qcow2-overlay.qcow2", cwd=d)
    child = d / "qcow2-overlay.qcow2"
    _run(qemu_io, "-f", "qcow2", "-c", write, child)
    add("qcow2-overlay", child, "qcow2", "qcow2",
        files=[(child, "child"), (parent, "parent")],
        ids={"qcow.backing_file": parent.name})
    return out


NAMES = [
    "vmdk-sparse", "vmdk-stream", "vmdk-flat", "vmdk-split", "vmdk-snapshot",
    "vhd-fixed", "vhd-dynamic", "vhd-diff", "vhdx-fixed", "vhdx-dynamic", "vhdx-diff",
    "qcow-v1", "qcow2-v2", "qcow2-v3", "qcow2-overlay",
]
CHAINS = ["vmdk-snapshot", "vhd-diff", "vhdx-diff", "qcow2-overlay"]

# Oracle results depend only on the oracle's bytes: computed once per distinct content
# (most conversions are byte-identical to the base), and once per file for sha256sum.
_DIGESTS: dict[Path, str] = {}
_TSK: dict[str, tuple[set[str], dict[str, str]]] = {}
_ICAT: dict[tuple[str, str], str] = {}


def _sha256sum(path: Path) -> str:
    if path not in _DIGESTS:
        _DIGESTS[path] = oracles.file_digest(path, "sha256sum")
    return _DIGESTS[path]


def _content(v: VDisk) -> str:
    # The 2 GiB split disk is not hashed whole (about 6 s of sha256sum here).
    return str(v.oracle) if v.big else f"{v.oracle.stat().st_size}:{_sha256sum(v.oracle)}"


def _tsk(v: VDisk) -> tuple[set[str], dict[str, str]]:
    key = _content(v)
    if key not in _TSK:
        _TSK[key] = (oracles.fls_tree(v.oracle, NTFS)[0], oracles.fls_streams(v.oracle, NTFS))
    return _TSK[key]


def _icat(v: VDisk, address: str) -> str:
    key = (_content(v), address)
    if key not in _ICAT:
        _ICAT[key] = oracles.icat_sha256(v.oracle, NTFS, address)
    return _ICAT[key]


def _cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_chains_differ_from_their_parents(vdisks):
    """The fixtures are what they claim: each child changes bytes its parent holds."""
    for name in CHAINS:
        v = vdisks[name]
        parent = next(p for p, role in v.files if role == "parent")
        parent_vd = next(x for x in vdisks.values() if x.path == parent)
        assert _sha256sum(v.oracle) != _sha256sum(parent_vd.oracle), name


@pytest.mark.parametrize("name", NAMES)
def test_info_equals_oracle(vdisks, name):
    v = vdisks[name]
    code, output = _cli("info", v.path, "--json")
    assert code == 0, output
    src = json.loads(output)["source"]
    assert src["format"] == v.fmt
    assert src["size"] == v.oracle.stat().st_size
    volumes = json.loads(output)["volumes"]
    assert [(x["offset"] // 512, x["size"] // 512) for x in volumes] == [
        (s, n) for s, n, _ in oracles.mmls(v.oracle)
    ]
    assert [(c["path"], c["size"], c["role"]) for c in src["chain"]] == [
        (str(p), p.stat().st_size, role) for p, role in v.files
    ]
    for key, value in v.ids.items():
        assert src["details"][key] == value, key
    for item, (identifier, parent_id) in zip(src["chain"], v.chain_ids, strict=False):
        if identifier:
            assert item["identifier"] == identifier
        assert (item["parent_identifier"] or "") == parent_id


def test_info_text_shows_chain_and_identifiers(vdisks):
    v = vdisks["vhdx-diff"]
    code, output = _cli("info", v.path)
    assert code == 0, output
    parent_id = v.ids["vhdx.parent_identifier"]
    assert "format vhdx" in output
    assert f"child {v.path}" in output and f"parent {v.files[1][0]}" in output
    assert f"parent id {parent_id}" in output


@pytest.mark.parametrize("name", NAMES)
def test_ls_equals_fls(vdisks, name):
    v = vdisks[name]
    code, output = _cli("ls", v.path, "-r", "--json", "--volume", "3")
    assert code == 0, output
    paths = {json.loads(line)["path"] for line in output.splitlines()}
    assert paths == _tsk(v)[0]


@pytest.mark.parametrize("name", NAMES)
def test_collect_equals_icat_and_disk_hash_equals_sha256sum(vdisks, name, tmp_path):
    import zipfile

    v = vdisks[name]
    out = tmp_path / "c.zip"
    code, output = _cli(
        "collect", v.path, "-o", out, "--json", "--quiet", "--store", "--rule", "registry-and-mft",
        "--hash", "sha256", "--disk-hash", "none" if v.big else "sha256",
    )
    assert code == 0, output
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]
        acq = json.loads(zf.read("acquisition.json"))
    addresses = _tsk(v)[1]
    assert len(items) > 5
    for item in items:
        assert item["volume"] == 3 and item["outcome"] in ("collected", "duplicate"), item
        key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
        assert item["hashes"]["sha256"] == _icat(v, addresses[key]), key
    if not v.big:
        assert acq["disk_hash"]["digests"]["sha256"] == _sha256sum(v.oracle)
        # ... and every file as received, hashed during the same pass.
        chain = acq["disk_hash"]["chain_files"]
        assert [(c["path"], c["role"], c["size"]) for c in chain] == [
            (str(p), role, p.stat().st_size) for p, role in v.files
        ]
        for item, (path, _) in zip(chain, v.files, strict=True):
            assert item["digests"]["sha256"] == _sha256sum(path), path
            assert item["bytes_hashed"] == path.stat().st_size and item["error"] is None


def test_split_vmdk_second_extent_is_read(vdisks):
    v = vdisks["vmdk-split"]
    with open_source(v.path) as src, v.oracle.open("rb") as oracle:
        oracle.seek(SPLIT_MARK - 4096)
        assert src.stream.read_at(SPLIT_MARK - 4096, 1 << 20) == oracle.read(1 << 20)
        assert b"\x5a" * 65536 in src.stream.read_at(SPLIT_MARK, 65536)


def test_hash_of_a_chain_is_the_virtual_disk(vdisks):
    v = vdisks["qcow2-overlay"]
    code, output = _cli("hash", v.path, "--hash", "sha256", "--json", "-q")
    assert code == 0, output
    data = json.loads(output)
    assert data["digests"]["sha256"] == _sha256sum(v.oracle)
    assert [(c["path"], c["digests"]["sha256"]) for c in data["chain_files"]] == [
        (str(p), _sha256sum(p)) for p, _ in v.files
    ]


def test_concurrent_disk_hash_uses_the_given_parent(vdisks, tmp_path):
    """--disk-hash-mode concurrent reopens the source: over the same parent (given)."""
    import zipfile

    v = vdisks["vhdx-diff"]
    lone = tmp_path / "alone" / v.path.name
    lone.parent.mkdir()
    shutil.copy(v.path, lone)
    out = tmp_path / "c.zip"
    code, output = _cli(
        "collect", lone, "--parent", v.files[1][0], "-o", out, "--json", "--quiet",
        "--rule", "registry-and-mft", "--disk-hash", "sha256", "--disk-hash-mode", "concurrent",
    )
    assert code == 0, output
    with zipfile.ZipFile(out) as zf:
        acq = json.loads(zf.read("acquisition.json"))
    assert acq["disk_hash"]["digests"]["sha256"] == _sha256sum(v.oracle)
    assert [c["digests"]["sha256"] for c in acq["disk_hash"]["chain_files"]] == [
        _sha256sum(lone), _sha256sum(v.files[1][0])
    ]


def test_raw_image_has_no_chain_hashes(unpacked, tmp_path):
    """A raw image's one file is the disk: its hash is the disk hash, not read twice."""
    import zipfile

    out = tmp_path / "c.zip"
    code, output = _cli("collect", unpacked("gpt-ntfs.raw"), "-o", out, "--json", "--quiet",
                        "--rule", "registry-and-mft", "--disk-hash", "sha256")
    assert code == 0, output
    with zipfile.ZipFile(out) as zf:
        assert "chain_files" not in json.loads(zf.read("acquisition.json"))["disk_hash"]


# -- parents given or missing ------------------------------------------------------
def _alone(v: VDisk, tmp_path: Path) -> Path:
    lone = tmp_path / v.path.name
    shutil.copy(v.path, lone)
    return lone


def _one_line_error(code: int, output: str) -> str:
    assert code == 2, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    return output


@pytest.mark.parametrize("name", CHAINS)
def test_missing_parent_names_the_expected_file(vdisks, name, tmp_path):
    v = vdisks[name]
    message = _one_line_error(*_cli("info", _alone(v, tmp_path)))
    assert v.files[1][0].name in message and "--parent" in message


@pytest.mark.parametrize("name", CHAINS)
def test_parent_given_with_option(vdisks, name, tmp_path):
    v = vdisks[name]
    lone = _alone(v, tmp_path)
    code, output = _cli("info", lone, "--json", "--parent", v.files[1][0])
    assert code == 0, output
    chain = json.loads(output)["source"]["chain"]
    assert [c["path"] for c in chain] == [str(lone), str(v.files[1][0])]
    code, output = _cli("hash", lone, "--parent", v.files[1][0], "--hash", "sha256", "--json", "-q")
    assert code == 0, output
    assert json.loads(output)["digests"]["sha256"] == _sha256sum(v.oracle)
    # image --parent: the raw image written is the chain's media (= qemu-img's conversion)
    raw = tmp_path / "image.raw"
    code, output = _cli("image", lone, "--parent", v.files[1][0], "-o", raw, "--json", "-q")
    assert code == 0, output
    assert _sha256sum(raw) == _sha256sum(v.oracle)


@pytest.mark.parametrize(("name", "impostor"), [
    ("vhdx-diff", "vhdx-fixed"), ("vhd-diff", "vhd-fixed"), ("vmdk-snapshot", "vmdk-stream"),
])
def test_wrong_parent_is_refused(vdisks, name, impostor, tmp_path):
    """A parent under the expected name, or given, whose identifier is not the recorded one."""
    v = vdisks[name]
    lone = _alone(v, tmp_path)
    shutil.copy(vdisks[impostor].path, tmp_path / v.files[1][0].name)
    message = _one_line_error(*_cli("info", lone))
    assert "wrong parent" in message
    message = _one_line_error(*_cli("ls", lone, "--parent", vdisks[impostor].path))
    assert "wrong parent" in message


# -- damaged input -----------------------------------------------------------------
@pytest.mark.parametrize(("name", "keep"), [
    ("vmdk-sparse", 0.5), ("vmdk-stream", 0.5), ("vhdx-dynamic", 0.5),
])
def test_truncated_is_one_line_exit_2(vdisks, name, keep, tmp_path):
    v = vdisks[name]
    cut = tmp_path / v.path.name
    with v.path.open("rb") as f:
        cut.write_bytes(f.read(int(v.path.stat().st_size * keep)))
    message = _one_line_error(*_cli("info", cut))
    assert "truncated" in message


def test_damaged_vhdx_header_is_one_line_exit_2(vdisks, tmp_path):
    v = vdisks["vhdx-dynamic"]
    bad = tmp_path / v.path.name
    shutil.copy(v.path, bad)
    with bad.open("r+b") as f:
        for header in (64 << 10, 128 << 10):  # both headers: their CRC-32C no longer holds
            f.seek(header + 16)
            f.write(b"\xff" * 64)
    message = _one_line_error(*_cli("info", bad))
    assert "VHDX" in message


def test_lone_split_extent_names_the_descriptor(vdisks, tmp_path):
    v = vdisks["vmdk-split"]
    for extent in (v.files[1][0], v.files[2][0]):
        message = _one_line_error(*_cli("info", extent))
        assert str(v.path) in message and "descriptor" in message

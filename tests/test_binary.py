"""The single-file executable (scripts/build-binary.sh) on the fixtures, from an empty environment.

Skipped unless dist/selective-imager was built: building takes ~40 s with its build venv in
place (~2 min the first time), too slow for the suite. Where the test may (root and
unshare(1)), the executable runs in a mount namespace with the Python installation, the
project's venv and the build venv hidden under empty tmpfs mounts, so it cannot lean on
any of them. Oracles: mmls and the builder's truth for ``info``, sha256sum for the disk
hash, icat for every collected item, Info-ZIP ``unzip -t`` for the container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests import oracles
from tests.conftest import ROOT, need_tool

BINARY = ROOT / "dist" / "selective-imager"

pytestmark = pytest.mark.skipif(
    not BINARY.is_file(),
    reason="dist/selective-imager not built: run scripts/build-binary.sh (about 40 s-2 min)",
)


def _hidden_dirs() -> list[str]:
    """The Python installations the executable must not need."""
    dirs = {sys.base_prefix, str(ROOT / ".venv"), str(ROOT / "build" / "venv")}
    return sorted(d for d in dirs if os.path.isdir(d) and d not in ("/", "/usr"))


def _can_hide() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def run_binary(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    """``env -i dist/selective-imager ARGS`` with Python hidden when possible."""
    command = ["env", "-i", str(BINARY), *args]
    if _can_hide():
        mounts = " && ".join(f"mount -t tmpfs none '{d}'" for d in _hidden_dirs())
        command = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, env={})


@pytest.fixture(scope="module")
def image(unpacked, tmp_path_factory):
    work = tmp_path_factory.mktemp("binary")
    path = work / "gpt-ntfs.raw"
    shutil.copyfile(unpacked("gpt-ntfs.raw"), path)
    return path


def test_version_without_python(image):
    result = run_binary("--version", cwd=image.parent)
    assert result.returncode == 0, result.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert result.stdout.strip() == f"selective-imager {project['version']}"


def test_info_json_equals_mmls_and_truth(image, truth):
    result = run_binary("info", "--json", image.name, cwd=image.parent)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    facts = truth("gpt-ntfs")
    assert data["source"]["size"] == facts["size"] == image.stat().st_size
    assert data["partition_table"]["disk_guid"] == facts["disk_guid"]
    sector = facts["sector_size"]
    listed = {(start * sector, length * sector) for start, length, _ in oracles.mmls(image)}
    for part in facts["partitions"]:
        volume = next(v for v in data["volumes"] if v["index"] == part["index"])
        assert (volume["offset"], volume["size"]) in listed
        assert volume["offset"] == part["start_sector"] * sector
        assert volume["guid"] == part["guid"]
        fs = volume["filesystem"]
        assert (fs or {}).get("type") == part["filesystem"]
        assert (fs or {}).get("label") == part["label"]


def test_collect_and_verify_without_python(image, truth):
    out = image.parent / "out.zip"
    result = run_binary(
        "collect", image.name, "-o", out.name, "--rule", "triage", "--json", "--quiet",
        cwd=image.parent,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete"
    assert summary["disk_hash"]["digests"]["sha256"] == oracles.file_digest(image, "sha256sum")

    # Every item as icat reads it: the rule library and the bindings are inside the binary.
    parts = {p["index"]: p["start_sector"] for p in truth("gpt-ntfs")["partitions"]}
    addresses = {v: oracles.fls_streams(image, parts[v]) for v in (1, 3)}
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]
    assert {i["volume"] for i in items} >= {3}
    for item in items:
        key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
        expected = oracles.icat_sha256(image, parts[item["volume"]], addresses[item["volume"]][key])
        assert item["hashes"]["sha256"] == expected, key

    unzip = subprocess.run([need_tool("unzip"), "-tq", str(out)], capture_output=True, text=True)
    assert unzip.returncode == 0, unzip.stdout

    verified = run_binary("verify", out.name, cwd=image.parent)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK:")

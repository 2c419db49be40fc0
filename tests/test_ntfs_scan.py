"""The sequential $MFT scan reaches exactly what the directory walk reaches."""

from __future__ import annotations

import pytest

from selective_imager.discovery import open_disk
from selective_imager.selection.matcher import match_all
from selective_imager.selection.rules import RuleSet, parse_rule_text
from tests import oracles


def ntfs_volumes(disk):
    return [v for v in disk.volumes if v.filesystem is not None and v.report.filesystem.type == "ntfs"]


@pytest.mark.parametrize("name", ["gpt-ntfs.raw", "mbr-extended.raw", "ntfs-noparts.raw"])
def test_scan_equals_walk_on_fixtures(unpacked, name):
    with open_disk(unpacked(name)) as disk:
        vols = ntfs_volumes(disk)
        assert vols
        for vol in vols:
            fs = vol.filesystem
            walked = {(e.path, e.entry, e.is_directory) for e in fs.walk()}
            scanned = {(e.path, e.entry, e.is_directory) for e in fs.scan()}
            assert scanned == walked
            # Both equal what The Sleuth Kit lists (fls -r -p), path and MFT entry: an
            # oracle outside the tool, so a defect shared by walk and scan shows.
            paths, _, addr = oracles.fls_tree(unpacked(name), vol.report.volume.offset // 512)
            assert {(p, e) for p, e, _ in scanned} == {(p, addr[p]) for p in paths}


@pytest.mark.parametrize("name", ["ntfs-ptrn", "ntfs-2m"])
def test_scan_equals_walk_on_windows_images(shared, name):
    with open_disk(shared(f"ntfs-samples/{name}.raw")) as disk:
        (vol,) = ntfs_volumes(disk)
        fs = vol.filesystem
        assert {(e.path, e.entry) for e in fs.scan()} == {(e.path, e.entry) for e in fs.walk()}


def test_scan_and_walk_strategies_give_identical_matches(unpacked):
    rule = parse_rule_text(
        "name: everything-lnk\ntitle: t\ntargets:\n"
        "  - name: all\n    paths: ['**/*.lnk', '**/*:Zone.Identifier', '**/NTUSER.DAT']\n"
    )
    rs = RuleSet(requested=(rule.name,), rules={rule.name: rule}, roots={rule.name: (rule.name,)})
    with open_disk(unpacked("gpt-ntfs.raw")) as disk:
        fs = disk.volume(3).filesystem
        walk = match_all(fs, rs, strategy="walk")
        scan = match_all(fs, rs, strategy="scan")
        assert walk.matches and not walk.errors and not scan.errors
        assert sorted(scan.matches, key=lambda m: (m.entry.path, m.stream)) == sorted(
            walk.matches, key=lambda m: (m.entry.path, m.stream)
        )
        assert any(m.stream == "Zone.Identifier" for m in scan.matches)

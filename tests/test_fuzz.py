"""A seeded corruption campaign over every fixture kind, bounded in time.

tests/fuzz_driver.py corrupts a fixture at random (MFT records, INDX blocks, boot
sectors, GPT/MBR, BitLocker metadata, E01 sections, truncation at random offsets) and
runs ``info``, ``ls -r``, ``collect`` and ``verify`` on each case, in a child process
with a per-command watchdog. Invariants, for every case:

* no traceback and no hang (the watchdog ends the child with a thread dump);
* the exit code matches the status: 0 only for a ``complete`` run with every item
  intact, 1 when anything failed or was not read;
* every file of the builder's truth is either stored with the hash The Sleuth Kit's
  ``icat`` gives for the same corrupted image (or, where TSK cannot read it, the
  builder's hash) or named in the manifest or log with a reason; a file that ``fls``
  no longer lists on the corrupted image is not expected.

``SELECTIVE_IMAGER_FUZZ_CASES`` and ``SELECTIVE_IMAGER_FUZZ_SEED`` change the size and
seed (defaults: up to 36 cases, seed 20261201, cases stop starting after 40 s, so a
loaded machine runs fewer); ``SELECTIVE_IMAGER_FUZZ_DUMP=FILE`` keeps every case's
record (what was corrupted, each command's exit code, the manifest and log).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, need_tool

SEED = int(os.environ.get("SELECTIVE_IMAGER_FUZZ_SEED", "20261201"))
CASES = int(os.environ.get("SELECTIVE_IMAGER_FUZZ_CASES", "36"))
BUDGET = 40.0
ENV = {"TZ": "UTC", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
CHECKED = 12  # truth files per fixture whose content is checked against icat


def _rule(tmp: Path, name: str, paths: list[str]) -> str:
    rule = tmp / f"{name}.yaml"
    rule.write_text(
        f"name: fuzz-{name}\ntitle: t\ntargets:\n  - name: t\n    paths: {json.dumps(paths)}\n"
    )
    return str(rule)


def _plan(unpacked, truth, tmp: Path) -> tuple[dict, dict]:
    """Driver plan and, per fixture, (TSK sector offset, checked truth files)."""
    noparts = truth("ntfs-noparts")["volumes"]["0"]["files"]
    mbr = truth("mbr-extended")["volumes"]["5"]["files"]
    gpt = [f for f in truth("gpt-ntfs")["volumes"]["3"]["files"] if f["size"]][:CHECKED]
    bl = truth("gpt-bitlocker")
    bl_part = bl["bitlocker"]["partition_offset"]
    fixtures = {
        "ntfs-noparts": {"path": str(unpacked("ntfs-noparts.raw")), "volume": 0, "index": 0,
                         "kinds": ["mft-record", "index-block", "boot-sector", "truncate"],
                         "files": noparts, "offset": 0},
        "mbr-extended": {"path": str(unpacked("mbr-extended.raw")), "volume": 36864 * 512,
                         "index": 3, "table": [446, 512],
                         "kinds": ["partition-table", "mft-record", "truncate"],
                         "files": mbr, "offset": 36864},
        "gpt-ntfs": {"path": str(unpacked("gpt-ntfs.raw")), "volume": 20480 * 512, "index": 3,
                     "table": [512, 34 * 512],
                     "kinds": ["partition-table", "index-block", "mft-record", "truncate"],
                     "files": gpt, "offset": 20480},
        "gpt-bitlocker": {"path": str(unpacked("gpt-bitlocker.raw")), "volume": bl_part,
                          "index": 2, "table": [512, 34 * 512],
                          "fve": [bl_part + o for o in bl["bitlocker"]["metadata_offsets"]],
                          "kinds": ["bitlocker-metadata", "partition-table", "truncate"],
                          "creds": ["--password-file",
                                    str(FIXTURES / "gpt-bitlocker.password.txt")],
                          "files": bl["files"], "offset": None},
        "e01": {"path": str(FIXTURES / "gpt-ntfs.E01"),
                "segments": [str(FIXTURES / "gpt-ntfs.E01"), str(FIXTURES / "gpt-ntfs.E02")],
                "volume": 20480 * 512, "index": 3, "kinds": ["e01-section"], "files": gpt,
                "offset": 20480},
    }
    for name, spec in fixtures.items():
        spec["rule"] = _rule(tmp, name, [f["path"] for f in spec["files"]])
        # MFT records worth corrupting: the system files' and the truth files' own.
        spec["mft_entries"] = [*range(12), *(f["mft_entry"] for f in spec["files"] if "mft_entry" in f)]
    order = [(name, kind) for name, spec in fixtures.items() for kind in spec["kinds"]]
    cases = [[*order[i % len(order)], SEED + i] for i in range(CASES)]
    plan = {"fixtures": {k: {x: y for x, y in v.items() if x != "files"}
                         for k, v in fixtures.items()}, "cases": cases}
    return plan, fixtures


def _fls(image: str, offset: int) -> dict[str, str] | None:
    """Allocated path -> address per ``fls -r -p`` on the corrupted image (None if it fails)."""
    proc = subprocess.run([need_tool("fls"), "-r", "-p", "-o", str(offset), image],
                          capture_output=True, text=True, env=ENV, timeout=60, check=False)
    if proc.returncode != 0:
        return None  # TSK cannot read the volume: it cannot say what is gone
    out = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S)/(\S) (\* )?(\S+):\t(.*)$", line)
        if m and not m.group(3):
            out.setdefault(m.group(5), m.group(4).split("-")[0])
    return out


def _icat(image: str, offset: int, addr: str) -> str | None:
    proc = subprocess.run([need_tool("icat"), "-o", str(offset), image, addr],
                          capture_output=True, env=ENV, timeout=60, check=False)
    return hashlib.sha256(proc.stdout).hexdigest() if proc.returncode == 0 else None


def _named(result: dict, f: dict, spec: dict) -> bool:
    """Whether the manifest or log says why ``f`` is not stored."""
    log = result.get("log", "")
    acq = result.get("acquisition", {})
    if f["path"] in log:
        return True
    if acq.get("volume_errors") or acq.get("unreadable"):
        return True  # the volume (or a directory, or a record) is named as unread
    for line in log.splitlines():
        event = json.loads(line)
        if event.get("event") in ("volume-skipped", "volume-failed") and event.get(
            "volume"
        ) in (spec["index"], None):
            return True
        if event.get("entry") is not None and event.get("entry") == f.get("mft_entry"):
            return True
    return False


def test_corruption_campaign(unpacked, truth, tmp_path):
    plan, fixtures = _plan(unpacked, truth, tmp_path)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    work = tmp_path / "cases"
    work.mkdir()
    driver = Path(__file__).with_name("fuzz_driver.py")
    proc = subprocess.run(
        [sys.executable, str(driver), str(plan_file), str(work), "--budget", str(BUDGET),
         "--case-timeout", "30"],
        capture_output=True, text=True, timeout=BUDGET + 120, check=False,
    )
    assert proc.returncode == 0, f"driver ended ({proc.returncode}): hang or crash\n{proc.stderr[-3000:]}"
    if os.environ.get("SELECTIVE_IMAGER_FUZZ_DUMP"):
        Path(os.environ["SELECTIVE_IMAGER_FUZZ_DUMP"]).write_text(proc.stdout)
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    summary = lines.pop()
    assert summary["done"] == len(lines) and lines
    problems: list[str] = []
    for r in lines:
        label = f"{r['fixture']}/{r['kind']}/{r['seed']} ({r['what']})"
        for cmd in ("info", "ls", "collect", "verify"):
            c = r.get(cmd)
            if c is None:
                continue
            if c["crashed"] or c["traceback"]:
                problems.append(f"{label}: {cmd} traceback:\n{c['traceback'][-1500:]}")
            if c["code"] not in (0, 1, 2, 3):
                problems.append(f"{label}: {cmd} exit {c['code']}")
        acq = r.get("acquisition")
        if acq is None:
            if r["collect"]["code"] in (0, 1):
                problems.append(f"{label}: collect exit {r['collect']['code']} without a container")
            continue
        counts = acq["counts"]
        lost = counts.get("failed", 0) + counts.get("partial", 0)
        honest_ok = acq["status"] == "complete" and not lost and not acq["volume_errors"] and not acq.get("unreadable")
        if (r["collect"]["code"] == 0) != honest_ok:
            problems.append(f"{label}: collect exit {r['collect']['code']} but status "
                            f"{acq['status']}, counts {counts}, volume errors {acq['volume_errors']}")
        spec = fixtures[r["fixture"]]
        items = {}
        for item in r.get("manifest", []):
            items.setdefault(item["path"], item)
        listed = _fls(r["image"], spec["offset"]) if spec["offset"] is not None else None
        for f in spec["files"]:
            item = items.get(f["path"])
            if item is None:
                if listed is not None and f["path"] not in listed:
                    continue  # gone on the corrupted image for TSK too
                if not _named(r, f, spec):
                    problems.append(f"{label}: {f['path']} neither stored nor named")
                continue
            if item["outcome"] in ("collected", "duplicate"):
                got = item["hashes"]["sha256"]
                oracle = None
                if listed is not None and f["path"] in listed:
                    oracle = _icat(r["image"], spec["offset"], listed[f["path"]])
                if got not in (oracle, f["sha256"]):
                    problems.append(f"{label}: {f['path']} stored with {got[:12]}, icat "
                                    f"{(oracle or '-')[:12]}, truth {f['sha256'][:12]}")
            elif not item.get("error"):
                problems.append(f"{label}: {f['path']} {item['outcome']} without a reason")
    print(f"fuzz campaign: {summary['done']} cases in {summary['seconds']} s (seed {SEED})")
    assert not problems, "\n".join(problems[:20])

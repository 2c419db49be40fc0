#!/usr/bin/env python3
"""KapeTriage on the bench disk: what ``--rule KapeTriage --rule-path`` selects, against
the converted rules of ``rules import`` and an independent reading of the .tkape files
(tests/kape_oracle.py over ``fls -r -p`` of the system volume).

    .venv/bin/python bench/kape_selection.py [DISK] [--targets DIR]

DISK defaults to bench/.cache/images/win1g.raw (``bench/run --only collect`` builds it).
Writes bench/results/kape-triage-selection.md and .json. Not a timing: a selection check.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.kape_oracle import entries, fls_files, select  # noqa: E402

CLI = str(Path(sys.executable).with_name("selective-imager"))
DEFAULT_TARGETS = ROOT.parent / "shared" / "data" / "rule-corpora" / "kapefiles" / "Targets"


def dry_run(disk: Path, *rule_args: str) -> list[dict]:
    done = subprocess.run([CLI, "collect", str(disk), "--dry-run", "--json", *rule_args],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)["items"]


def item_set(items: list[dict]) -> set[tuple[str, str]]:
    return {(str(i["volume_label"] if "volume_label" in i else i["volume"]),
             i["path"] + (f":{i['stream']}" if i["stream"] else "")) for i in items}


def ntfs_partitions(disk: Path) -> list[tuple[int, int]]:
    """(slot index as in our labels p<N>, start sector) of every NTFS/basic data row."""
    out = subprocess.run(["mmls", str(disk)], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s+(\S+)\s+(\d+)\s+\d+\s+\d+\s+(.*)$", line)
        if m and m.group(1) not in ("Meta", "-------"):
            rows.append((int(m.group(2)), m.group(3)))
    found = []
    for n, (start, _desc) in enumerate(rows, 1):
        fs = subprocess.run(["fsstat", "-t", "-o", str(start), str(disk)],
                            capture_output=True, text=True).stdout.strip()
        if fs == "ntfs":
            found.append((n, start))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("disk", nargs="?", default=str(ROOT / "bench" / ".cache" / "images" / "win1g.raw"))
    ap.add_argument("--targets", default=str(DEFAULT_TARGETS))
    args = ap.parse_args()
    disk, targets = Path(args.disk), Path(args.targets)
    by_name = dry_run(disk, "--rule", "KapeTriage", "--rule-path", str(targets))
    with tempfile.TemporaryDirectory() as tmp:
        report = subprocess.run([CLI, "rules", "import", str(targets), "-o", tmp, "--json"],
                                capture_output=True, text=True)
        if report.returncode not in (0, 1):
            sys.exit(f"rules import failed: {report.stderr.strip()}")
        converted = dry_run(disk, "--rule", str(Path(tmp) / "kape-kape-triage.yaml"))
    reached, skipped = entries(targets, "KapeTriage")
    parts = ntfs_partitions(disk)
    if len(parts) != 1:
        sys.exit(f"expected one NTFS volume on {disk}, found {parts}")
    slot, start = parts[0]
    oracle = select(reached, fls_files(disk, start))
    a, b = item_set(by_name), item_set(converted)
    label = next(iter({v for v, _ in a} or {str(slot)}))
    c = {(label, p) for p in oracle}
    result = {
        "disk": disk.name,
        "targets": targets.name,
        "tkape_entries_reached": len(reached),
        "entries_not_evaluated_by_the_oracle": skipped,
        "ntfs_volume": {"slot": slot, "start_sector": start},
        "by_name": len(a), "converted": len(b), "oracle": len(c),
        "by_name_equals_converted": a == b,
        "by_name_equals_oracle": a == c,
        "only_by_name": sorted(map(list, a - c)), "only_oracle": sorted(map(list, c - a)),
        "only_converted": sorted(map(list, b - a)), "not_in_converted": sorted(map(list, a - b)),
    }
    out = ROOT / "bench" / "results" / "kape-triage-selection"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# KapeTriage on the bench disk: by name, converted, and an independent reading",
        "",
        f"Disk `{disk.name}` (bench/workloads.py), KapeFiles targets "
        f"`../shared/data/rule-corpora/kapefiles/{targets.name}`; NTFS volume at sector {start}.",
        "",
        "| selection | items |",
        "|---|---|",
        f"| `collect --dry-run --rule KapeTriage --rule-path Targets` | {len(a)} |",
        f"| `rules import Targets` then `--rule kape-kape-triage.yaml` | {len(b)} |",
        f"| tests/kape_oracle.py ({len(reached)} .tkape entries) over `fls -r -p` | {len(c)} |",
        "",
        f"By name = converted: **{a == b}**; by name = independent reading: **{a == c}**.",
        f"Entries the reading does not evaluate: {skipped or 'none'}.",
    ]
    for key in ("only_by_name", "only_oracle", "only_converted", "not_in_converted"):
        if result[key]:
            lines += ["", f"{key}:", *(f"- `{v}/{p}`" for v, p in result[key][:50])]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Start-up of ``--version``: the onefile and onedir executables and the venv, side by side.

Standalone (not in ``bench/run``): build first with ``scripts/build-binary.sh`` and
``scripts/build-binary.sh --onedir``, then ``python3 bench/binary_startup.py [--rounds 5]``.
Rounds are interleaved (onefile, onedir, venv, onefile...), each run from ``env -i`` and
measured with ``os.wait4`` (bench/measure.py): wall and user+sys CPU, median per variant.
The onefile's CPU is mostly unpacking its archive into a fresh temp dir at every start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "onefile": ROOT / "dist" / "selective-imager",
    "onedir": ROOT / "dist" / "onedir" / "selective-imager" / "selective-imager",
    "venv": ROOT / ".venv" / "bin" / "selective-imager",
}


def size_of(path: Path) -> int:
    """Bytes of the file, or of the onedir's whole directory."""
    if path.parent.name == "selective-imager" and path.parent.parent.name == "onedir":
        return sum(f.lstat().st_size for f in path.parent.rglob("*") if not f.is_symlink() and f.is_file())
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    present = {k: v for k, v in VARIANTS.items() if v.is_file()}
    if not present:
        sys.exit("nothing built: run scripts/build-binary.sh (and --onedir)")
    walls: dict[str, list[float]] = {k: [] for k in present}
    cpus: dict[str, list[float]] = {k: [] for k in present}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, exe in present.items():
                r = run(["env", "-i", str(exe), "--version"], log=Path(tmp) / f"{name}.log")
                if r.rc != 0:
                    sys.exit(f"{name}: exit {r.rc}, see {tmp}/{name}.log")
                walls[name].append(r.wall)
                cpus[name].append(r.cpu)
    load = os.getloadavg()[0]
    print(f"--version, median of {args.rounds} interleaved rounds (load average {load:.2f})")
    print("| variant | size | wall | user+sys CPU |")
    print("|---|---|---|---|")
    for name, exe in present.items():
        size = "-" if name == "venv" else f"{size_of(exe) / 2**20:.0f} MiB"
        print(f"| {name} | {size} | {statistics.median(walls[name]):.3f} s "
              f"| {statistics.median(cpus[name]):.3f} s |")


if __name__ == "__main__":
    main()

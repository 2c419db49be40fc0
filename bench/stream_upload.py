"""``collect --upload``: local only, streamed with a local copy, and ``--no-local-copy``.

Standalone (not in ``bench/run``), as root (the test sshd needs it):
``python3 bench/stream_upload.py [--size-mib 256] [--rounds 3]``. It builds an ext4 image
(``mkfs.ext4 -d``) holding one random file of ``--size-mib`` (stored: random data does not
deflate), starts the tests' OpenSSH server on 127.0.0.1 (``tests/test_sftp.py``: the
server and its encryption share the same CPUs), and runs the three collections in
interleaved rounds, measured by bench/measure.py (wall, CPU, peak RSS through GNU time).
Every upload's remote file is checked: its SHA-256 (hashlib) equals the summary's, and for
the streamed one the local container's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from measure import run

from tests.test_sftp import Sshd

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / ".venv" / "bin" / "selective-imager"
RULE = "name: data\ntitle: t\ntargets:\n  - name: d\n    paths: ['data/*']\n"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def build(work: Path, size_mib: int) -> tuple[Path, Path]:
    tree = work / "tree" / "data"
    tree.mkdir(parents=True)
    with open(tree / "big.bin", "wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1 << 20))
    image = work / "ext4.img"
    with open(image, "wb") as fh:
        fh.truncate((size_mib + 64) << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(work / "tree"), str(image)], check=True)
    (tree / "big.bin").unlink()
    rule = work / "data.yaml"
    rule.write_text(RULE)
    return image, rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image, rule = build(work, args.size_mib)
        (work / "srv").mkdir()
        server = Sshd(work / "srv")
        upload = [
            "--known-hosts", str(work / "srv" / "known_hosts"),
            "--upload-key", str(work / "srv" / "client"),
        ]  # fmt: skip
        variants = {
            "local only": [],
            "streamed, local copy": ["--upload"],
            "--no-local-copy": ["--upload", "--no-local-copy"],
        }
        results: dict[str, list] = {name: [] for name in variants}
        try:
            for rnd in range(args.rounds):
                for i, (name, extra) in enumerate(variants.items()):
                    out = work / f"out{i}.zip"
                    remote = work / "inbox" / f"r{rnd}-{i}.zip"
                    remote.parent.mkdir(exist_ok=True)
                    cmd = [str(EXE), "collect", str(image), "-o", str(out), "--rule", str(rule),
                           "--disk-hash", "none", "--json", "--quiet"]  # fmt: skip
                    if extra:
                        cmd += [extra[0], f"sftp://root@127.0.0.1:{server.port}{remote}", *extra[1:], *upload]
                    log = work / f"{i}.log"
                    r = run(cmd, log=log)
                    text = log.read_text()
                    summary = json.loads(text[text.index("{") :])
                    if r.rc != 0:
                        sys.exit(f"{name}: exit {r.rc}: {text[-500:]}")
                    if extra:
                        assert summary["upload"]["delivered"], summary["upload"]
                        assert sha256(remote) == summary["container_sha256"], name
                        if "--no-local-copy" not in extra:
                            assert sha256(out) == summary["container_sha256"], name
                        remote.unlink()
                    out.unlink(missing_ok=True)
                    results[name].append(r)
        finally:
            server.stop()
    load = os.getloadavg()[0]
    print(f"{args.size_mib} MiB stored member, median of {args.rounds} interleaved rounds "
          f"(load average {load:.2f}; sshd on the same machine)")  # fmt: skip
    print("| variant | wall | user+sys CPU | peak RSS |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r.wall for r in runs):.2f} s "
              f"| {statistics.median(r.cpu for r in runs):.2f} s "
              f"| {statistics.median(r.maxrss_mb for r in runs):.0f} MiB |")  # fmt: skip


if __name__ == "__main__":
    main()

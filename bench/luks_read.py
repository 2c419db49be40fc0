"""LUKS: unlock and whole-volume decryption, the project's reader against pyluksde, one run.

    .venv/bin/python bench/luks_read.py [--mib 256] [--iterations 2000000]

Builds (and caches under ``bench/.cache/luks/``) a LUKS1 volume of ``--mib`` MiB with a
PBKDF2-sha256 key slot of ``--iterations`` (cryptsetup's ``--iter-time 2000`` gives about
that here) and an AES-XTS-plain64 512-bit payload, plus the same payload as LUKS2 with
4096-byte sectors; cryptsetup encrypts them (``reencrypt --encrypt``, offline).
Then, in one process and interleaved:

* unlock: the own key-slot code (``keyslots.unlock``) and pyluksde's ``unlock()``;
* read: the whole decrypted volume in 4 MiB reads through the own ``LuksStream`` and through
  pyluksde (LUKS1), CRC-32 of both printed: they must be equal.

Prints one table; nothing is asserted on time (speed claims come from here, not from tests).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selective_imager.credentials import LUKS_PASSPHRASE, Credential, StaticCredentials  # noqa: E402
from selective_imager.streams import FileStream  # noqa: E402
from selective_imager.volumes.luks import header as luks_header  # noqa: E402
from selective_imager.volumes.luks.keyslots import unlock  # noqa: E402
from selective_imager.volumes.luks.layer import open_luks  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "luks"
PASS = b"bench passphrase"
CHUNK = 4 << 20


def build(mib: int, iterations: int, kind: str) -> Path:
    image = CACHE / f"{kind}-{mib}m-{iterations}.img"
    if image.exists():
        return image
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = image.with_suffix(".part")
    with tmp.open("wb") as f:
        # Random plain data (not zeros): the cipher sees real work either way.
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.truncate((mib + 4) << 20)
    extra = ["--sector-size", "4096"] if kind == "luks2" else []
    subprocess.run(
        ["cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--cipher", "aes-xts-plain64",
         "--key-size", "512", "--pbkdf", "pbkdf2", "--hash", "sha256", "--pbkdf-force-iterations",
         str(iterations), "--luks2-metadata-size", "16k", "--reduce-device-size", "4M",
         *extra, "--batch-mode", "-q", "--key-file", "-", str(tmp)],
        input=PASS, check=True, capture_output=True,
    )
    if kind == "luks1":
        subprocess.run(["cryptsetup", "convert", "--type", "luks1", "--batch-mode", str(tmp)],
                       check=True, capture_output=True)
    tmp.rename(image)
    return image


def read_all(stream, size: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, CRC-32) of reading the whole stream."""
    crc = 0
    t, cpu = time.perf_counter(), time.process_time()
    for off in range(0, size, CHUNK):
        crc = zlib.crc32(stream.read_at(off, min(CHUNK, size - off)), crc)
    return time.perf_counter() - t, time.process_time() - cpu, crc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=2_000_000)
    args = ap.parse_args()
    import pyluksde

    from selective_imager.streams import LibyalStream

    rows: list[tuple[str, str, float, str]] = []
    for kind in ("luks1", "luks2"):
        image = build(args.mib, args.iterations, kind)
        raw = FileStream(str(image), image.stat().st_size)
        header = luks_header.read_header(raw)
        t = time.perf_counter()
        (outcome,) = unlock(header, raw, PASS)
        rows.append((kind, "unlock, own (hashlib PBKDF2)", time.perf_counter() - t, ""))
        assert outcome.key is not None
        creds = StaticCredentials([Credential(LUKS_PASSPHRASE, PASS.decode(), "bench")])
        volume = open_luks(raw, creds, None)
        assert volume.stream is not None
        seconds, cpu, crc = read_all(volume.stream, volume.stream.size)
        mb = volume.stream.size / 1e6
        rows.append((kind, "read whole volume, own", seconds,
                     f"{mb / seconds:,.0f} MB/s wall, {mb / cpu:,.0f} MB/CPU-s, crc {crc:08x}"))
        if kind == "luks1":
            handle = pyluksde.volume()
            handle.open(str(image))
            handle.set_password(PASS.decode())
            t = time.perf_counter()
            handle.unlock()
            rows.append((kind, "unlock, pyluksde", time.perf_counter() - t, ""))
            theirs = LibyalStream(handle, int(handle.get_size()))
            seconds, cpu, crc2 = read_all(theirs, theirs.size)
            rows.append((kind, "read whole volume, pyluksde", seconds,
                         f"{mb / seconds:,.0f} MB/s wall, {mb / cpu:,.0f} MB/CPU-s, crc {crc2:08x}"
                         + (" EQUAL" if crc2 == crc else " DIFFERENT")))
            handle.close()
        volume.close()
        raw.close()
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}; {args.mib} MiB payload, PBKDF2-sha256 {args.iterations} iterations, AES-XTS-plain64 512-bit; "
          f"{os.cpu_count()} CPUs")
    print("| volume | step | seconds | rate / check |\n|---|---|---|---|")
    for kind, step, seconds, note in rows:
        print(f"| {kind} | {step} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    main()

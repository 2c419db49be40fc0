"""Read a whole BitLocker volume through selective_imager's decryptor or through pybde.

    python bench/bde_read.py IMAGE PARTITION_OFFSET PARTITION_SIZE PASSWORD_FILE BACKEND

BACKEND is ``openssl`` (the checked fast path: pybde unlocks, our FVE reader derives the
key, OpenSSL decrypts) or ``pybde`` (pybde decrypts). Prints JSON with the bytes read and
a CRC-32 (zlib-ng, ~10 GB/s: it barely shows in the timing) of the decrypted volume, so
the two decryptors can be checked against each other.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from zlib_ng import zlib_ng

from selective_imager.credentials import Credential, StaticCredentials
from selective_imager.streams import FileStream, RangeStream
from selective_imager.volumes.bitlocker.unlock import open_bitlocker


def main() -> None:
    image, offset, size, password_file, backend = sys.argv[1:6]
    t0 = time.perf_counter()
    source = FileStream(image, int(offset) + int(size))
    volume = RangeStream(source, int(offset), int(size))
    password = Path(password_file).read_text(encoding="utf-8").strip()
    bde = open_bitlocker(
        volume, StaticCredentials([Credential("password", password, "bench")]), backend=backend
    )
    assert bde.stream is not None, bde.info.reason
    unlocked = time.perf_counter() - t0
    crc, done, chunk = 0, 0, 4 << 20
    stream = bde.stream
    while done < stream.size:
        data = stream.read_at(done, min(chunk, stream.size - done))
        crc = zlib_ng.crc32(data, crc)
        done += len(data)
    bde.close()
    print(json.dumps({"bytes": done, "crc32": f"{crc:08x}", "decryptor": bde.info.decryptor,
                      "unlock_seconds": round(unlocked, 3),
                      "read_seconds": round(time.perf_counter() - t0 - unlocked, 3)}))


if __name__ == "__main__":
    main()

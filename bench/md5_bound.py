"""The disk-hashing bound: hashlib.md5 alone over a file, in one Python process.

MD5 is the slowest of md5/sha1/sha256 here (SHA-NI accelerates the others, NOTES.md), so one
core running MD5 flat out is the best a one-pass md5+sha1+sha256 hasher can do. Reads go into
one reusable 4 MiB buffer (the best chunk size measured: 1-4 MiB).
"""

from __future__ import annotations

import hashlib
import sys


def main() -> None:
    h = hashlib.md5()
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    total = 0
    with open(sys.argv[1], "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            total += n
    print(h.hexdigest(), total)


if __name__ == "__main__":
    main()

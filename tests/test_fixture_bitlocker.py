"""The BitLocker fixture (fixtures/build_bitlocker.py) checked with independent readers.

gpt-bitlocker.raw is a GPT disk whose 2nd partition is a BitLocker volume (FVE v2,
AES-XTS-128, password + recovery-password protectors) made by fixtures/bitlocker_writer.py
from gpt-bitlocker.plain-volume.raw. libbde (pybde, bdeinfo), cryptsetup and TSK must all
recognise it, and the decrypted volume must equal the plain NTFS volume byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import struct
import subprocess
import sys
import uuid
import zlib
from typing import TYPE_CHECKING

import pybde
import pyfsntfs
import pytest
import pytsk3
from conftest import FIXTURES, need_tool

if TYPE_CHECKING:
    from pathlib import Path

NAME = "gpt-bitlocker"


class Slice:
    """A read-only window [offset, offset+size) of a file, as a file object for pybde."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._f = open(path, "rb")
        self._offset, self._size, self._pos = offset, size, 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._size - self._pos:
            size = max(0, self._size - self._pos)
        self._f.seek(self._offset + self._pos)
        data = self._f.read(size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: offset, 1: self._pos + offset, 2: self._size + offset}[whence]
        return self._pos

    def tell(self) -> int:
        return self._pos

    def get_size(self) -> int:
        return self._size

    def close(self) -> None:
        self._f.close()


@pytest.fixture(scope="module")
def facts(truth):
    return truth(NAME)


@pytest.fixture(scope="module")
def disk(unpacked) -> Path:
    return unpacked(f"{NAME}.raw")


@pytest.fixture(scope="module")
def plain(unpacked) -> bytes:
    return unpacked(f"{NAME}.plain-volume.raw").read_bytes()


@pytest.fixture(scope="module")
def bde_part(facts) -> dict:
    return facts["partitions"][facts["bitlocker"]["partition_index"] - 1]


@pytest.fixture(scope="module")
def part_file(disk, bde_part, tmp_path_factory) -> Path:
    """The BitLocker partition as its own file (for cryptsetup)."""
    out = tmp_path_factory.mktemp("bitlocker") / "partition.raw"
    with open(disk, "rb") as f:
        f.seek(bde_part["offset"])
        out.write_bytes(f.read(bde_part["size"]))
    return out


def open_bde(
    disk: Path, part: dict, *, password: str | None = None, recovery: str | None = None
) -> tuple[pybde.volume, bool]:
    vol = pybde.volume()
    if password is not None:
        vol.set_password(password)
    if recovery is not None:
        vol.set_recovery_password(recovery)
    vol.open_file_object(Slice(disk, part["offset"], part["size"]))
    return vol, vol.unlock()


def read_all(vol: pybde.volume) -> bytes:
    size = vol.get_size()
    chunks, off = [], 0
    while off < size:
        n = min(1 << 20, size - off)
        chunks.append(vol.read_buffer_at_offset(n, off))
        off += n
    return b"".join(chunks)


# ----------------------------------------------------------------------- disk and truth


def test_disk_matches_truth(disk, facts):
    data = disk.read_bytes()
    assert len(data) == facts["disk"]["size"]
    assert hashlib.sha256(data).hexdigest() == facts["disk"]["sha256"]
    assert hashlib.md5(data).hexdigest() == facts["disk"]["md5"]


def test_credential_files_match_truth(facts):
    bl = facts["bitlocker"]
    assert (FIXTURES / f"{NAME}.password.txt").read_text("ascii") == bl["password"] + "\n"
    assert (FIXTURES / f"{NAME}.recovery.txt").read_text("ascii") == bl["recovery_password"] + "\n"
    groups = bl["recovery_password"].split("-")
    assert len(groups) == 8
    assert all(len(g) == 6 and int(g) % 11 == 0 and int(g) < 720896 for g in groups)
    assert bl["password"].isascii()


def test_gpt_partitions_with_tsk(disk, facts):
    img = pytsk3.Img_Info(str(disk))
    parts = [p for p in pytsk3.Volume_Info(img) if p.flags == pytsk3.TSK_VS_PART_FLAG_ALLOC]
    assert [(p.start, p.len) for p in parts] == [
        (p["start_sector"], p["sectors"]) for p in facts["partitions"]
    ]
    assert facts["partitions"][1]["type_guid"] == "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
    # TSK recognises BitLocker but cannot decrypt it.
    bde = facts["partitions"][facts["bitlocker"]["partition_index"] - 1]
    with pytest.raises(OSError, match=r"(?i)bitlocker"):
        pytsk3.FS_Info(img, offset=bde["offset"])


def test_plain_volume_matches_truth(plain, facts):
    assert len(plain) == facts["plain_volume"]["size"]
    assert hashlib.sha256(plain).hexdigest() == facts["plain_volume"]["sha256"]
    assert plain[3:11] == b"NTFS    "


# -------------------------------------------------------------------------------- pybde


def test_signature_only_on_bitlocker_partition(disk, facts):
    for part in facts["partitions"]:
        sl = Slice(disk, part["offset"], part["size"])
        try:
            is_bde = pybde.check_volume_signature_file_object(sl)
        finally:
            sl.close()
        assert is_bde == (part["index"] == facts["bitlocker"]["partition_index"])


def test_metadata_without_unlocking(disk, bde_part, facts):
    bl = facts["bitlocker"]
    vol, unlocked = open_bde(disk, bde_part)
    assert not unlocked
    assert vol.is_locked()
    assert vol.get_encryption_method() == bl["method_id"] == 0x8004  # AES-XTS 128
    assert vol.get_volume_identifier() == bl["volume_guid"]
    assert vol.get_description() == bl["description"]
    assert vol.get_creation_time_as_integer() == bl["creation_time_filetime"]
    protectors = [vol.get_key_protector(i) for i in range(vol.get_number_of_key_protectors())]
    assert [(p.get_identifier(), p.get_type()) for p in protectors] == [
        (p["guid"], p["protection"]) for p in bl["protectors"]
    ]
    assert sorted(p.get_type() for p in protectors) == [0x0800, 0x2000]  # recovery, password


@pytest.mark.parametrize("credential", ["password", "recovery"])
def test_unlock_decrypts_to_plain_volume(disk, bde_part, plain, facts, credential):
    if credential == "password":
        secret = (FIXTURES / f"{NAME}.password.txt").read_text("ascii").rstrip("\n")
        vol, unlocked = open_bde(disk, bde_part, password=secret)
    else:
        secret = (FIXTURES / f"{NAME}.recovery.txt").read_text("ascii").rstrip("\n")
        vol, unlocked = open_bde(disk, bde_part, recovery=secret)
    assert unlocked
    assert not vol.is_locked()
    assert vol.get_size() == len(plain) == facts["bitlocker"]["volume_size"]
    decrypted = read_all(vol)
    # Readers show the FVE metadata areas and the header copy as zeros; the writer put them
    # over free, all-zero clusters, so the whole volume is identical.
    assert decrypted == plain


def test_wrong_password_does_not_unlock(disk, bde_part):
    vol, unlocked = open_bde(disk, bde_part, password="Wrong-Passw0rd!")
    assert unlocked is False
    assert vol.is_locked()
    with pytest.raises(OSError, match="locked"):
        vol.read_buffer_at_offset(512, 0)


def test_malformed_recovery_password_is_rejected():
    vol = pybde.volume()
    with pytest.raises(OSError):
        vol.set_recovery_password("123456-123456")


def test_files_through_decrypted_volume(disk, bde_part, facts):
    """Full chain: pybde -> pyfsntfs -> file contents, ADS and times from the truth."""
    vol, unlocked = open_bde(disk, bde_part, password=facts["bitlocker"]["password"])
    assert unlocked
    fs = pyfsntfs.volume()
    fs.open_file_object(vol)
    assert fs.get_name() == facts["plain_volume"]["label"]
    for f in facts["files"]:
        entry = fs.get_file_entry_by_path("\\" + f["path"].replace("/", "\\"))
        assert entry is not None, f["path"]
        data = entry.read()
        assert len(data) == f["size"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
        assert entry.get_creation_time_as_integer() == f["created_filetime"]
        assert entry.get_modification_time_as_integer() == f["modified_filetime"]
        assert entry.get_access_time_as_integer() == f["accessed_filetime"]
        streams = {s.name: s for s in entry.alternate_data_streams}
        assert sorted(streams) == sorted(a["name"] for a in f["ads"])
        for ads in f["ads"]:
            stream = streams[ads["name"]]
            blob = stream.read_buffer_at_offset(stream.get_size(), 0)
            assert hashlib.sha256(blob).hexdigest() == ads["sha256"]
    assert any(f["ads"] for f in facts["files"])
    assert any(not f["path"].isascii() for f in facts["files"])


def test_metadata_lies_over_free_zero_clusters(plain, facts):
    """Checked with pyfsntfs' own view of $Bitmap (not the writer's parser)."""
    bl = facts["bitlocker"]
    ranges = [(o, bl["metadata_area_size"]) for o in bl["metadata_offsets"]]
    ranges.append((bl["volume_header_offset"], bl["volume_header_size"]))
    assert len(set(bl["metadata_offsets"])) == 3
    bitmap = _ntfs_bitmap(plain)
    cluster = facts["plain_volume"]["cluster_size"]
    for off, size in ranges:
        assert off % cluster == 0 and off > 0 and off + size <= len(plain)
        assert plain[off : off + size] == bytes(size)
        for c in range(off // cluster, (off + size) // cluster):
            assert not bitmap[c >> 3] >> (c & 7) & 1, f"cluster {c} is allocated"
    # No two ranges overlap.
    spans = sorted(ranges)
    assert all(a + s <= b for (a, s), (b, _) in itertools.pairwise(spans))


def _ntfs_bitmap(plain: bytes) -> bytes:
    import io

    class Buf(io.BytesIO):
        def get_size(self) -> int:
            return len(self.getbuffer())

    fs = pyfsntfs.volume()
    fs.open_file_object(Buf(plain))
    return fs.get_file_entry(6).read()


# -------------------------------------------------------------------------- cryptsetup


def _bitlk_dump(
    part_file: Path, *extra: str, key: str | None = None
) -> subprocess.CompletedProcess:
    cmd = [need_tool("cryptsetup"), "bitlkDump", *extra, str(part_file)]
    if key is not None:
        cmd[2:2] = ["--dump-volume-key", "--batch-mode", "--key-file", "-"]
    return subprocess.run(
        cmd, input=key.encode() if key else None, capture_output=True, timeout=60, check=False
    )


def test_cryptsetup_bitlkdump_lists_protectors(part_file, facts):
    res = _bitlk_dump(part_file)
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    bl = facts["bitlocker"]
    assert re.search(r"Version:\s+2\b", out)
    assert re.search(rf"GUID:\s+{bl['volume_guid']}", out)
    assert "Cipher mode:  \txts-plain64" in out
    assert re.search(r"Cipher key:\s+256 bits", out)  # XTS-128: two 128-bit keys
    assert bl["description"] in out
    assert "VMK protected with recovery passphrase" in out
    assert "VMK protected with passphrase" in out
    for p in bl["protectors"]:
        assert p["guid"] in out and p["salt"] in out
    for off in bl["metadata_offsets"]:
        assert re.search(rf"Offset:\s+{off} \[bytes\]", out)
    assert re.search(rf"Offset:\s+{bl['volume_header_offset']} \[bytes\]", out)


@pytest.mark.parametrize("credential", ["password", "recovery_password"])
def test_cryptsetup_dumps_fvek(part_file, facts, credential):
    res = _bitlk_dump(part_file, key=facts["bitlocker"][credential])
    assert res.returncode == 0, res.stderr
    m = re.search(r"MK dump:\s*((?:[0-9a-f]{2}\s+)+)", res.stdout.decode())
    assert m, res.stdout
    assert "".join(m.group(1).split()) == facts["bitlocker"]["fvek"]


def test_cryptsetup_rejects_wrong_password(part_file):
    res = _bitlk_dump(part_file, key="Wrong-Passw0rd!")
    assert res.returncode != 0
    assert b"MK dump" not in res.stdout


# ----------------------------------------------------------------------------- bdeinfo


def test_bdeinfo(disk, bde_part, facts):
    bdeinfo = need_tool("bdeinfo")
    bl = facts["bitlocker"]
    base = [bdeinfo, "-o", str(bde_part["offset"])]
    res = subprocess.run(
        [*base, "-p", bl["password"], str(disk)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr  # exit 0 only when it could unlock
    out = res.stdout
    assert re.search(r"Encryption method\s*:\s*AES-XTS 128-bit", out)
    assert re.search(rf"Volume identifier\s*:\s*{bl['volume_guid']}", out)
    assert re.search(rf"Description\s*:\s*{re.escape(bl['description'])}", out)
    assert re.search(r"Number of key protectors\s*:\s*2", out)
    assert re.search(r"Type\s*:\s*Recovery password", out)
    assert re.search(r"Type\s*:\s*Password", out)
    for p in bl["protectors"]:
        assert p["guid"] in out
    res = subprocess.run(
        [*base, "-r", bl["recovery_password"], str(disk)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    res = subprocess.run(
        [*base, "-p", "Wrong-Passw0rd!", str(disk)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode != 0
    assert "Unable to unlock" in res.stderr


# --------------------------------------------------------------------- writer determinism


def test_writer_reproduces_the_committed_volume(plain, disk, bde_part, facts, tmp_path):
    """Re-encrypting the plain volume with the truth's parameters gives the same bytes."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import bitlocker_writer as bw
    finally:
        sys.path.remove(str(FIXTURES))
    bl = facts["bitlocker"]
    by_type = {p["type"]: p for p in bl["protectors"]}
    out = tmp_path / "again.raw"
    result = bw.encrypt_ntfs_volume(
        plain,
        out,
        password=bl["password"],
        recovery_password=bl["recovery_password"],
        volume_guid=uuid.UUID(bl["volume_guid"]),
        fvek=bytes.fromhex(bl["fvek"]),
        vmk=bytes.fromhex(bl["vmk"]),
        salts=(
            bytes.fromhex(by_type["password"]["salt"]),
            bytes.fromhex(by_type["recovery password"]["salt"]),
        ),
        nonce_time=bl["creation_time_filetime"],
        description=bl["description"],
        protector_guids=(
            uuid.UUID(by_type["password"]["guid"]),
            uuid.UUID(by_type["recovery password"]["guid"]),
        ),
    )
    assert result["sha256"] == bl["sha256"]
    with open(disk, "rb") as f:
        f.seek(bde_part["offset"])
        assert out.read_bytes() == f.read(bde_part["size"])


# ------------------------------------------------------------- FVE metadata validation


def test_fve_metadata_copies_and_validation_block(part_file, facts):
    """The 3 metadata copies are identical, and the validation block (which dissect.fve checks
    but libbde and cryptsetup ignore) holds the CRC-32 and, under the VMK, the SHA-256 of the
    block header + dataset."""
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    bl = facts["bitlocker"]
    vol = part_file.read_bytes()
    assert vol[3:11] == b"-FVE-FS-"
    assert uuid.UUID(bytes_le=vol[160:176]) == uuid.UUID("4967d63b-2e29-4ad8-8399-f6a339e3d001")
    assert list(struct.unpack_from("<3Q", vol, 176)) == bl["metadata_offsets"]
    areas = [vol[o : o + bl["metadata_area_size"]] for o in bl["metadata_offsets"]]
    assert areas[0] == areas[1] == areas[2]
    block = areas[0]
    assert block[:8] == b"-FVE-FS-"
    units, version = struct.unpack_from("<HH", block, 8)
    assert version == 2
    assert struct.unpack_from("<Q", block, 0x38)[0] == bl["volume_header_offset"]
    signed = block[: units * 16]
    size, vversion, crc = struct.unpack_from("<HHI", block, len(signed))
    assert (size, vversion, crc) == (88, 2, zlib.crc32(signed))
    entry_size, role, value_type, _ = struct.unpack_from("<HHHH", block, len(signed) + 8)
    assert (entry_size, role, value_type) == (80, 0, 5)
    payload = block[len(signed) + 16 : len(signed) + 8 + entry_size]
    nonce, tag, ciphertext = payload[:12], payload[12:28], payload[28:]
    key_datum = AESCCM(bytes.fromhex(bl["vmk"]), tag_length=16).decrypt(
        nonce, ciphertext + tag, None
    )
    assert struct.unpack_from("<HHHHH", key_datum) == (44, 0, 1, 1, 0x2005)
    assert key_datum[12:] == hashlib.sha256(signed).digest()

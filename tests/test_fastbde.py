"""The OpenSSL BitLocker fast path (selective_imager.volumes.bitlocker.fast) and its integration.

Oracles: pybde (the decrypted bytes of every volume, read in whole sectors), the
fixture's plain NTFS volume (what the fixture was encrypted from), and
``cryptography``'s per-sector AES-XTS/AES-CBC for the batched engines.

pybde (libbde 20260916) returns wrong bytes for reads that start inside a sector and
cross into the next one; every pybde read used as an oracle here is sector-aligned.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import uuid

import numpy as np
import pybde
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from selective_imager.credentials import Credential, StaticCredentials
from selective_imager.errors import UnsupportedEncryptionError
from selective_imager.streams import FileStream, RangeStream
from selective_imager.volumes.bitlocker import fast as fastbde
from selective_imager.volumes.bitlocker import fve
from selective_imager.volumes.bitlocker import unlock as bitlocker
from selective_imager.volumes.bitlocker.fast import FastBdeStream
from selective_imager.volumes.bitlocker.unlock import open_bitlocker
from tests.conftest import FIXTURES, SHARED

PASSWORD = "password12!@"
RECOVERY = "284867-596541-514998-422114-660297-261613-215424-199408"
BEK = SHARED / "bitlocker" / "startup_key.bek"
MIB = 1 << 20
# image: (credential kind or None, secret, expected decryptor, words of the note)
SHARED_CASES = {
    "aes_128": ("password", PASSWORD, "openssl", ""),
    "aes_256": ("password", PASSWORD, "openssl", ""),
    "aes_128_diffuser": ("password", PASSWORD, "openssl", ""),
    "aes-xts_128": ("password", PASSWORD, "openssl", ""),
    "aes-xts_256": ("password", PASSWORD, "openssl", ""),
    "recovery_password": ("recovery_password", RECOVERY, "openssl", ""),
    "startup_key": ("startup_key", str(BEK), "openssl", ""),
    "suspended": (None, None, "openssl", ""),
    "decrypted": (None, None, "pybde", "not encrypted"),
}


def _stream(path) -> FileStream:
    return FileStream(str(path), path.stat().st_size)


def _creds(kind, secret) -> StaticCredentials:
    return StaticCredentials([Credential(kind, secret, "test")] if kind else [])


def _pybde_oracle(stream, kind=None, secret=None):
    """An independent pybde handle on ``stream`` (unlocked as the test says)."""
    vol = pybde.volume()
    if kind == "startup_key":
        vol.read_startup_key(secret)
    stream.seek(0)
    vol.open_file_object(stream)
    if kind == "password":
        vol.set_password(secret)
    elif kind == "recovery_password":
        vol.set_recovery_password(secret)
    assert vol.unlock()
    return vol


def _read_or_none(read, offset, size):
    try:
        return read(offset, size)
    except OSError:
        return None


def _assert_same_volume(stream, oracle_read, size, step=MIB):
    """Every aligned ``step`` of the volume reads the same (or fails in both)."""
    compared = 0
    for offset in range(0, size, step):
        n = min(step, size - offset)
        expected = _read_or_none(oracle_read, offset, n)
        actual = _read_or_none(stream.read_at, offset, n)
        assert actual == expected, f"differs at {offset}"
        compared += len(expected or b"")
    assert compared > 0
    return compared


# ------------------------------------------------------------------ engines in isolation


def _gf_double(value: int, times: int) -> int:
    for _ in range(times):
        value <<= 1
        if value >> 128:
            value = (value & ((1 << 128) - 1)) ^ 0x87
    return value


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_xts_masks_match_gf128_reference(sector_size):
    rng = random.Random(sector_size)
    blocks = sector_size // 16
    tweaks = np.frombuffer(rng.randbytes(16 * 5), fastbde._U64).reshape(5, 2)
    masks = np.empty((5, blocks, 2), fastbde._U64)
    fastbde._xts_masks(tweaks, masks)
    for s in range(5):
        t = int.from_bytes(tweaks[s].tobytes(), "little")
        for i in (0, 1, 2, 31, blocks - 1, blocks // 2 + 3):
            assert int.from_bytes(masks[s, i].tobytes(), "little") == _gf_double(t, i)


def test_fast_ecb_equals_openssl_ecb():
    key = bytes(range(32))
    data = np.frombuffer(os.urandom(1 << 16), np.uint8)
    for size in (16, 32):
        ecb = fastbde._Ecb(key[:size])
        out = np.empty_like(data)
        ecb.apply(data, out, encrypt=False)
        ref = Cipher(algorithms.AES(key[:size]), modes.ECB()).decryptor().update(data.tobytes())
        assert out.tobytes() == ref
        ecb.apply(data, out, encrypt=True)
        ref = Cipher(algorithms.AES(key[:size]), modes.ECB()).encryptor().update(data.tobytes())
        assert out.tobytes() == ref


@pytest.mark.parametrize("sector_size", [512, 4096])
@pytest.mark.parametrize("key_size", [16, 32])
def test_xts_engine_equals_per_sector_xts(sector_size, key_size):
    key = os.urandom(2 * key_size)
    data = np.frombuffer(os.urandom(64 * sector_size), np.uint8)
    first = 1234567 * sector_size
    engine = fastbde._XtsSectors(key[:key_size], key[key_size:], sector_size)
    out = np.empty_like(data)
    engine.decrypt_into(data, first, out, fastbde._Scratch())
    expected = b"".join(
        Cipher(algorithms.AES(key), modes.XTS((first // sector_size + i).to_bytes(16, "little")))
        .decryptor()
        .update(data[i * sector_size : (i + 1) * sector_size].tobytes())
        for i in range(64)
    )
    assert out.tobytes() == expected


@pytest.mark.parametrize("sector_size", [512, 4096])
@pytest.mark.parametrize("key_size", [16, 32])
def test_cbc_engine_equals_per_sector_cbc(sector_size, key_size):
    key = os.urandom(key_size)
    data = np.frombuffer(os.urandom(64 * sector_size), np.uint8)
    first = 987654 * sector_size
    engine = fastbde._CbcSectors(key, sector_size)
    out = np.empty_like(data)
    engine.decrypt_into(data, first, out, fastbde._Scratch())
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    expected = b""
    for i in range(64):
        iv = ecb.update((first + i * sector_size).to_bytes(16, "little"))
        sector = data[i * sector_size : (i + 1) * sector_size].tobytes()
        expected += Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor().update(sector)
    assert out.tobytes() == expected


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_diffuser_engine_inverts_the_fixture_writer(sector_size):
    """The batched (numpy) Elephant diffuser decryption undoes the fixture writer's
    independent, word-by-word encryption (Ferguson's description)."""
    sys.path.insert(0, str(FIXTURES))
    import bitlocker_writer

    fvek = os.urandom(64)  # FVEK in bytes 0-15, TWEAK key in 32-47 (AES-128)
    plain = os.urandom(12 * sector_size)
    first = 5 * 2**30 + 3 * sector_size
    cipher = bitlocker_writer._cbc_encrypt(fvek, plain, first, sector_size, diffuser=True)
    engine = fastbde._DiffuserCbcSectors(fvek[:16], fvek[32:48], sector_size)
    out = np.empty(len(cipher), np.uint8)
    engine.decrypt_into(np.frombuffer(cipher, np.uint8), first, out, fastbde._Scratch())
    assert out.tobytes() == plain


# ----------------------------------------------------------------------- the fixture


@pytest.fixture(scope="module")
def bl(truth) -> dict:
    return truth("gpt-bitlocker")["bitlocker"]


@pytest.fixture(scope="module")
def plain(unpacked) -> bytes:
    return unpacked("gpt-bitlocker.plain-volume.raw").read_bytes()


@pytest.fixture(scope="module")
def volume(unpacked, bl):
    disk = _stream(unpacked("gpt-bitlocker.raw"))
    return RangeStream(disk, bl["partition_offset"], bl["volume_size"])


@pytest.fixture(scope="module")
def metadata(volume):
    return fve.read_metadata(volume)


@pytest.fixture(scope="module")
def key(metadata, bl):
    return fve.derive_full_volume_key(metadata, "password", bl["password"])


@pytest.fixture(scope="module")
def fast(volume, metadata, key, bl):
    return FastBdeStream(volume, metadata, key, bl["volume_size"])


def test_fixture_fast_stream_equals_plain_volume(fast, plain, volume, metadata, key):
    assert fast.size == len(plain)
    assert fast.read_at(0, fast.size) == plain
    # Batches much smaller than the read: every special range straddles a batch edge.
    small = FastBdeStream(volume, metadata, key, len(plain), chunk_size=8192)
    assert small.read_at(0, small.size) == plain


def test_fixture_unaligned_reads_equal_plain_volume(fast, plain):
    rng = random.Random(5)
    for _ in range(300):
        offset = rng.randrange(len(plain))
        size = rng.randrange(1, 200_000)
        assert fast.read_at(offset, size) == plain[offset : offset + size], (offset, size)
    fast.seek(len(plain) - 100)
    assert fast.read(1000) == plain[-100:]


def test_fixture_small_reads(fast, plain, bl):
    """Reads of a few sectors take the per-sector path; around every special range too."""
    places = [0, 512 * 3, 8192 - 1024, 8192, 40960, bl["volume_header_offset"] - 1024]
    places += [o - 1024 for o in bl["metadata_offsets"]]
    places += [o + bl["metadata_area_size"] - 1024 for o in bl["metadata_offsets"]]
    for offset in places:
        for sectors in range(1, 10):
            for skew in (0, 17):
                start, size = offset + skew, 512 * sectors - 2 * skew
                assert fast.read_at(start, size) == plain[start : start + size], (start, size)


def test_fixture_fast_stream_equals_pybde(fast, volume, bl):
    oracle = _pybde_oracle(volume, "recovery_password", bl["recovery_password"])
    try:
        _assert_same_volume(fast, lambda o, n: oracle.read_buffer_at_offset(n, o), fast.size, 65536)
    finally:
        oracle.close()


def test_fixture_concurrent_reads(fast, plain):
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            offset = rng.randrange(len(plain))
            size = rng.randrange(1, 300_000)
            if fast.read_at(offset, size) != plain[offset : offset + size]:
                errors.append(f"{seed}: {offset}+{size}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("kind", ["password", "recovery_password"])
def test_open_bitlocker_takes_the_fast_path(volume, plain, bl, kind):
    bde = open_bitlocker(volume, _creds(kind, bl[kind]))
    try:
        assert bde.info.decryptor == "openssl", bde.info.decryptor_note
        assert bde.info.decryptor_note == ""
        assert isinstance(bde.stream, FastBdeStream)
        assert bde.stream.read_at(0, bde.stream.size) == plain
    finally:
        bde.close()


def test_backend_switch_keeps_pybde(volume, plain, bl, monkeypatch):
    creds = _creds("password", bl["password"])
    bde = open_bitlocker(volume, creds, backend="pybde")
    try:
        assert bde.info.decryptor == "pybde"
        assert "switched off" in bde.info.decryptor_note
        assert bde.stream is not None and bde.stream.read_at(0, bde.stream.size) == plain
    finally:
        bde.close()
    monkeypatch.setenv(bitlocker.BACKEND_ENV, "pybde")
    bde = open_bitlocker(volume, creds)
    assert bde.info.decryptor == "pybde"
    bde.close()
    with pytest.raises(ValueError, match="unknown BitLocker backend"):
        open_bitlocker(volume, creds, backend="fast")


def test_pybde_path_unaligned_reads_are_correct(volume, plain, bl):
    """pybde alone gets reads that start mid-sector wrong; the pybde stream widens them."""
    raw = _pybde_oracle(volume, "password", bl["password"])
    try:
        offset, size = 512 * 40 + 199, 8000
        assert raw.read_buffer_at_offset(size, offset) != plain[offset : offset + size]
    finally:
        raw.close()
    bde = open_bitlocker(volume, _creds("password", bl["password"]), backend="pybde")
    try:
        assert bde.stream is not None
        rng = random.Random(9)
        for _ in range(100):
            offset = rng.randrange(len(plain))
            size = rng.randrange(1, 70_000)
            assert bde.stream.read_at(offset, size) == plain[offset : offset + size]
    finally:
        bde.close()


def _flip(key: fve.FullVolumeKey, byte: int) -> fve.FullVolumeKey:
    raw = bytearray(key.key.reveal())
    raw[byte] ^= 0x01
    return fve.FullVolumeKey(key.method, fve.SecretBytes(bytes(raw)))


@pytest.mark.parametrize("byte", [0, 16], ids=["data-key", "tweak-key"])
def test_corrupted_key_is_caught_and_pybde_kept(volume, plain, bl, key, monkeypatch, byte):
    wrong = _flip(key, byte)
    calls: list[str] = []
    real = fve.derive_keys

    def corrupted(metadata, kind, secret=None):
        calls.append(kind)
        vmk, _key = real(metadata, kind, secret)
        return vmk, wrong  # pybde gets the right VMK, the fast path a wrong FVEK

    monkeypatch.setattr(fve, "derive_keys", corrupted)
    bde = open_bitlocker(volume, _creds("password", bl["password"]))
    try:
        assert calls == ["password"]
        assert bde.info.decryptor == "pybde"
        assert "differs from pybde" in bde.info.decryptor_note
        assert bl["password"] not in bde.info.decryptor_note
        assert wrong.key.reveal().hex() not in bde.info.decryptor_note
        assert bde.stream is not None and bde.stream.read_at(0, bde.stream.size) == plain
    finally:
        bde.close()


def test_only_an_authenticated_credential_keys_the_fast_path(volume, bl, monkeypatch):
    """A credential keys the fast path only when its key chain authenticates; one the
    project's reader rejects still gets pybde's own verdict (here: wrong, locked)."""
    used: list[str] = []
    real = fve.derive_keys

    def spy(metadata, kind, secret=None):
        keys = real(metadata, kind, secret)  # raises for a wrong credential
        used.append(kind)
        return keys

    monkeypatch.setattr(fve, "derive_keys", spy)
    wrong = StaticCredentials([Credential("password", "Wrong-Passw0rd!", "a")])
    bde = open_bitlocker(volume, wrong)
    assert bde.info.state == "locked" and bde.stream is None
    assert bde.info.decryptor == ""
    assert "password from a: wrong" in bde.info.reason  # pybde's verdict
    assert used == []
    both = StaticCredentials(
        [
            Credential("password", "Wrong-Passw0rd!", "a"),
            Credential("recovery_password", bl["recovery_password"], "b"),
        ]
    )
    bde = open_bitlocker(volume, both)
    assert bde.info.decryptor == "openssl" and bde.info.unlocked_with == "recovery_password"
    assert used == ["recovery_password"]
    bde.close()


def test_info_json_reports_the_decryptor(unpacked, bl):
    from typer.testing import CliRunner

    from selective_imager.cli.app import app

    env = {"FIXTURE_BDE_PW": bl["password"]}
    disk = str(unpacked("gpt-bitlocker.raw"))
    result = CliRunner(env=env).invoke(
        app, ["info", disk, "--json", "--password-env", "FIXTURE_BDE_PW"]
    )
    assert result.exit_code == 0, result.output
    assert bl["password"] not in result.stdout
    import json

    enc = next(v for v in json.loads(result.stdout)["volumes"] if v["encryption"])["encryption"]
    assert enc["decryptor"] == "openssl"
    assert enc["decryptor_note"] is None


def test_truncated_volume_reads_fail_like_pybde(volume, metadata, key, bl):
    """Past the end of a cut-off image both pybde and the fast stream refuse to read."""
    cut = RangeStream(volume, 0, bl["metadata_offsets"][1] + 4096)
    short = FastBdeStream(cut, metadata, key, bl["volume_size"])
    oracle = _pybde_oracle(volume, "password", bl["password"])
    try:
        # pybde on the full volume can read there; only the truncation makes it fail.
        end = bl["metadata_offsets"][1] + 65536 + 8192
        assert oracle.read_buffer_at_offset(512, end)
        with pytest.raises(OSError, match="cannot read encrypted sector"):
            short.read_at(end, 512)
        # The zeroed metadata area needs no ciphertext: it reads even where cut off.
        assert short.read_at(bl["metadata_offsets"][1] + 8192, 4096) == bytes(4096)
    finally:
        oracle.close()


# ---------------------------------------------------------------- Windows-made images


@pytest.fixture(scope="module")
def opened(shared):
    """Each shared image opened once through open_bitlocker, plus a pybde oracle."""
    result = {}
    for name, (kind, secret, _decryptor, _note) in SHARED_CASES.items():
        raw = _stream(shared(f"bitlocker/{name}.bin"))
        bde = open_bitlocker(raw, _creds(kind, secret))
        oracle = _pybde_oracle(_stream(shared(f"bitlocker/{name}.bin")), kind, secret)
        result[name] = (bde, oracle)
    yield result
    for bde, oracle in result.values():
        bde.close()
        oracle.close()


@pytest.mark.parametrize("name", sorted(SHARED_CASES))
def test_shared_image_decryptor(opened, name):
    bde, _oracle = opened[name]
    _kind, _secret, decryptor, note = SHARED_CASES[name]
    assert bde.info.decryptor == decryptor, bde.info.decryptor_note
    assert note in bde.info.decryptor_note
    assert PASSWORD not in bde.info.decryptor_note and RECOVERY not in bde.info.decryptor_note
    assert isinstance(bde.stream, FastBdeStream) == (decryptor == "openssl")


@pytest.mark.parametrize("name", sorted(SHARED_CASES))
def test_shared_image_bytes_equal_pybde(opened, name):
    """The whole volume, fast path or fallback, reads as pybde reads it."""
    bde, oracle = opened[name]
    assert bde.stream is not None and bde.stream.size == oracle.get_size()
    compared = _assert_same_volume(
        bde.stream, lambda o, n: oracle.read_buffer_at_offset(n, o), oracle.get_size()
    )
    # The images are cut short of their volume size; most of the volume is compared.
    assert compared >= 45 * MIB
    assert bde.stream.read_at(3, 8) == b"NTFS    "


@pytest.mark.parametrize("name", ["aes_128", "aes-xts_256", "suspended"])
def test_shared_image_unaligned_reads(opened, name):
    bde, oracle = opened[name]
    rng = random.Random(11)
    for _ in range(100):
        offset = rng.randrange(48 * MIB)
        size = rng.randrange(1, 100_000)
        start = offset - offset % 512
        end = offset + size + (-(offset + size)) % 512
        expected = oracle.read_buffer_at_offset(end - start, start)[offset - start :][:size]
        assert bde.stream.read_at(offset, size) == expected


def test_eow_volume_is_refused_by_the_stream(shared):
    raw = _stream(shared("bitlocker/decrypted.bin"))
    md = fve.read_metadata(raw)
    with pytest.raises(UnsupportedEncryptionError, match="encrypt-on-write"):
        FastBdeStream(raw, md, None, 1 << 20)


@pytest.mark.parametrize("name", ["aes_128", "startup_key"])
def test_shared_corrupted_key_falls_back_without_changing_output(shared, opened, monkeypatch, name):
    kind, secret, _decryptor, _note = SHARED_CASES[name]
    good_stream = opened[name][0].stream
    assert isinstance(good_stream, FastBdeStream)
    raw = _stream(shared(f"bitlocker/{name}.bin"))
    md = fve.read_metadata(raw)
    vmk, key = fve.derive_keys(md, kind, secret)
    wrong = _flip(key, 3)
    monkeypatch.setattr(fve, "derive_keys", lambda *a, **k: (vmk, wrong))
    bde = open_bitlocker(raw, _creds(kind, secret))
    try:
        assert bde.info.decryptor == "pybde"
        assert "differs from pybde" in bde.info.decryptor_note
        for offset in (0, 7 * MIB, 30 * MIB):
            assert bde.stream.read_at(offset, MIB) == good_stream.read_at(offset, MIB)
    finally:
        bde.close()


# --------------------------------------------------------------- 4096-byte sectors


@pytest.fixture(scope="module")
def volume_4k(tmp_path_factory):
    """A 16 MiB NTFS with 4096-byte sectors, encrypted by the fixture writer."""
    if shutil.which("mkntfs") is None:
        pytest.skip("mkntfs not installed (apt-get install ntfs-3g)")
    sys.path.insert(0, str(FIXTURES))
    import bitlocker_writer

    work = tmp_path_factory.mktemp("bde4k")
    plain = work / "plain.raw"
    with open(plain, "wb") as fh:
        fh.truncate(16 * MIB)
    subprocess.run(
        ["mkntfs", "-F", "-f", "-q", "-s", "4096", "-c", "4096", "-p", "0", str(plain)],
        check=True,
        capture_output=True,
    )
    out = work / "bde.raw"
    bitlocker_writer.encrypt_ntfs_volume(
        plain,
        out,
        password="Sector-4k!",
        recovery_password=bitlocker_writer.generate_recovery_password(4096),
        volume_guid=uuid.UUID("b1e0c0de-0000-4000-8000-000000004096"),
        fvek=bytes(range(32)),
        vmk=bytes(range(32, 64)),
        salts=(bytes(range(16)), bytes(range(16, 32))),
        nonce_time=133537617300000000,
        description="4k",
        sector_size=4096,
    )
    return out, plain.read_bytes()


def test_4096_byte_sectors(volume_4k):
    path, plain = volume_4k
    raw = _stream(path)
    bde = open_bitlocker(raw, _creds("password", "Sector-4k!"))
    try:
        assert bde.info.decryptor == "openssl", bde.info.decryptor_note
        assert isinstance(bde.stream, FastBdeStream)
        assert bde.stream._sector_size == 4096
        assert bde.stream.read_at(0, bde.stream.size) == plain
        oracle = _pybde_oracle(_stream(path), "password", "Sector-4k!")
        _assert_same_volume(bde.stream, lambda o, n: oracle.read_buffer_at_offset(n, o), len(plain))
        oracle.close()
    finally:
        bde.close()


# ------------------------------------------------------------------- Vista metadata


def _vista_volume(plain: bytes, bl: dict, path) -> None:
    """The fixture volume re-laid as Windows Vista does: FVE metadata version 1, the first
    8 KiB unencrypted in place, the boot sector's MFT-mirror field pointing at the
    metadata, no volume-header copy."""
    import struct

    sys.path.insert(0, str(FIXTURES))
    import bitlocker_writer

    fvek = bytes.fromhex(bl["fvek"])
    bitlocker_writer.encrypt_ntfs_volume(
        plain,
        path,
        password=bl["password"],
        recovery_password=bl["recovery_password"],
        volume_guid=uuid.UUID(bl["volume_guid"]),
        fvek=fvek,
        vmk=bytes.fromhex(bl["vmk"]),
        salts=(bytes(16), bytes([1] * 16)),
        nonce_time=bl["creation_time_filetime"],
        description="vista",
    )
    out = bytearray(path.read_bytes())
    offsets = struct.unpack_from("<3Q", out, 176)
    header = struct.unpack_from("<Q", out, offsets[0] + 56)[0]
    out[header : header + 8192] = bitlocker_writer._xts_encrypt(
        fvek, plain[header : header + 8192], header // 512, 512
    )
    out[0:8192] = plain[0:8192]
    out[3:11] = fve.FVE_SIGNATURE
    cluster = plain[13] * struct.unpack_from("<H", plain, 11)[0]
    struct.pack_into("<Q", out, 56, offsets[0] // cluster)
    header_entry = struct.pack("<HHHHQQ", 24, 0xF, 0xF, 1, header, 8192)
    for offset in offsets:
        struct.pack_into("<H", out, offset + 10, 1)  # block header version 1
        out[offset + 56 : offset + 64] = plain[56:64]  # the MFT mirror cluster
        # Vista has no volume-header entry (libbde insists it match the header).
        at = out.index(header_entry, offset, offset + 4096)
        struct.pack_into("<H", out, at + 2, 0x9)
    path.write_bytes(bytes(out))


def test_vista_metadata_with_xts_takes_the_checked_fast_path(plain, bl, tmp_path):
    """Version-1 metadata over AES-XTS: the fast path, checked against pybde, which
    differs only in the MFT-mirror field of sector 0 (it leaves zeros there)."""
    path = tmp_path / "vista.raw"
    _vista_volume(plain, bl, path)
    md = fve.read_metadata(_stream(path))
    assert md.boot.layout == fve.LAYOUT_VISTA
    assert (md.version, md.metadata_area_size, md.volume_header_size) == (1, 16384, 0)
    assert md.metadata_offsets == tuple(bl["metadata_offsets"])
    assert fastbde.unsupported_reason(md) == ""
    bde = open_bitlocker(_stream(path), _creds("password", bl["password"]))
    oracle = _pybde_oracle(_stream(path), "password", bl["password"])
    try:
        assert bde.info.decryptor == "openssl", bde.info.decryptor_note
        # Sector 0 as the plain volume has it (this volume's metadata areas are the
        # 64 KiB of version 2, so only pybde is an oracle for the rest).
        assert bde.stream.read_at(0, 512) == plain[:512]
        assert oracle.read_buffer_at_offset(512, 0)[0x38:0x40] == bytes(8)
        for offset in range(512, len(plain), 256 * 1024):
            n = min(256 * 1024, len(plain) - offset)
            assert bde.stream.read_at(offset, n) == oracle.read_buffer_at_offset(n, offset)
    finally:
        oracle.close()
        bde.close()


# ------------------------------------------------ the VMK handed to pybde for the check


def test_clear_key_handoff_unlocks_pybde_without_its_stretch(volume, plain, bl):
    """pybde, shown the VMK as a clear-key protector in a read overlay, unlocks with no
    credential and decrypts the volume, on its own, to the plain volume."""
    from selective_imager.volumes.bitlocker import handoff

    md = fve.read_metadata(volume)
    vmk, _key = fve.derive_keys(md, "password", bl["password"])
    overlay = handoff.clear_key_overlay(volume, md, vmk)
    assert overlay is not None
    # Only the metadata blocks differ; readers show those areas as zeros anyway.
    for offset in range(0, volume.size, 64 * 1024):
        if offset not in md.metadata_offsets:
            assert overlay.read_at(offset, 4096) == volume.read_at(offset, 4096)
    handle = pybde.volume()
    overlay.seek(0)
    handle.open_file_object(overlay)
    try:
        assert not handle.is_locked()
        assert handle.get_number_of_key_protectors() == 3  # the fixture's two + the handoff
        assert handle.read_buffer_at_offset(len(plain), 0) == plain
    finally:
        handle.close()
    # The volume's own metadata, as the project's reader and pybde read it, is unchanged.
    assert [p.kind for p in fve.read_metadata(volume).protectors] == [
        "recovery_password",
        "password",
    ]

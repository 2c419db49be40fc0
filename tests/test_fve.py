"""The project's own FVE metadata reader and key derivation (selective_imager.volumes.bitlocker.fve).

Oracles: the fixture's truth file (keys, offsets, GUIDs, salts written by
fixtures/bitlocker_writer.py), the FVEKs documented in ../shared/README.md for the
Windows-made images, and pybde's view of the same metadata. Every key-derivation result
that has no documented value is checked end to end in test_fastbde.py (the key decrypts
the volume to pybde's bytes).
"""

from __future__ import annotations

import pickle
import struct
import sys
import uuid

import pybde
import pytest

from selective_imager.errors import CredentialsError, EncryptionError, UnsupportedEncryptionError
from selective_imager.streams import FileStream, OverlayStream, RangeStream
from selective_imager.volumes.bitlocker import fve
from tests.conftest import FIXTURES, SHARED

sys.path.insert(0, str(FIXTURES))
import bitlocker_writer

PASSWORD = "password12!@"
RECOVERY = "284867-596541-514998-422114-660297-261613-215424-199408"
BEK = SHARED / "bitlocker" / "startup_key.bek"
# ../shared/README.md: raw FVEKs of three images.
DOCUMENTED_FVEK = {
    "aes_128": "84c3a3157e5f21dee140005220bc940e",
    "aes_256": "dd3885ef9948c8dc6ad1b54a6c4a4b6fb74b44d1d9775ac7ed186c35f1b59022",
    "aes-xts_128": "4eb949c473f0edfc379ad041670ddb9c4da0abdb4482a2c8bb47250493aa1ed5",
}
# image: (credential kind, secret, method)
SHARED_IMAGES = {
    "aes_128": ("password", PASSWORD, fve.METHOD_AES_128_CBC),
    "aes_256": ("password", PASSWORD, fve.METHOD_AES_256_CBC),
    "aes_128_diffuser": ("password", PASSWORD, fve.METHOD_AES_128_CBC_DIFFUSER),
    "aes-xts_128": ("password", PASSWORD, fve.METHOD_AES_128_XTS),
    "aes-xts_256": ("password", PASSWORD, fve.METHOD_AES_256_XTS),
    "recovery_password": ("recovery_password", RECOVERY, fve.METHOD_AES_128_XTS),
    "startup_key": ("startup_key", str(BEK), fve.METHOD_AES_128_XTS),
    "suspended": ("clear_key", None, fve.METHOD_AES_128_XTS),
}
# Key sizes stored in the FVEK entry (XTS: data key + tweak key; diffuser: 2 x 32).
FVEK_SIZE = {
    fve.METHOD_AES_128_CBC: 16,
    fve.METHOD_AES_256_CBC: 32,
    fve.METHOD_AES_128_CBC_DIFFUSER: 64,
    fve.METHOD_AES_128_XTS: 32,
    fve.METHOD_AES_256_XTS: 64,
}


def _stream(path) -> FileStream:
    return FileStream(str(path), path.stat().st_size)


# ------------------------------------------------------------------------- the fixture


@pytest.fixture(scope="module")
def bl(truth) -> dict:
    return truth("gpt-bitlocker")["bitlocker"]


@pytest.fixture(scope="module")
def fixture_volume(unpacked, bl):
    disk = _stream(unpacked("gpt-bitlocker.raw"))
    return RangeStream(disk, bl["partition_offset"], bl["volume_size"])


@pytest.fixture(scope="module")
def fixture_metadata(fixture_volume):
    return fve.read_metadata(fixture_volume)


def test_fixture_metadata_matches_truth(fixture_metadata, bl):
    md = fixture_metadata
    assert md.boot.layout == fve.LAYOUT_WINDOWS_7
    assert not md.boot.encrypt_on_write
    assert md.boot.bytes_per_sector == bl["sector_size"] == 512
    assert list(md.boot.metadata_offsets) == bl["metadata_offsets"]
    assert list(md.metadata_offsets) == bl["metadata_offsets"]
    assert md.block_offset == bl["metadata_offsets"][0]
    assert md.version == bl["fve_version"] == 2
    assert (md.state, md.next_state) == (4, 4)
    assert md.metadata_area_size == bl["metadata_area_size"]
    assert md.volume_header_offset == bl["volume_header_offset"]
    assert md.volume_header_size == bl["volume_header_size"]
    assert md.encrypted_volume_size == bl["volume_size"]
    assert md.method == bl["method_id"] == fve.METHOD_AES_128_XTS
    assert md.method_name == bl["method"]
    assert str(md.volume_identifier) == bl["volume_guid"]
    assert md.description == bl["description"]
    assert md.created == bl["creation_time_filetime"]
    assert md.next_nonce_counter == bl["next_nonce_counter"]
    assert [(str(p.identifier), p.protection, p.salt.hex()) for p in md.protectors] == [
        (p["guid"], p["protection"], p["salt"]) for p in bl["protectors"]
    ]
    assert [p.kind for p in md.protectors] == ["recovery_password", "password"]
    assert all(len(p.encrypted_keys) == 1 for p in md.protectors)
    assert md.fvek is not None


@pytest.mark.parametrize("kind", ["password", "recovery_password"])
def test_fixture_keys_match_truth(fixture_metadata, bl, kind):
    vmk = fve.volume_master_key(fixture_metadata, kind, bl[kind])
    assert vmk.reveal().hex() == bl["vmk"]
    key = fve.full_volume_key(fixture_metadata, vmk)
    assert key.method == fve.METHOD_AES_128_XTS
    assert key.key.reveal().hex() == bl["fvek"]
    assert key.data_key() + key.tweak_key() == bytes.fromhex(bl["fvek"])


def test_wrong_password_is_a_credentials_error_without_the_secret(fixture_metadata):
    with pytest.raises(CredentialsError) as info:
        fve.derive_full_volume_key(fixture_metadata, "password", "Wrong-Passw0rd!")
    assert "Wrong-Passw0rd" not in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        "111111-222222",  # too few groups
        "583594-683111-481646-694023-056122-326271-209231-07344x",  # not a digit
        "583594-683111-481646-694023-056122-326271-209231-073448",  # not a multiple of 11
        "999999-683111-481646-694023-056122-326271-209231-073447",  # >= 720896
    ],
)
def test_malformed_recovery_password_is_rejected_without_quoting(bad):
    with pytest.raises(CredentialsError) as info:
        fve.recovery_password_hash(bad)
    assert "683111" not in str(info.value) and "111111" not in str(info.value)


def test_no_protector_of_that_kind(fixture_metadata):
    with pytest.raises(CredentialsError, match="no clear key protector"):
        fve.volume_master_key(fixture_metadata, "clear_key")
    with pytest.raises(UnsupportedEncryptionError):
        fve.volume_master_key(fixture_metadata, "tpm")


def test_key_derivation_matches_the_fixture_writer():
    """The writer is an independent implementation (fixtures/bitlocker_writer.py)."""
    salt = bytes(range(16))
    for password in ("Fixture-Passw0rd!", "pässwörd 履歴", ""):
        assert fve.password_hash(password) == bitlocker_writer.password_initial_hash(password)
    recovery = bitlocker_writer.generate_recovery_password(7)
    assert fve.recovery_password_hash(recovery) == (
        bitlocker_writer.recovery_password_initial_hash(recovery)
    )
    initial = fve.password_hash("x")
    assert fve.stretch_key(initial, salt, 5000).reveal() == (
        bitlocker_writer.stretch_key(initial, salt, 5000)
    )


def test_metadata_read_from_the_second_copy_when_the_first_is_damaged(fixture_volume, bl):
    first = bl["metadata_offsets"][0]
    damaged = OverlayStream(fixture_volume, {first: b"\0" * 512})
    md = fve.read_metadata(damaged)
    assert md.block_offset == bl["metadata_offsets"][1]
    assert str(md.volume_identifier) == bl["volume_guid"]


def test_no_readable_copy_is_an_encryption_error(fixture_volume, bl):
    blank = OverlayStream(fixture_volume, {o: b"\0" * 512 for o in bl["metadata_offsets"]})
    with pytest.raises(EncryptionError, match="no readable FVE metadata"):
        fve.read_metadata(blank)


# ---------------------------------------------------------------- Windows-made images


@pytest.fixture(scope="module")
def shared_metadata(shared):
    return {
        name: fve.read_metadata(_stream(shared(f"bitlocker/{name}.bin"))) for name in SHARED_IMAGES
    }


@pytest.fixture(scope="module")
def shared_keys(shared_metadata):
    """Each image's FVEK, derived once (a password stretch costs ~0.5 s)."""
    return {
        name: fve.derive_full_volume_key(shared_metadata[name], kind, secret)
        for name, (kind, secret, _method) in SHARED_IMAGES.items()
    }


@pytest.mark.parametrize("name", sorted(DOCUMENTED_FVEK))
def test_derived_fvek_equals_documented_fvek(shared_keys, name):
    assert shared_keys[name].key.reveal().hex() == DOCUMENTED_FVEK[name]


@pytest.mark.parametrize("name", sorted(SHARED_IMAGES))
def test_shared_key_sizes_and_methods(shared_keys, name):
    key = shared_keys[name]
    assert key.method == SHARED_IMAGES[name][2]
    assert len(key.key) == FVEK_SIZE[key.method]


@pytest.mark.parametrize("name", sorted(SHARED_IMAGES))
def test_shared_metadata_matches_pybde(shared, shared_metadata, name):
    md = shared_metadata[name]
    vol = pybde.volume()
    with open(shared(f"bitlocker/{name}.bin"), "rb") as fh:
        vol.open_file_object(fh)
        assert md.method == vol.get_encryption_method()
        assert str(md.volume_identifier) == vol.get_volume_identifier()
        assert md.description == vol.get_description()
        assert md.created == vol.get_creation_time_as_integer()
        pybde_protectors = [
            vol.get_key_protector(i) for i in range(vol.get_number_of_key_protectors())
        ]
        assert [(str(p.identifier), p.protection) for p in md.protectors] == [
            (p.get_identifier(), p.get_type()) for p in pybde_protectors
        ]
        vol.close()
    assert md.boot.layout == fve.LAYOUT_WINDOWS_7
    assert md.version == 2
    assert md.volume_header_size == 8192


def test_protector_details(shared_metadata):
    recovery = shared_metadata["recovery_password"].protectors[0]
    assert recovery.kind == "recovery_password" and recovery.name == "DiskPassword"
    assert recovery.salt is not None and len(recovery.salt) == 16
    startup = shared_metadata["startup_key"].protectors[0]
    assert startup.kind == "startup_key" and startup.name == "ExternalKey"
    assert startup.salt is None
    clear = shared_metadata["suspended"].protectors[0]
    assert clear.kind == "clear_key"
    assert clear.clear_key is not None and len(clear.clear_key) == 32


def test_startup_key_file(shared):
    external = fve.read_startup_key_file(shared("bitlocker/startup_key.bek"))
    # README: the startup-key volume's protector; pybde reports the same GUID.
    assert external.identifier == uuid.UUID("b3411a58-3400-420a-8b7e-9b5f706425c0")
    assert len(external.key) == 32
    assert external.key.reveal().hex() not in repr(external)


def test_startup_key_of_another_volume_is_refused(shared_metadata):
    with pytest.raises(CredentialsError, match="belongs to no protector"):
        fve.volume_master_key(shared_metadata["aes-xts_128"], "startup_key", str(BEK))


def test_not_a_startup_key_file(tmp_path):
    bogus = tmp_path / "bogus.bek"
    bogus.write_bytes(b"\x01" * 200)
    with pytest.raises(CredentialsError, match="not a BitLocker startup key"):
        fve.read_startup_key_file(bogus)
    with pytest.raises(CredentialsError, match="cannot read"):
        fve.read_startup_key_file(tmp_path / "missing.bek")


def test_decrypted_volume_has_no_keys_and_eow_identifier(shared):
    md = fve.read_metadata(_stream(shared("bitlocker/decrypted.bin")))
    assert md.method == fve.METHOD_NONE
    assert md.boot.encrypt_on_write
    assert (md.state, md.next_state) == (1, 1)
    assert md.protectors == () and md.fvek is None
    with pytest.raises(EncryptionError, match="no FVEK"):
        fve.full_volume_key(md, fve.SecretBytes(bytes(32)))


# ---------------------------------------------------------------------- secret safety


def test_secrets_never_show(shared_keys, shared_metadata):
    key = shared_keys["aes-xts_128"]
    text = key.key.reveal().hex()
    for shown in (repr(key), str(key), repr(key.key), f"{key.key}"):
        assert text not in shown and "secret" in shown
    clear = shared_metadata["suspended"].protectors[0]
    assert clear.clear_key is not None
    assert clear.clear_key.reveal().hex() not in repr(clear)
    assert clear.clear_key.reveal().hex() not in repr(shared_metadata["suspended"])
    with pytest.raises(TypeError):
        pickle.dumps(key.key)
    assert fve.SecretBytes(b"a" * 16) == fve.SecretBytes(b"a" * 16)
    assert fve.SecretBytes(b"a" * 16) != fve.SecretBytes(b"b" * 16)


def test_unwrap_with_a_wrong_key_fails_authentication(fixture_metadata):
    assert fixture_metadata.fvek is not None
    with pytest.raises(CredentialsError):
        fve.unwrap_key(fixture_metadata.fvek, bytes(32))


# ------------------------------------------------------------------ boot sector layouts


def _boot(oem: bytes, jump: bytes = b"\xeb\x58\x90", bps: int = 512, spc: int = 8) -> bytearray:
    sector = bytearray(512)
    sector[0:3] = jump
    sector[3:11] = oem
    struct.pack_into("<HB", sector, 11, bps, spc)
    sector[510:512] = b"\x55\xaa"
    return sector


def test_to_go_boot_sector():
    sector = _boot(b"MSWIN4.1")
    sector[424:440] = fve.BITLOCKER_IDENTIFIER
    struct.pack_into("<3Q", sector, 440, 0x10000, 0x20000, 0x30000)
    boot = fve.parse_boot_sector(bytes(sector))
    assert boot.layout == fve.LAYOUT_TO_GO
    assert boot.metadata_offsets == (0x10000, 0x20000, 0x30000)


def test_vista_boot_sector():
    sector = _boot(fve.FVE_SIGNATURE, jump=b"\xeb\x52\x90", bps=512, spc=8)
    struct.pack_into("<Q", sector, 40, 123456)  # total sectors (64-bit)
    struct.pack_into("<Q", sector, 56, 100)  # first metadata cluster
    boot = fve.parse_boot_sector(bytes(sector))
    assert boot.layout == fve.LAYOUT_VISTA
    assert boot.total_sectors == 123456
    assert boot.metadata_offsets == (100 * 8 * 512,)


def test_not_bitlocker_boot_sectors():
    with pytest.raises(UnsupportedEncryptionError):
        fve.parse_boot_sector(bytes(_boot(b"NTFS    ")))
    with pytest.raises(UnsupportedEncryptionError):
        fve.parse_boot_sector(bytes(_boot(b"MSWIN4.1")))  # FAT32 without the GUID
    with pytest.raises(UnsupportedEncryptionError):
        fve.parse_boot_sector(b"-FVE-FS-")


def test_entries_out_of_bounds_are_errors():
    entry = struct.pack("<HHHH", 40, 7, 2, 1) + b"x" * 8  # claims 40 bytes, has 16
    with pytest.raises(EncryptionError, match="invalid size"):
        fve.parse_entries(entry)
    assert fve.parse_entries(b"\0" * 16) == ()


def test_unknown_metadata_version_is_unsupported(fixture_volume, bl, fixture_metadata):
    block = bytearray(fixture_volume.read_at(bl["metadata_offsets"][0], 1024))
    struct.pack_into("<H", block, 10, 3)
    with pytest.raises(UnsupportedEncryptionError, match="version 3"):
        fve.parse_metadata_block(bytes(block), fixture_metadata.boot)

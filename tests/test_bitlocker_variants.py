"""The Vista-format and the paused-conversion BitLocker fixtures, and raw-FVEK unlocking.

Oracles: the builder's truth (``fixtures/bitlocker-variants.truth.json``: the FVE facts and
the plain NTFS volume it encrypted), that plain twin itself byte for byte, TSK's ``fls``
and ``icat`` on the plain twin, pybde, ``bdeinfo`` and ``cryptsetup bitlkDump`` where they
accept the volume, and ../shared/README.md for the raw FVEKs of the Windows-made images.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
import zipfile

import pybde
import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.credentials import Credential, StaticCredentials
from selective_imager.errors import SelectiveImagerError, SourceTruncatedError
from selective_imager.sources import open_source
from selective_imager.volumes.bitlocker import fve, unlock
from selective_imager.volumes.bitlocker.fast import FastBdeStream
from selective_imager.volumes.bitlocker.unlock import open_bitlocker
from tests import oracles
from tests.conftest import FIXTURES

NAMES = ("bitlocker-vista", "bitlocker-paused")
# ../shared/README.md: raw FVEKs of three Windows-made images (password `password12!@`).
SHARED_FVEKS = {
    "aes_128": "84c3a3157e5f21dee140005220bc940e",
    "aes_256": "dd3885ef9948c8dc6ad1b54a6c4a4b6fb74b44d1d9775ac7ed186c35f1b59022",
    "aes-xts_128": "4eb949c473f0edfc379ad041670ddb9c4da0abdb4482a2c8bb47250493aa1ed5",
}


@pytest.fixture(scope="module")
def facts():
    return json.loads((FIXTURES / "bitlocker-variants.truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def plain_path(unpacked):
    return unpacked("gpt-bitlocker.plain-volume.raw")


@pytest.fixture(scope="module")
def plain(plain_path):
    return plain_path.read_bytes()


@pytest.fixture(scope="module")
def secrets(tmp_path_factory, facts):
    """Password files of both fixtures."""
    folder = tmp_path_factory.mktemp("bde-secrets")
    out = {}
    for name in NAMES:
        path = folder / f"{name}.password.txt"
        path.write_text(facts[name]["password"] + "\n", encoding="ascii")
        out[name] = path
    return out


@pytest.fixture(scope="module")
def opened(unpacked, facts):
    """Each fixture opened once through open_bitlocker with its password."""
    result = {}
    for name in NAMES:
        src = open_source(unpacked(f"{name}.raw"))
        creds = StaticCredentials([Credential("password", facts[name]["password"], "test")])
        result[name] = (src, open_bitlocker(src.stream, creds))
    yield result
    for src, bde in result.values():
        bde.close()
        src.close()


def _pybde(path, password):
    vol = pybde.volume()
    fh = open(path, "rb")
    vol.open_file_object(fh)
    vol.set_password(password)
    assert vol.unlock()
    return vol, fh


# ------------------------------------------------------------------ the builder's truth


@pytest.mark.parametrize("name", NAMES)
def test_fixture_files_match_truth(unpacked, facts, plain, name):
    assert hashlib.sha256(plain).hexdigest() == facts["plain_volume"]["sha256"]
    data = unpacked(f"{name}.raw").read_bytes()
    assert hashlib.sha256(data).hexdigest() == facts[name]["sha256"]
    assert len(data) == len(plain)


def test_vista_layout_as_documented(unpacked, facts, plain):
    t = facts["bitlocker-vista"]
    raw = unpacked("bitlocker-vista.raw").read_bytes()
    cluster = plain[13] * int.from_bytes(plain[11:13], "little")
    # Boot sector: the NTFS one, "-FVE-FS-", and metadata area 1's cluster at 0x38.
    assert raw[:3] == b"\xeb\x52\x90" and raw[3:11] == b"-FVE-FS-"
    assert int.from_bytes(raw[0x38:0x40], "little") * cluster == t["metadata_offsets"][0]
    # The rest of the first 8 KiB is left unencrypted in place.
    assert raw[512:8192] == plain[512:8192]
    md = fve.read_metadata(open_source(unpacked("bitlocker-vista.raw")).stream)
    assert md.boot.layout == fve.LAYOUT_VISTA
    assert (md.version, md.method) == (1, t["method_id"])
    assert md.metadata_offsets == tuple(t["metadata_offsets"])
    assert md.metadata_area_size == t["metadata_area_size"] == 16384
    assert md.mft_mirror_cluster == t["mft_mirror_cluster"]
    assert md.mft_mirror_cluster == int.from_bytes(plain[0x38:0x40], "little")


def test_paused_layout_as_documented(unpacked, facts, plain):
    t = facts["bitlocker-paused"]
    raw = unpacked("bitlocker-paused.raw").read_bytes()
    md = fve.read_metadata(open_source(unpacked("bitlocker-paused.raw")).stream)
    assert (md.state, md.next_state) == tuple(t["fve_state"]) == (5, 4)
    assert md.encrypted_volume_size == t["encrypted_size"] < len(plain)
    # Past the conversion point the volume is stored plain, except the metadata areas
    # and the volume-header copy (which lies past it too: the first 8 KiB, plain).
    areas = [(o, o + t["metadata_area_size"]) for o in t["metadata_offsets"]]
    header = t["volume_header_offset"]
    assert header >= t["encrypted_size"]
    assert raw[header : header + 8192] == plain[:8192]
    areas.append((header, header + 8192))
    for offset in range(t["encrypted_size"], len(plain), 4096):
        if not any(lo <= offset < hi for lo, hi in areas):
            assert raw[offset : offset + 4096] == plain[offset : offset + 4096], offset
    assert raw[0x10000:0x11000] != plain[0x10000:0x11000]  # below it: ciphertext


# ------------------------------------------------------------- unlock and read: byte-equal


@pytest.mark.parametrize("name", NAMES)
def test_unlocks_byte_equal_to_the_plain_twin(opened, plain, name):
    _src, bde = opened[name]
    assert bde.info.state == "unlocked", bde.info.reason
    # Cross-checked against pybde (which opens both), so the fast path decrypts.
    assert bde.info.decryptor == "openssl", bde.info.decryptor_note
    assert isinstance(bde.stream, FastBdeStream)
    assert bde.stream.size == len(plain)
    assert bde.stream.read_at(0, len(plain)) == plain
    # Unaligned reads across the Vista plain header and the paused conversion point.
    for offset, size in ((511, 700), (8100, 300), (0xBFF00, 600), (0xC0001, 5000)):
        assert bde.stream.read_at(offset, size) == plain[offset : offset + size]


def test_paused_conversion_is_reported(opened):
    assert opened["bitlocker-vista"][1].info.conversion == ""
    note = opened["bitlocker-paused"][1].info.conversion
    assert note.startswith("encryption paused or in progress: 786,432 bytes")
    assert "FVE state switching to encrypted" in note


def test_paused_decryption_built_here_reads_as_the_plain_twin(plain, tmp_path):
    """A decryption paused with 1.3 MiB still encrypted (Windows decrypts from the back,
    so the front stays encrypted): here the volume-header copy lies below the point, so
    it is encrypted, unlike in the committed paused-encryption fixture."""
    sys.path.insert(0, str(FIXTURES))
    import bitlocker_writer

    path = tmp_path / "decrypting.raw"
    facts = bitlocker_writer.encrypt_ntfs_volume(
        plain,
        path,
        password="Decrypt-Passw0rd!",
        recovery_password=bitlocker_writer.generate_recovery_password("decrypting"),
        volume_guid=uuid.UUID("b1e0c0de-0000-4000-8000-00000000dec0"),
        fvek=hashlib.sha256(b"decrypting FVEK").digest(),
        vmk=hashlib.sha256(b"decrypting VMK").digest(),
        salts=(bytes(range(16)), bytes(range(16, 32))),
        nonce_time=133537617300000000,
        description="decrypting",
        encrypted_size=0x150000,
        states=(5, 1),
    )
    assert facts["volume_header_offset"] < 0x150000
    raw = path.read_bytes()
    assert raw[0x1A0000:0x1B0000] == plain[0x1A0000:0x1B0000]  # past the point: plain
    with open_source(path) as src:
        bde = open_bitlocker(
            src.stream, StaticCredentials([Credential("password", "Decrypt-Passw0rd!")])
        )
        try:
            assert bde.info.decryptor == "openssl", bde.info.decryptor_note
            assert bde.info.conversion.startswith("decryption paused or in progress: 1,376,256")
            assert bde.stream.read_at(0, len(plain)) == plain
        finally:
            bde.close()


def test_vista_method_and_boot_sector(opened, plain):
    _src, bde = opened["bitlocker-vista"]
    assert bde.info.method == "AES-CBC 128 + Elephant diffuser"
    head = bde.stream.read_at(0, 512)
    assert head[3:11] == b"NTFS    "
    assert head[0x38:0x40] == plain[0x38:0x40]  # the MFT mirror cluster, restored


def test_pybde_oracle_on_the_fixtures(unpacked, facts, plain):
    """pybde decrypts both to the plain twin, except that it leaves the Vista boot
    sector's MFT-mirror field zero (the one difference the cross-check excuses)."""
    for name in NAMES:
        vol, fh = _pybde(unpacked(f"{name}.raw"), facts[name]["password"])
        try:
            data = vol.read_buffer_at_offset(len(plain), 0)
        finally:
            vol.close()
            fh.close()
        if name == "bitlocker-vista":
            assert data[0x38:0x40] == bytes(8)
            data = data[:0x38] + plain[0x38:0x40] + data[0x40:]
        assert data == plain, name


@pytest.mark.parametrize("name", NAMES)
def test_without_libbde_the_own_reader_opens_it(unpacked, facts, plain, monkeypatch, name):
    """Where libbde refuses a volume, the project's FVE reader and OpenSSL open it, and
    say so; the recovery password works as well as the password."""

    def refuse(*_args, **_kwargs):
        raise OSError("libbde_volume_open: unsupported (simulated refusal)")

    monkeypatch.setattr(unlock, "_open_handle", refuse)
    creds = StaticCredentials(
        [
            Credential("password", "not-it", "test"),
            Credential("recovery_password", facts[name]["recovery_password"], "test"),
        ]
    )
    with open_source(unpacked(f"{name}.raw")) as src:
        bde = open_bitlocker(src.stream, creds)
        try:
            assert bde.info.state == "unlocked", bde.info.reason
            assert bde.info.unlocked_with == "recovery_password"
            assert bde.info.decryptor == "openssl"
            assert "libbde could not open this volume" in bde.info.decryptor_note
            assert "not cross-checked against libbde" in bde.info.decryptor_note
            assert bde.info.volume_guid == facts[name]["volume_guid"]
            assert set(bde.info.protectors) == {"password", "recovery_password"}
            assert bde.stream.read_at(0, len(plain)) == plain
        finally:
            bde.close()


def test_without_libbde_a_wrong_password_stays_locked(unpacked, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("libbde_volume_open: unsupported (simulated refusal)")

    monkeypatch.setattr(unlock, "_open_handle", refuse)
    with open_source(unpacked("bitlocker-paused.raw")) as src:
        bde = open_bitlocker(src.stream, StaticCredentials([Credential("password", "Wr0ng!")]))
    assert bde.info.state == "locked" and bde.stream is None
    assert "does not open" in bde.info.reason and "Wr0ng" not in bde.info.reason


# ----------------------------------------------------------- ls -r and collect against TSK


@pytest.mark.parametrize("name", NAMES)
def test_ls_equals_fls_on_the_plain_twin(unpacked, plain_path, secrets, name):
    fls_paths, fls_ads, _ = oracles.fls_tree(plain_path, 0)
    result = CliRunner().invoke(
        app,
        ["ls", str(unpacked(f"{name}.raw")), "-r", "--json", "--password-file", str(secrets[name])],
    )
    assert result.exit_code == 0, result.output
    paths, ads = set(), set()
    for line in result.stdout.splitlines():
        entry = json.loads(line)
        paths.add(entry["path"])
        ads.update(f"{entry['path']}:{s['name']}" for s in entry["streams"])
    assert paths == fls_paths
    assert ads == fls_ads


@pytest.mark.parametrize("name", NAMES)
def test_collect_equals_icat_on_the_plain_twin(unpacked, plain_path, secrets, tmp_path, name):
    out = tmp_path / "out.zip"
    result = CliRunner().invoke(
        app,
        [
            "collect", str(unpacked(f"{name}.raw")), "-o", str(out), "--quiet", "--json",
            "--rule", "registry-and-mft", "--password-file", str(secrets[name]),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    addresses = oracles.fls_streams(plain_path, 0)
    with zipfile.ZipFile(out) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
    assert len(items) >= 5
    for item in items:
        assert item["outcome"] in ("collected", "duplicate"), item
        key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
        assert item["hashes"]["sha256"] == oracles.icat_sha256(plain_path, 0, addresses[key]), key


# --------------------------------------------------------------------- truncated volumes


def test_truncated_volume_reads_what_is_inside(unpacked, facts, plain, tmp_path):
    """Cut after the MFT: what lies inside the image reads as the plain twin, a read
    past the end is a typed error (a SourceError and an OSError), and ls still lists."""
    cut = tmp_path / "cut.raw"
    cut.write_bytes(unpacked("bitlocker-paused.raw").read_bytes()[:1_500_000])
    creds = StaticCredentials([Credential("password", facts["bitlocker-paused"]["password"])])
    with open_source(cut) as src:
        bde = open_bitlocker(src.stream, creds)
        try:
            assert bde.info.state == "unlocked", bde.info.reason
            assert bde.stream.size == len(plain)
            assert bde.stream.read_at(0, 1_400_000) == plain[:1_400_000]
            with pytest.raises(SourceTruncatedError, match="source ends") as caught:
                bde.stream.read_at(1_600_000, 4096)
            assert isinstance(caught.value, SelectiveImagerError)
            assert isinstance(caught.value, OSError)
        finally:
            bde.close()


def test_truncated_before_the_header_copy_is_an_error_not_a_traceback(unpacked, facts, tmp_path):
    """libbde fails to unlock a volume cut before its volume-header copy; the project's
    reader unlocks it (the key chain authenticates) and sector 0 is a typed error."""
    cut = tmp_path / "cut.raw"
    cut.write_bytes(unpacked("bitlocker-paused.raw").read_bytes()[:600_000])
    pw = tmp_path / "pw.txt"
    pw.write_text(facts["bitlocker-paused"]["password"] + "\n", encoding="ascii")
    result = CliRunner().invoke(app, ["info", str(cut), "--json", "--password-file", str(pw)])
    assert result.exit_code == 0, result.output
    vol = json.loads(result.stdout)["volumes"][0]
    assert vol["encryption"]["state"] == "unlocked"
    assert "failed to unlock" in vol["encryption"]["decryptor_note"]
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ other readers' verdicts


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def test_bdeinfo_accepts_paused_and_refuses_vista(unpacked, facts):
    bdeinfo = _tool("bdeinfo")
    paused = subprocess.run(
        [bdeinfo, "-p", facts["bitlocker-paused"]["password"], str(unpacked("bitlocker-paused.raw"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert paused.returncode == 0, paused.stderr
    assert "AES-XTS 128-bit" in paused.stdout
    assert facts["bitlocker-paused"]["volume_guid"] in paused.stdout
    # Debian's bdeinfo (libbde 20190102) rejects the Vista layout pybde 20260916 opens.
    vista = subprocess.run(
        [bdeinfo, "-p", facts["bitlocker-vista"]["password"], str(unpacked("bitlocker-vista.raw"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert vista.returncode != 0


def test_cryptsetup_dumps_the_paused_fvek_and_refuses_vista(unpacked, facts):
    cryptsetup = _tool("cryptsetup")
    t = facts["bitlocker-paused"]
    dump = subprocess.run(
        [cryptsetup, "bitlkDump", "--dump-volume-key", "--key-file", "-",
         str(unpacked("bitlocker-paused.raw"))],
        input=t["password"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert dump.returncode == 0, dump.stderr
    # "MK dump:" then the key bytes in hex, 16 to a line.
    lines = dump.stdout.split("MK dump:", 1)[1].splitlines()
    hexbytes = lines[0].split() + [
        b for line in lines[1:] if line.startswith("\t") for b in line.split()
    ]
    assert "".join(hexbytes) == t["fvek"]
    vista = subprocess.run(
        [cryptsetup, "bitlkDump", str(unpacked("bitlocker-vista.raw"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert vista.returncode != 0
    assert "version 1 is currently not supported" in vista.stderr + vista.stdout


# --------------------------------------------------------------------------- --fvek-file


@pytest.mark.parametrize("name", sorted(SHARED_FVEKS))
def test_fvek_file_unlocks_shared_images(shared, tmp_path, name):
    key = tmp_path / "key.fvek"
    key.write_text(SHARED_FVEKS[name] + "\n", encoding="ascii")
    image = shared(f"bitlocker/{name}.bin")
    result = CliRunner().invoke(app, ["info", str(image), "--json", "--fvek-file", str(key)])
    assert result.exit_code == 0, result.output
    assert SHARED_FVEKS[name] not in result.output
    enc = json.loads(result.stdout)["volumes"][0]["encryption"]
    assert enc["state"] == "unlocked"
    assert enc["unlocked_with"] == "fvek"
    assert enc["decryptor"] == "openssl"
    assert "not cross-checked against libbde" in enc["decryptor_note"]
    # Documented: the decrypted sector 0 reads "NTFS    " at byte 3; and the key
    # unlocks the same bytes the password does (pybde as the oracle).
    creds = StaticCredentials([Credential("fvek", SHARED_FVEKS[name], f"file {key}")])
    with open_source(image) as src:
        bde = open_bitlocker(src.stream, creds)
        vol = pybde.volume()
        with open(image, "rb") as fh:
            vol.open_file_object(fh)
            vol.set_password("password12!@")
            assert vol.unlock()
            assert bde.stream.read_at(0, 1 << 20) == vol.read_buffer_at_offset(1 << 20, 0)
            vol.close()
        assert bde.stream.read_at(3, 8) == b"NTFS    "
        assert SHARED_FVEKS[name] not in repr(bde) + repr(bde.info) + repr(creds)
        bde.close()


def test_wrong_or_malformed_fvek_stays_locked_without_quoting_it(shared):
    image = shared("bitlocker/aes-xts_128.bin")
    wrong = "11" * 32
    creds = StaticCredentials(
        [Credential("fvek", wrong, "test"), Credential("fvek", "zz-not-hex", "test")]
    )
    with open_source(image) as src:
        bde = open_bitlocker(src.stream, creds)
    assert bde.info.state == "locked"
    assert "does not decrypt the boot sector" in bde.info.reason
    assert "not hexadecimal" in bde.info.reason
    assert wrong not in bde.info.reason and "zz-not-hex" not in bde.info.reason

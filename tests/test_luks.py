"""LUKS1 and LUKS2: every cipher and KDF unlocks and decrypts byte for byte.

The fixtures are built in the session by ``fixtures/build_luks.py``: cryptsetup encrypts
a real ext4 image in place (``reencrypt --encrypt``), so the ciphertext, the key slots
and the header are cryptsetup's; the oracles are the plain ext4 image (SHA-256), the
volume key ``cryptsetup luksDump --dump-volume-key`` prints, ``cryptsetup luksDump``
listings, and TSK's ``fls -r -p`` / ``icat`` on the plain image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.credentials import (
    LUKS_KEY_FILE,
    LUKS_PASSPHRASE,
    PASSWORD,
    Credential,
    PromptingCredentials,
    StaticCredentials,
)
from selective_imager.discovery import open_disk
from selective_imager.models import EncryptionState
from selective_imager.streams import FileStream
from selective_imager.volumes.luks import header as luks_header
from selective_imager.volumes.luks.keyslots import unlock
from tests import oracles
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "fixtures"))
import build_luks

WRONG = "Wr0ng-LUKS-Passphrase-77"


@pytest.fixture(scope="session")
def luks(tmp_path_factory):
    """(directory, truth) of the LUKS fixtures, built once per session (~10 s)."""
    for tool in ("cryptsetup", "mkfs.ext4"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/setup.sh installs cryptsetup-bin, e2fsprogs)")
    out = tmp_path_factory.mktemp("luks")
    return out, build_luks.build(out)


@pytest.fixture(scope="session")
def plain_listing(luks):
    out, truth = luks
    return oracles.fls_streams(out / truth["plain"], 0)


def variant(luks, name):
    out, truth = luks
    return out / truth["variants"][name]["file"], truth["variants"][name]


def open_with(image, *creds: Credential):
    return open_disk(str(image), StaticCredentials(list(creds)))


def passphrase(v) -> Credential:
    return Credential(LUKS_PASSPHRASE, v["passphrase"], "test")


ALL = [*build_luks.VARIANTS, build_luks.MULTISEG]


@pytest.mark.parametrize("name", ALL)
def test_unlocks_and_decrypts_byte_for_byte(luks, name):
    _out, truth = luks
    image, v = variant(luks, name)
    with open_with(image, passphrase(v)) as disk:
        (vol,) = disk.volumes
        enc = vol.report.encryption
        assert enc is not None and enc.state == EncryptionState.UNLOCKED, vol.report.error
        assert enc.type == "luks"
        assert enc.method == f"{v['cipher']} {v['key_bits']}-bit"
        assert enc.volume_guid == v["uuid"]
        assert enc.description == v["label"]
        assert enc.unlocked_with == "luks_passphrase (keyslot 0)"
        assert enc.protectors == tuple(f"keyslot {i} ({v['kdf']})" for i in v["keyslots"])
        assert vol.stream is not None
        plain = vol.stream.read_at(0, truth["plain_size"])
        assert hashlib.sha256(plain).hexdigest() == truth["plain_sha256"]
        details = vol.report.details["luks"]
        assert details["version"] == v["version"]
        assert details["payload_offset"] == v["payload_offset"]
        assert details["sector_size"] == v["sector_size"]
        assert len(details["segments"]) == v.get("segments", 1)
        assert [k["kdf"] for k in details["keyslots"]] == [v["kdf"]] * len(v["keyslots"])
        assert vol.report.filesystem is not None and vol.report.filesystem.type == "ext4"
        if v["version"] == 1:
            assert enc.decryptor == "openssl"
            assert details["cross_check"].startswith("equal to pyluksde (same passphrase)")
        # The volume: everything from the payload offset to the end of the image.
        assert vol.stream.size == image.stat().st_size - v["payload_offset"]


@pytest.mark.parametrize("name", ALL)
def test_volume_key_equals_cryptsetup_dump(luks, name):
    image, v = variant(luks, name)
    stream = FileStream(str(image), image.stat().st_size)
    try:
        header = luks_header.read_header(stream)
        (outcome,) = unlock(header, stream, v["passphrase"].encode())
        assert outcome.key is not None
        assert outcome.key.key.hex() == v["volume_key_hex"]
        assert "redacted" in repr(outcome) and v["volume_key_hex"] not in repr(outcome)
    finally:
        stream.close()


def test_multiseg_listed_by_cryptsetup(luks):
    image, _ = variant(luks, build_luks.MULTISEG)
    listing = subprocess.run(
        ["cryptsetup", "luksDump", str(image)], capture_output=True, text=True, check=True
    ).stdout
    assert "0: crypt" in listing and "1: crypt" in listing


@pytest.mark.parametrize("name", ["luks1-xts-pbkdf2", "luks2-xts-argon2id"])
def test_every_key_slot_tried_key_file(luks, name):
    out, truth = luks
    image, v = variant(luks, name)
    key_file = Credential(LUKS_KEY_FILE, str(out / v["key_file"]), "file")
    wrong = Credential(LUKS_PASSPHRASE, WRONG, "env W")
    with open_with(image, wrong, key_file) as disk:
        (vol,) = disk.volumes
        enc = vol.report.encryption
        assert enc is not None and enc.unlocked_with == "luks_key_file (keyslot 1)"
        assert vol.stream is not None
        digest = hashlib.sha256(vol.stream.read_at(0, truth["plain_size"])).hexdigest()
        assert digest == truth["plain_sha256"]
        if v["version"] == 1:
            # The fixture's key file is binary; pyluksde takes text only and says so.
            assert "not cross-checked" in vol.report.details["luks"]["cross_check"]


@pytest.mark.parametrize("name", ALL)
def test_cli_ls_recursive_equals_fls(luks, plain_listing, name):
    image, v = variant(luks, name)
    result = CliRunner().invoke(
        app, ["ls", str(image), "-r", "--json", "--luks-passphrase-env", "PW"],
        env={"PW": v["passphrase"]},
    )
    assert result.exit_code == 0, result.output
    listed = {json.loads(line)["path"] for line in result.stdout.splitlines()}
    expected = {p for p in plain_listing if not p.startswith("$OrphanFiles")}
    assert listed == expected, name


def test_cli_collect_equals_icat(luks, plain_listing, tmp_path):
    out_dir, truth = luks
    plain = out_dir / truth["plain"]
    rule = tmp_path / "all.yaml"
    rule.write_text("name: all\ntitle: t\ntargets:\n  - name: t\n    paths: ['**']\n")
    for name in ("luks1-ecb", "luks2-cbc-plain64"):
        image, v = variant(luks, name)
        pw_file = tmp_path / f"{name}.pw"
        pw_file.write_text(v["passphrase"] + "\n")
        container = tmp_path / f"{name}.zip"
        result = CliRunner().invoke(
            app,
            ["collect", str(image), "-o", str(container), "--json", "--quiet", "--rule", str(rule),
             "--luks-passphrase-file", str(pw_file)],
        )
        assert result.exit_code == 0, result.output
        with zipfile.ZipFile(container) as zf:
            items = [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]
            acq = json.loads(zf.read("acquisition.json"))
        files = [i for i in items if i["outcome"] in ("collected", "duplicate") and i["size"]]
        assert {i["path"] for i in files} >= {"etc/hostname", "var/log/blob.bin",
                                            "home/user/naïve résumé.txt"}
        for item in files:
            assert item["hashes"]["sha256"] == oracles.icat_sha256(
                plain, 0, plain_listing[item["path"]]
            ), item["path"]
        enc = acq["volumes"][0]["encryption"]
        assert enc["type"] == "luks" and enc["state"] == "unlocked"


def _two_partition_disk(luks, tmp_path):
    """MBR: p1 a LUKS volume, p2 the plain ext4 image."""
    out, truth = luks
    image, v = variant(luks, "luks2-ecb")
    disk = tmp_path / "disk.raw"
    luks_size = image.stat().st_size
    start1, start2 = 2048, 2048 + luks_size // 512
    with disk.open("wb") as f:
        f.truncate((start2 + truth["plain_size"] // 512 + 2048) * 512)
    subprocess.run(
        ["sfdisk", "-q", str(disk)],
        input=f"label: dos\n{start1},{luks_size // 512},83\n{start2},{truth['plain_size'] // 512},83\n",
        text=True, check=True, capture_output=True,
    )
    with disk.open("r+b") as f:
        f.seek(start1 * 512)
        f.write(image.read_bytes())
        f.seek(start2 * 512)
        f.write((out / truth["plain"]).read_bytes())
    return disk, v


def test_wrong_passphrase_locked_rest_goes_on(luks, tmp_path):
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk not installed (fdisk package)")
    disk, _ = _two_partition_disk(luks, tmp_path)
    result = CliRunner().invoke(
        app, ["info", str(disk), "--json", "--luks-passphrase-env", "W"], env={"W": WRONG}
    )
    assert result.exit_code == 0, result.output
    vols = json.loads(result.stdout)["volumes"]
    assert vols[0]["encryption"]["state"] == "locked"
    assert "wrong" in vols[0]["error"] and "keyslot 0 (pbkdf2)" in vols[0]["error"]
    assert vols[0]["luks"]["cipher"] == "aes-ecb"
    assert vols[1]["filesystem"]["type"] == "ext4"
    proc = subprocess.run(
        [sys.executable, "-m", "selective_imager", "ls", str(disk), "--volume", "1",
         "--luks-passphrase-env", "W"],
        capture_output=True, text=True, env={"W": WRONG, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr.encode()
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "locked" in proc.stderr


def test_damaged_primary_header_uses_secondary(luks, tmp_path):
    _out, truth = luks
    image, v = variant(luks, "luks2-xts-argon2id")
    damaged = tmp_path / "damaged.img"
    data = bytearray(image.read_bytes())
    data[4096:4096 + 512] = b"\xff" * 512  # the primary JSON area
    damaged.write_bytes(bytes(data))
    # cryptsetup itself still reads the volume from its secondary header; it also repairs
    # the primary in place when it can write, so it is given a copy.
    for_cryptsetup = tmp_path / "copy.img"
    for_cryptsetup.write_bytes(bytes(data))
    dump = build_luks.dump(for_cryptsetup, v["passphrase"].encode())
    assert dump["volume_key_hex"] == v["volume_key_hex"]
    assert for_cryptsetup.read_bytes() != bytes(data)  # it rewrote the damaged copy
    with open_with(damaged, passphrase(v)) as disk:
        (vol,) = disk.volumes
        assert vol.report.encryption is not None
        assert vol.report.encryption.state == EncryptionState.UNLOCKED
        details = vol.report.details["luks"]
        assert details["header_copy"] == "secondary"
        assert any("primary LUKS2 header sha256 checksum mismatch" in n for n in details["notes"])
        assert "secondary copy was used" in vol.report.encryption.fallback
        plain = vol.stream.read_at(0, truth["plain_size"])
        assert hashlib.sha256(plain).hexdigest() == truth["plain_sha256"]
    # Both copies damaged: locked with one line saying so.
    hdr_size = int.from_bytes(data[8:16], "big")
    data[hdr_size + 4096 : hdr_size + 4096 + 512] = b"\xff" * 512
    damaged.write_bytes(bytes(data))
    with open_with(damaged, passphrase(v)) as disk:
        (vol,) = disk.volumes
        assert vol.report.encryption is not None
        assert vol.report.encryption.state == EncryptionState.LOCKED
        assert "LUKS2 header unreadable" in vol.report.error
        assert "\n" not in vol.report.error


def test_truncated_volumes(luks, tmp_path):
    out, truth = luks
    image, v = variant(luks, "luks2-xts-argon2id")
    data = image.read_bytes()
    # Cut inside the payload: the part present decrypts, the volume is that long.
    cut = tmp_path / "cut.img"
    keep = v["payload_offset"] + 1_000_000 + 100
    cut.write_bytes(data[:keep])
    with open_with(cut, passphrase(v)) as disk:
        (vol,) = disk.volumes
        assert vol.stream is not None
        assert vol.stream.size == (1_000_000 + 100) // 512 * 512
        assert any("not a whole sector" in n for n in vol.report.details["luks"]["notes"])
        plain = (out / truth["plain"]).read_bytes()
        assert vol.stream.read_at(0, vol.stream.size) == plain[: vol.stream.size]
    result = CliRunner().invoke(
        app, ["ls", str(cut), "-r", "--luks-passphrase-env", "PW"], env={"PW": v["passphrase"]}
    )
    assert "Traceback" not in result.output
    # LUKS1 cut inside a sector: pyluksde counts the partial sector, the own reader does not;
    # the rest agrees, so the own reader is kept.
    image1, v1 = variant(luks, "luks1-cbc-plain")
    cut.write_bytes(image1.read_bytes()[: v1["payload_offset"] + 1_000_000 + 100])
    with open_with(cut, passphrase(v1)) as disk:
        (vol,) = disk.volumes
        assert vol.report.encryption.decryptor == "openssl"
        assert vol.report.details["luks"]["cross_check"].endswith(
            "pyluksde also counts the 164 bytes of a partial last sector"
        )
        plain = (out / truth["plain"]).read_bytes()
        assert vol.stream.read_at(0, vol.stream.size) == plain[: vol.stream.size]
    # Cut inside the key-slot area: locked, one line.
    cut.write_bytes(data[: 40 * 1024])
    proc = subprocess.run(
        [sys.executable, "-m", "selective_imager", "info", str(cut), "--luks-passphrase-env", "PW"],
        capture_output=True, text=True, env={"PW": v["passphrase"], "PATH": "/usr/bin:/bin",
                                             "COLUMNS": "300"},
    )
    assert "Traceback" not in proc.stderr
    assert "key material beyond the end of the image (truncated)" in proc.stdout


def test_prompt_only_when_a_locked_luks_volume_is_met(luks, unpacked):
    image, v = variant(luks, "luks2-cbc-plain")
    asked: list[str] = []

    def prompt(kind, message):
        asked.append(message)
        return v["passphrase"] if kind == LUKS_PASSPHRASE else ""

    creds = PromptingCredentials(ask=(LUKS_PASSPHRASE, PASSWORD), prompt=prompt)
    # A BitLocker disk asks for the BitLocker password only.
    with open_disk(str(unpacked("gpt-bitlocker.raw")), creds):
        pass
    assert asked == ["BitLocker password for partition 2"]
    with open_disk(str(image), creds) as disk:
        assert disk.volumes[0].report.encryption.state == EncryptionState.UNLOCKED
    assert asked[1:] == ["LUKS passphrase for the source"]
    result = CliRunner().invoke(
        app, ["info", str(image), "--json", "--luks-passphrase"], input=v["passphrase"] + "\n"
    )
    assert result.exit_code == 0
    assert '"unlocked"' in result.stdout


def test_passphrase_and_key_never_leak(luks, tmp_path):
    """Not in the output, the container (manifest, acquisition.json, log), journals or repr."""
    _out, _ = luks
    image, v = variant(luks, "luks1-xts-pbkdf2")
    secrets = [v["passphrase"].encode(), WRONG.encode(), bytes.fromhex(v["volume_key_hex"]),
               v["volume_key_hex"].encode()]

    def assert_clean(*blobs):
        for blob in blobs:
            data = blob.encode() if isinstance(blob, str) else blob
            for secret in secrets:
                assert secret not in data, f"secret leaked: {secret[:8]!r}..."
                assert secret not in data.replace(b"\\n", b"")

    pw_file = tmp_path / "pw.txt"
    pw_file.write_text(v["passphrase"] + "\n")
    env = {"PW": v["passphrase"], "W": WRONG}
    runner = CliRunner()
    for i, creds in enumerate((
        ["--luks-passphrase-env", "PW"],
        ["--luks-passphrase-file", str(pw_file), "--luks-passphrase-env", "W"],
        ["--luks-passphrase-env", "W"],
    )):
        container = tmp_path / f"c{i}.zip"
        result = runner.invoke(
            app, ["collect", str(image), "-o", str(container), "--json", "--rule", "linux-logs",
                  *creds], env=env,
        )
        assert result.exit_code in (0, 1), result.output
        with zipfile.ZipFile(container) as zf:
            members = [zf.read(n) for n in zf.namelist()]
            assert "acquisition.json" in zf.namelist() and "log.jsonl" in zf.namelist()
        beside = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(f"c{i}.zip")]
        assert_clean(result.output, *members, *beside)
        info = runner.invoke(app, ["info", str(image), "--json", *creds], env=env)
        assert_clean(info.output)
    prompted = runner.invoke(
        app, ["info", str(image), "--luks-passphrase"], input=v["passphrase"] + "\n"
    )
    assert "unlocked" in prompted.output
    assert_clean(prompted.output)
    with open_with(image, passphrase(v)) as disk:
        (vol,) = disk.volumes
        assert_clean(repr(vol.report), repr(vol.stream), repr(disk.handles),
                     repr(passphrase(v)), str(passphrase(v)))
    proc = subprocess.run(
        [sys.executable, "-m", "selective_imager", "info", str(image), "--luks-passphrase", WRONG],
        capture_output=True, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr
    assert_clean(proc.stdout, proc.stderr)


def test_zeroed_primary_found_by_secondary(luks, tmp_path):
    _, truth = luks
    image, v = variant(luks, "luks2-xts4k-argon2i")
    data = bytearray(image.read_bytes())
    data[:4096] = bytes(4096)  # no primary magic at all
    zeroed = tmp_path / "zeroed.img"
    zeroed.write_bytes(bytes(data))
    with open_with(zeroed, passphrase(v)) as disk:
        (vol,) = disk.volumes
        assert vol.report.details["luks"]["header_copy"] == "secondary"
        plain = vol.stream.read_at(0, truth["plain_size"])
        assert hashlib.sha256(plain).hexdigest() == truth["plain_sha256"]


@pytest.mark.parametrize("name", ["luks1-cbc-plain", "luks2-cbc-plain"])
def test_corrupted_headers_never_raise(luks, name):
    """Random byte damage in the header area: a report (locked or unlocked), no exception."""
    import random

    from selective_imager.streams import ByteStream
    from selective_imager.volumes.luks.layer import open_luks

    class Mem(ByteStream):
        def __init__(self, data):
            super().__init__(len(data))
            self.data = data

        def _read_at(self, offset, size):
            return self.data[offset : offset + size]

    image, _ = variant(luks, name)
    original = image.read_bytes()
    rng = random.Random(name)
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(0, 1024 if name.startswith("luks1") else 8192)] = rng.randrange(256)
        result = open_luks(Mem(bytes(data)), None, None)
        assert result.info.state == EncryptionState.LOCKED
        assert "\n" not in result.info.reason


def test_cross_check_difference_switches_to_pyluksde(luks):
    """A reader that disagrees with pyluksde is not used: pyluksde decrypts, and says why."""
    from selective_imager.volumes.luks.cipher import sector_cipher
    from selective_imager.volumes.luks.layer import LuksStream, _cross_check, _Run

    _, truth = luks
    image, v = variant(luks, "luks1-cbc-plain")
    raw = FileStream(str(image), image.stat().st_size)
    try:
        size = raw.size - v["payload_offset"]
        # The right key with the wrong IV scheme (plain64 vs ESSIV): garbage after sector 0.
        wrong = sector_cipher("aes-cbc-essiv:sha256", bytes.fromhex(v["volume_key_hex"]), 512)
        bad = LuksStream(raw, [_Run(0, size, v["payload_offset"], 0, wrong, 512)])
        chosen, handles, note = _cross_check(raw, bad, passphrase(v))
        assert chosen is not bad and handles
        assert note == "own reader differs from pyluksde at 0: pyluksde used"
        plain = chosen.read_at(0, truth["plain_size"])
        assert hashlib.sha256(plain).hexdigest() == truth["plain_sha256"]
        for handle in handles:
            handle.close()
    finally:
        raw.close()


def test_integrity_segment_refused(luks, tmp_path):
    """dm-integrity moves the sectors: such a segment is reported, not misread."""
    image, v = variant(luks, "luks2-ecb")
    copy = tmp_path / "integrity.img"
    shutil.copyfile(image, copy)
    data = copy.read_bytes()
    hdr_size = int.from_bytes(data[8:16], "big")
    meta = json.loads(data[4096:hdr_size].split(b"\0", 1)[0])
    meta["segments"]["0"]["integrity"] = {"type": "hmac(sha256)", "journal_encryption": "none",
                                          "journal_integrity": "none"}
    build_luks._rewrite_json(copy, meta)
    with open_with(copy, passphrase(v)) as disk:
        (vol,) = disk.volumes
        assert vol.report.encryption.state == EncryptionState.LOCKED
        assert "dm-integrity (hmac(sha256)): not supported" in vol.report.error


def test_collect_goes_on_past_a_locked_luks_partition(luks, plain_listing, tmp_path):
    if shutil.which("sfdisk") is None:
        pytest.skip("sfdisk not installed (fdisk package)")
    out_dir, truth = luks
    disk, _ = _two_partition_disk(luks, tmp_path)
    container = tmp_path / "c.zip"
    result = CliRunner().invoke(
        app, ["collect", str(disk), "-o", str(container), "--json", "--quiet", "--rule", "linux-logs",
              "--luks-passphrase-env", "W"], env={"W": WRONG},
    )
    assert result.exit_code == 1, result.output  # partial: one volume stayed locked
    summary = json.loads(result.stdout)
    assert any("LUKS volume locked" in e for e in summary["volume_errors"])
    with zipfile.ZipFile(container) as zf:
        items = [json.loads(line) for line in zf.read("manifest.jsonl").decode().splitlines()]
    collected = {i["path"]: i for i in items if i["outcome"] == "collected"}
    assert set(collected) == {"var/log/syslog", "var/log/blob.bin"}
    for path, item in collected.items():
        assert item["volume"] == 2
        assert item["hashes"]["sha256"] == oracles.icat_sha256(
            out_dir / truth["plain"], 0, plain_listing[path]
        )

"""Every Windows-made BitLocker image in ../shared reaches its documented state.

Oracle: ../shared/README.md (credentials, states, and "decrypted sector 0 reads
'NTFS    ' at byte 3").
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.credentials import Credential, StaticCredentials
from selective_imager.sources import open_source
from selective_imager.volumes.bitlocker.unlock import is_bitlocker, open_bitlocker
from tests.conftest import SHARED

PASSWORD = "password12!@"
RECOVERY = "284867-596541-514998-422114-660297-261613-215424-199408"
BEK = SHARED / "bitlocker" / "startup_key.bek"

CASES = [
    # image, credential kind, secret, expected state, expected method
    ("aes_128", "password", PASSWORD, "unlocked", "AES-CBC 128"),
    ("aes_256", "password", PASSWORD, "unlocked", "AES-CBC 256"),
    ("aes_128_diffuser", "password", PASSWORD, "unlocked", "AES-CBC 128 + Elephant diffuser"),
    ("aes-xts_128", "password", PASSWORD, "unlocked", "AES-XTS 128"),
    ("aes-xts_256", "password", PASSWORD, "unlocked", "AES-XTS 256"),
    ("recovery_password", "recovery_password", RECOVERY, "unlocked", "AES-XTS 128"),
    ("startup_key", "startup_key", str(BEK), "unlocked", "AES-XTS 128"),
    ("suspended", None, None, "suspended", "AES-XTS 128"),
    ("decrypted", None, None, "decrypted", "none"),
]


@pytest.mark.parametrize(("name", "kind", "secret", "state", "method"), CASES)
def test_unlocks_to_documented_state(shared, name, kind, secret, state, method):
    path = shared(f"bitlocker/{name}.bin")
    creds = StaticCredentials([Credential(kind, secret, "test")] if kind else [])
    with open_source(path) as src:
        assert is_bitlocker(src.stream)
        bde = open_bitlocker(src.stream, creds)
        try:
            assert bde.info.state == state, bde.info.reason
            assert bde.info.method == method
            assert bde.stream is not None
            # Documented: the decrypted sector 0 reads "NTFS    " at byte 3.
            assert bde.stream.read_at(3, 8) == b"NTFS    "
            if kind:
                assert bde.info.unlocked_with == kind
                assert kind in bde.info.protectors
        finally:
            bde.close()


@pytest.mark.parametrize("name", ["aes_128", "aes-xts_256", "recovery_password", "startup_key"])
def test_stays_locked_without_credential(shared, name):
    path = shared(f"bitlocker/{name}.bin")
    with open_source(path) as src:
        bde = open_bitlocker(src.stream, StaticCredentials())
        assert bde.info.state == "locked"
        assert bde.stream is None
        assert "no credential given" in bde.info.reason


def test_wrong_password_and_malformed_recovery_stay_locked(shared):
    path = shared("bitlocker/recovery_password.bin")
    creds = StaticCredentials(
        [
            Credential("password", "not-the-password", "test"),
            Credential("recovery_password", "111111-222222", "test"),
        ]
    )
    with open_source(path) as src:
        bde = open_bitlocker(src.stream, creds)
    assert bde.info.state == "locked"
    assert "not-the-password" not in bde.info.reason
    assert "111111" not in bde.info.reason


def test_second_credential_unlocks_after_wrong_first(shared):
    path = shared("bitlocker/aes-xts_128.bin")
    creds = StaticCredentials(
        [Credential("password", "wrong", "a"), Credential("password", PASSWORD, "b")]
    )
    with open_source(path) as src:
        bde = open_bitlocker(src.stream, creds)
        assert bde.info.state == "unlocked"
        bde.close()


def test_truncated_volume_opens_with_metadata_fallback(shared, tmp_path):
    """libbde refuses a volume whose third FVE metadata copy is cut off; we open it anyway."""
    import pybde

    full = shared("bitlocker/aes-xts_128.bin").read_bytes()
    third = int.from_bytes(full[192:200], "little")
    cut = tmp_path / "truncated.bin"
    cut.write_bytes(full[: third - 4096])
    # The oracle: libbde on its own refuses it.
    vol = pybde.volume()
    with open(cut, "rb") as fh, pytest.raises(OSError):
        vol.open_file_object(fh)
    with open_source(cut) as src:
        bde = open_bitlocker(src.stream, StaticCredentials([Credential("password", PASSWORD)]))
        assert bde.info.state == "unlocked"
        assert "copy 3" in bde.info.fallback
        assert bde.stream is not None and bde.stream.read_at(3, 8) == b"NTFS    "
        bde.close()


def test_info_json_reports_locked_with_reason_and_exit_0(shared):
    path = shared("bitlocker/aes_128.bin")
    result = CliRunner().invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    vol = json.loads(result.stdout)["volumes"][0]
    assert vol["encryption"]["state"] == "locked"
    assert vol["encryption"]["protectors"] == ["password"]
    assert "no credential given" in vol["error"]


def test_info_json_with_bek(shared):
    path = shared("bitlocker/startup_key.bin")
    result = CliRunner().invoke(app, ["info", str(path), "--json", "--bek", str(BEK)])
    assert result.exit_code == 0, result.output
    enc = json.loads(result.stdout)["volumes"][0]["encryption"]
    assert enc["state"] == "unlocked"
    assert enc["unlocked_with"] == "startup_key"
    assert enc["volume_guid"] == "81fb9ffe-0199-47f6-9779-ebf07bd69fc6"

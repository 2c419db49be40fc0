"""No secret reaches any output, log, container member, repr or traceback.

Each secret is passed the ways the CLI accepts (file, environment, prompt) and, wrongly,
on the command line; then every byte the tool produced is searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.credentials import Credential
from tests.conftest import FIXTURES

PASSWORD = (FIXTURES / "gpt-bitlocker.password.txt").read_text().splitlines()[0]
RECOVERY = (FIXTURES / "gpt-bitlocker.recovery.txt").read_text().splitlines()[0]
WRONG = "Wr0ng-Secret-Value-42"


def assert_clean(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for secret in (PASSWORD, RECOVERY, WRONG):
            assert secret.encode() not in data, f"secret leaked: {secret!r}"
            assert secret.encode("utf-16-le") not in data


def container_bytes(path) -> list[bytes]:
    with zipfile.ZipFile(path) as zf:
        return [zf.read(n) for n in zf.namelist()] + [path.read_bytes()]


def test_credential_repr_and_str_redact():
    cred = Credential("password", PASSWORD, "env X")
    assert_clean(repr(cred), str(cred), cred.describe(), repr([cred]))
    assert "redacted" in repr(cred)


def test_file_env_and_prompt_never_leak(unpacked, tmp_path):
    image = unpacked("gpt-bitlocker.raw")
    runner = CliRunner()
    env = {"SI_PW": PASSWORD, "SI_RP": RECOVERY, "SI_WRONG": WRONG}
    wrong_file = tmp_path / "wrong.txt"
    wrong_file.write_text(WRONG + "\n")
    invocations = [
        ["info", str(image), "--json", "--password-env", "SI_PW"],
        ["info", str(image), "--recovery-password-env", "SI_RP"],
        ["info", str(image), "--password-file", str(FIXTURES / "gpt-bitlocker.password.txt")],
        ["info", str(image), "--json", "--password-env", "SI_WRONG", "--password-file", str(wrong_file)],
        ["ls", str(image), "-r", "--volume", "2", "--password-env", "SI_PW"],
        ["ls", str(image), "--volume", "2", "--password-env", "SI_WRONG"],
    ]
    for args in invocations:
        result = runner.invoke(app, args, env=env)
        assert result.exit_code in (0, 2), result.output
        assert_clean(result.output, result.stdout)
    prompted = runner.invoke(app, ["info", str(image), "--json", "--password"], input=PASSWORD + "\n")
    assert prompted.exit_code == 0
    assert '"unlocked"' in prompted.stdout
    assert_clean(prompted.output)


@pytest.mark.parametrize("secret_env", ["SI_PW", "SI_WRONG"])
def test_container_log_and_json_never_leak(unpacked, tmp_path, secret_env):
    image = unpacked("gpt-bitlocker.raw")
    out = tmp_path / "c.zip"
    env = {"SI_PW": PASSWORD, "SI_WRONG": WRONG}
    result = CliRunner().invoke(
        app,
        ["collect", str(image), "-o", str(out), "--json", "--password-env", secret_env,
         "--recovery-password-file", str(FIXTURES / "gpt-bitlocker.recovery.txt")],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert_clean(result.output, *container_bytes(out))


def test_secret_typed_on_command_line_is_not_echoed(unpacked):
    """``--password`` takes no value; a secret typed after it must not be echoed back."""
    image = unpacked("gpt-bitlocker.raw")
    for args in (
        ["info", str(image), "--password", WRONG],
        ["info", str(image), f"--password={WRONG}"],
        ["collect", str(image), "--dry-run", "--recovery-password", WRONG],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "selective_imager", *args],
            capture_output=True, stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 2, proc.stderr
        assert_clean(proc.stdout, proc.stderr)
        assert b"Traceback" not in proc.stderr


def test_tracebacks_hide_locals():
    from selective_imager.cli import app as cli

    assert cli.app.pretty_exceptions_show_locals is False
    assert cli.rules_app.pretty_exceptions_show_locals is False

"""Encryption at rest (age v1), checked against the reference ``age`` CLI.

Oracles: ``age``/``age-keygen`` (Debian ``age``) decrypt what the tool writes and encrypt
what the tool reads; ``ssh-keygen`` makes the SSH keys; Info-ZIP ``unzip -t``,
``sha256sum -c`` and The Sleuth Kit's icat for the collected content.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from selective_imager.container import age
from selective_imager.errors import ContainerError
from tests import oracles
from tests.conftest import need_tool


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """An age X25519 identity, an ssh-ed25519 and an ssh-rsa key pair, made by the CLIs."""
    need_tool("age")
    d = tmp_path_factory.mktemp("keys")
    made = subprocess.run(
        [need_tool("age-keygen"), "-o", str(d / "age.key")], capture_output=True, text=True, check=True
    )
    public = made.stderr.strip().split()[-1]
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        subprocess.run(
            [need_tool("ssh-keygen"), "-q", "-t", kind, *extra, "-N", "", "-f", str(d / kind)],
            check=True,
        )
    return {"dir": d, "age_pub": public}


def _age_decrypt(identity, path) -> bytes:
    done = subprocess.run(["age", "-d", "-i", str(identity), str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("size", [0, 1, 65536, 2 * 65536 + 5])
def test_age_cli_decrypts_what_the_writer_writes(keys, tmp_path, size):
    d = keys["dir"]
    recipients = [
        age.parse_recipient(keys["age_pub"]),
        age.parse_recipient((d / "ed25519.pub").read_text()),
        age.parse_recipient((d / "rsa.pub").read_text()),
    ]
    data = os.urandom(size)
    out = tmp_path / "x.age"
    writer = age.AgeWriter(str(out), recipients, overwrite=False)
    # As the ZIP writer does: a header is held, written over after what follows it.
    writer.write(b"\0" * min(10, size))
    writer.hold(0, 10)
    writer.write(data[10:])
    writer.seek(0)
    writer.write(data[:10])
    writer.seek(size)
    writer.release()
    writer.close()
    for identity in ("age.key", "ed25519", "rsa"):
        assert _age_decrypt(d / identity, out) == data, identity


@pytest.mark.parametrize(("flag", "key", "identity"), [
    ("-r", "age_pub", "age.key"),
    ("-R", "ed25519.pub", "ed25519"),
    ("-R", "rsa.pub", "rsa"),
])
def test_reader_decrypts_what_the_age_cli_encrypts(keys, tmp_path, flag, key, identity):
    d = keys["dir"]
    data = os.urandom(3 * 65536 + 77)
    (tmp_path / "plain").write_bytes(data)
    target = keys["age_pub"] if key == "age_pub" else str(d / key)
    enc = tmp_path / "a.age"
    subprocess.run(["age", flag, target, "-o", str(enc), str(tmp_path / "plain")], check=True)
    with age.open_plaintext(enc, age.read_identities(d / identity)) as fh:
        assert fh.read() == data
        fh.seek(65536 + 3)  # random access: a chunk in the middle
        assert fh.read(100) == data[65539:65639]
    # A flipped ciphertext byte and a truncation are refused.
    raw = bytearray(enc.read_bytes())
    raw[-100] ^= 1
    (tmp_path / "bad.age").write_bytes(bytes(raw))
    with pytest.raises(ContainerError, match="authenticate"):
        age.open_plaintext(tmp_path / "bad.age", age.read_identities(d / identity)).read()
    (tmp_path / "cut.age").write_bytes(enc.read_bytes()[:-65536])
    with pytest.raises(ContainerError):
        age.open_plaintext(tmp_path / "cut.age", age.read_identities(d / identity)).read()


def test_wrong_identity_is_one_line_error(keys, tmp_path):
    d = keys["dir"]
    (tmp_path / "plain").write_bytes(b"x")
    subprocess.run(["age", "-r", keys["age_pub"], "-o", str(tmp_path / "a.age"), str(tmp_path / "plain")], check=True)
    with pytest.raises(ContainerError, match="none of the identities"):
        age.open_plaintext(tmp_path / "a.age", age.read_identities(d / "ed25519"))
    assert repr(age.read_identities(d / "ed25519")[0]) == "Identity(ssh-ed25519)"


@pytest.fixture(scope="module")
def encrypted_collection(unpacked, keys, tmp_path_factory):
    d = keys["dir"]
    image = unpacked("gpt-ntfs.raw")
    work = tmp_path_factory.mktemp("enc")
    out = work / "case.zip.age"
    result = CliRunner().invoke(
        app,
        [
            "collect", str(image), "-o", str(out), "--json", "--quiet",
            "--rule", "registry-and-mft",
            "--encrypt-to", keys["age_pub"],
            "--encrypt-to", (d / "ed25519.pub").read_text().strip(),
        ],
    )
    assert result.exit_code == 0, result.output
    return image, out, json.loads(result.stdout)


def test_encrypted_container_decrypts_with_age_cli_and_verifies(encrypted_collection, keys, truth):
    image, out, summary = encrypted_collection
    d = keys["dir"]
    # No plaintext beside it: the encrypted file and its hash sidecar only.
    assert sorted(p.name for p in out.parent.iterdir()) == ["case.zip.age", "case.zip.age.sha256"]
    assert out.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert b"manifest.jsonl" not in out.read_bytes()
    # The hash of the encrypted file: summary == sha256sum == the sidecar.
    assert summary["container_encrypted"] is True
    assert summary["container_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    subprocess.run(["sha256sum", "-c", "--quiet", out.name + ".sha256"], cwd=out.parent, check=True)
    for identity in ("age.key", "ed25519"):
        plain = out.parent.parent / f"plain-{identity}.zip"
        plain.write_bytes(_age_decrypt(d / identity, out))
        tested = subprocess.run(["unzip", "-t", str(plain)], capture_output=True, text=True)
        assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout
        ok = CliRunner().invoke(app, ["verify", str(plain), "--json"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["ok"] is True
    # The manifest's hashes are those of the evidence (icat), not of anything encrypted.
    with zipfile.ZipFile(plain) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
        acquisition = json.loads(zf.read("acquisition.json"))
    parts = {p["index"]: p["start_sector"] for p in truth("gpt-ntfs")["partitions"]}
    addresses = oracles.fls_streams(image, parts[3])
    collected = [i for i in items if i["outcome"] == "collected" and i["volume"] == 3]
    assert collected
    for item in collected:
        key = item["path"] + (f":{item['stream']}" if item["stream"] else "")
        assert item["hashes"]["sha256"] == oracles.icat_sha256(image, parts[3], addresses[key]), key
    assert acquisition["encryption"]["format"] == "age-encryption.org/v1"
    assert [r["type"] for r in acquisition["encryption"]["recipients"]] == ["X25519", "ssh-ed25519"]


def test_verify_show_extract_with_identity_on_the_encrypted_file(encrypted_collection, keys, tmp_path):
    _, out, _ = encrypted_collection
    d = keys["dir"]
    runner = CliRunner()
    for identity in ("age.key", "ed25519"):
        ok = runner.invoke(app, ["verify", str(out), "--identity", str(d / identity), "--json"])
        assert ok.exit_code == 0, ok.output
        report = json.loads(ok.stdout)
        assert report["ok"] is True and report["members_checked"] > 3
    shown = runner.invoke(app, ["show", str(out), "-i", str(d / "age.key"), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["encrypted"] == "age"
    dest = tmp_path / "dest"
    done = runner.invoke(app, ["extract", str(out), str(dest), "-i", str(d / "ed25519"), "--json"])
    assert done.exit_code == 0, done.output
    plain = tmp_path / "plain.zip"
    plain.write_bytes(_age_decrypt(d / "age.key", out))
    with zipfile.ZipFile(plain) as zf:
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
    restored = {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.rglob("*") if p.is_file()
    }
    stored = {i["hashes"]["sha256"] for i in items if i["outcome"] == "collected" and not i["stream"]}
    assert stored and stored <= restored


def test_encrypted_container_without_identity_is_refused(encrypted_collection, keys):
    _, out, _ = encrypted_collection
    result = CliRunner().invoke(app, ["verify", str(out)])
    assert result.exit_code != 0
    assert "age-encrypted" in result.output and "Traceback" not in result.output
    wrong = CliRunner().invoke(app, ["verify", str(out), "-i", str(keys["dir"] / "rsa")])
    assert wrong.exit_code != 0 and "none of the identities" in wrong.output


def test_bad_recipient_is_one_line_error(unpacked, tmp_path):
    result = CliRunner().invoke(
        app, ["collect", str(unpacked("gpt-ntfs.raw")), "-o", str(tmp_path / "x.age"),
              "--encrypt-to", "age1notakey"],
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not (tmp_path / "x.age").exists()


def test_export_and_kape_layout_with_identity(encrypted_collection, keys, tmp_path):
    """show --export and extract --layout kape read the encrypted file in place."""
    _, out, _ = encrypted_collection
    d = keys["dir"]
    runner = CliRunner()
    exported = tmp_path / "exported"
    shown = runner.invoke(app, ["show", str(out), "-i", str(d / "age.key"), "--export", str(exported)])
    assert shown.exit_code == 0, shown.output
    plain = tmp_path / "plain.zip"
    plain.write_bytes(_age_decrypt(d / "age.key", out))
    with zipfile.ZipFile(plain) as zf:
        for name in ("CopyLog.csv", "SkipLog.csv", "bodyfile.txt"):
            assert (exported / name).read_bytes() == zf.read(name), name
        items = [json.loads(x) for x in zf.read("manifest.jsonl").decode().splitlines()]
    assert "<html" in (exported / "report.html").read_text().lower()
    kape = tmp_path / "kape"
    done = runner.invoke(
        app, ["extract", str(out), str(kape), "--layout", "kape", "-i", str(d / "ed25519")]
    )
    assert done.exit_code == 0, done.output
    system = next(i for i in items if i["path"] == "Windows/System32/config/SYSTEM" and not i["stream"])
    restored = kape / "C" / "Windows" / "System32" / "config" / "SYSTEM"
    assert hashlib.sha256(restored.read_bytes()).hexdigest() == system["hashes"]["sha256"]

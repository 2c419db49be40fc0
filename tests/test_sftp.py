"""SFTP upload against a real OpenSSH server started by the test on 127.0.0.1.

Oracles: OpenSSH's sshd (Debian ``openssh-server``) as the server, ``ssh-keygen`` for the
keys and known_hosts, coreutils ``sha256sum`` of the file that arrived.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from selective_imager.errors import TransferError
from selective_imager.transfer.sftp import SftpUploader, parse_target

SSHD = "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd -D as a test server needs root"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid`` (the sessions sshd forked), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            child = int(entry.name)
            out += [child, *_descendants(child)]
    return out


class Sshd:
    """sshd -D on 127.0.0.1 with its own host key and one authorised test key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        keygen = shutil.which("ssh-keygen")
        assert keygen
        for name in ("host", "client", "other_host"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
        (root / "authorized_keys").write_text((root / "client.pub").read_text())
        host_pub = (root / "host.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        other = (root / "other_host.pub").read_text().split()
        (root / "wrong_known_hosts").write_text(f"[127.0.0.1]:{self.port} {other[0]} {other[1]}\n")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
            f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        # sshd insists on its privilege-separation directory (absent in a container).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")], stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def cut(self) -> None:
        """Kill the listener and every session it forked: the connection drops."""
        assert self.proc is not None
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.cut()


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path)
    yield server
    server.stop()


def _container(tmp_path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / "case.zip.age"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_upload_arrives_with_the_same_sha256(sshd, tmp_path):
    local, digest = _container(tmp_path, 3 << 20)
    remote = tmp_path / "inbox" / "case.zip.age"
    remote.parent.mkdir()
    target = parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}")
    done = SftpUploader(
        target, known_hosts=sshd.root / "known_hosts", key_file=sshd.root / "client"
    ).upload(local, digest)
    oracle = subprocess.run(["sha256sum", str(remote)], capture_output=True, text=True, check=True)
    assert oracle.stdout.split()[0] == digest == done.sha256
    assert done.checked_by == "remote sha256sum" and done.reconnects == 0


def test_upload_resumes_after_the_server_is_cut(sshd, tmp_path):
    local, digest = _container(tmp_path, 24 << 20)
    remote = tmp_path / "inbox.bin"
    target = parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}")
    cut_at: list[int] = []

    def progress(sent: int) -> None:
        if not cut_at and sent >= 8 << 20:
            cut_at.append(sent)
            sshd.cut()
            # Back after a while: the uploader retries meanwhile.
            threading.Timer(1.0, sshd.start).start()

    done = SftpUploader(
        target,
        known_hosts=sshd.root / "known_hosts",
        key_file=sshd.root / "client",
        retry_delay=0.3,
        on_progress=progress,
    ).upload(local, digest)
    assert cut_at and done.reconnects >= 1
    oracle = subprocess.run(["sha256sum", str(remote)], capture_output=True, text=True, check=True)
    assert oracle.stdout.split()[0] == digest == done.sha256
    assert remote.stat().st_size == local.stat().st_size


def test_wrong_or_unknown_host_key_is_refused(sshd, tmp_path):
    local, digest = _container(tmp_path, 1000)
    remote = tmp_path / "never.bin"
    target = parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}")
    with pytest.raises(TransferError, match="does not match"):
        SftpUploader(
            target, known_hosts=sshd.root / "wrong_known_hosts", key_file=sshd.root / "client"
        ).upload(local, digest)
    (tmp_path / "empty_known_hosts").write_text("")
    with pytest.raises(TransferError, match="not in"):
        SftpUploader(
            target, known_hosts=tmp_path / "empty_known_hosts", key_file=sshd.root / "client"
        ).upload(local, digest)
    assert not remote.exists()


def test_url_with_password_is_refused():
    with pytest.raises(TransferError, match="no password"):
        parse_target("sftp://root:secret@127.0.0.1/x")
    with pytest.raises(TransferError, match="only sftp"):
        parse_target("s3://bucket/x")


def test_collect_upload_delivers_the_encrypted_container(sshd, tmp_path, unpacked):
    import json

    from typer.testing import CliRunner

    from selective_imager.cli.app import app

    age_keygen = shutil.which("age-keygen")
    if age_keygen is None:
        pytest.skip("age not installed")
    made = subprocess.run([age_keygen, "-o", str(tmp_path / "age.key")], capture_output=True, text=True, check=True)
    public = made.stderr.strip().split()[-1]
    out = tmp_path / "local" / "case.zip.age"
    out.parent.mkdir()
    remote = tmp_path / "inbox" / "case.zip.age"
    remote.parent.mkdir()
    result = CliRunner().invoke(
        app,
        [
            "collect", str(unpacked("gpt-ntfs.raw")), "-o", str(out), "--json", "--quiet",
            "--rule", "registry-and-mft", "--encrypt-to", public,
            "--upload", f"sftp://root@127.0.0.1:{sshd.port}{remote}",
            "--known-hosts", str(sshd.root / "known_hosts"), "--upload-key", str(sshd.root / "client"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["upload"]["delivered"] is True
    oracle = subprocess.run(["sha256sum", str(remote)], capture_output=True, text=True, check=True)
    assert oracle.stdout.split()[0] == summary["container_sha256"] == summary["upload"]["sha256"]
    assert (out.parent / "case.zip.age.sha256").read_text().split()[0] == summary["container_sha256"]
    plain = tmp_path / "plain.zip"
    plain.write_bytes(
        subprocess.run(["age", "-d", "-i", str(tmp_path / "age.key"), str(remote)], capture_output=True, check=True).stdout
    )
    assert subprocess.run(["unzip", "-tq", str(plain)], capture_output=True).returncode == 0


def test_collect_refuses_an_unknown_host_before_collecting(sshd, tmp_path, unpacked):
    from typer.testing import CliRunner

    from selective_imager.cli.app import app

    (tmp_path / "empty").write_text("")
    out = tmp_path / "case.zip"
    result = CliRunner().invoke(
        app,
        [
            "collect", str(unpacked("gpt-ntfs.raw")), "-o", str(out), "--quiet",
            "--upload", f"sftp://root@127.0.0.1:{sshd.port}{tmp_path / 'x'}",
            "--known-hosts", str(tmp_path / "empty"), "--upload-key", str(sshd.root / "client"),
        ],
    )
    assert result.exit_code != 0 and "refused" in result.output and "Traceback" not in result.output
    assert not out.exists()

"""``collect --upload``: the container streamed over SFTP while it is written.

Against a real OpenSSH server on 127.0.0.1 (the :class:`tests.test_sftp.Sshd` the SFTP
tests start). Oracles: coreutils ``sha256sum`` of the local and the remote file, Info-ZIP
``unzip -t`` and ``zipinfo -v`` (the members have data descriptors), Python's zipfile,
the ``age`` CLI for the encrypted stream, and the builder's truth: the SHA-256 of every
file this test put into the ext4 image (``mkfs.ext4 -d``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selective_imager.cli.app import app
from tests.conftest import VENV_BIN, need_tool
from tests.test_sftp import SSHD, Sshd

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd -D as a test server needs root"),
]

RULE = "name: data\ntitle: t\ntargets:\n  - name: d\n    paths: ['data/*']\n"


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """An ext4 image with ~13 MiB of random files (stored), a duplicate of one of them
    (streamed, then dropped) and a text file (deflated); and each file's SHA-256."""
    root = tmp_path_factory.mktemp("streamdisk")
    data = root / "tree" / "data"
    data.mkdir(parents=True)
    rng = __import__("random").Random(15)
    (data / "big1.bin").write_bytes(rng.randbytes(6 << 20))
    (data / "big2.bin").write_bytes(rng.randbytes(4 << 20))
    shutil.copy(data / "big2.bin", data / "zcopy.bin")
    (data / "notes.txt").write_bytes(b"".join(b"line %d of the notes\n" % i for i in range(60000)))
    (data / "small.bin").write_bytes(rng.randbytes(3 << 20))
    truth = {f"data/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in data.iterdir()}
    image = root / "ext4.img"
    with open(image, "wb") as fh:
        fh.truncate(40 << 20)
    subprocess.run(
        [need_tool("mkfs.ext4"), "-q", "-F", "-d", str(root / "tree"), str(image)],
        check=True, capture_output=True,
    )
    rule = root / "data.yaml"
    rule.write_text(RULE)
    return image, rule, truth


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def unzip_ok(path: Path) -> bool:
    return subprocess.run([need_tool("unzip"), "-tq", str(path)], capture_output=True).returncode == 0


def content_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of each collected item, by path, from the members (Python's zipfile)."""
    with zipfile.ZipFile(path) as zf:
        records = [json.loads(x) for x in zf.read("manifest.jsonl").splitlines() if x]
        return {
            r["path"]: hashlib.sha256(zf.read(r["container_path"])).hexdigest()
            for r in records
            if r["outcome"] == "collected"
        } | {r["path"]: "duplicate" for r in records if r["outcome"] == "duplicate"}


def upload_args(sshd: Sshd, remote: Path) -> list[str]:
    return [
        "--upload", f"sftp://root@127.0.0.1:{sshd.port}{remote}",
        "--known-hosts", str(sshd.root / "known_hosts"), "--upload-key", str(sshd.root / "client"),
    ]


def collect(disk, out: Path, *extra: str) -> tuple[int, dict, str]:
    image, rule, _ = disk
    result = CliRunner().invoke(
        app,
        ["collect", str(image), "-o", str(out), "--rule", str(rule), "--json", "--quiet",
         "--disk-hash", "sha256", *extra],
    )
    summary = json.loads(result.stdout) if result.stdout.startswith("{") else {}
    return result.exit_code, summary, result.output


def test_streamed_upload_equals_the_local_container(sshd, disk, tmp_path):
    out = tmp_path / "local" / "case.zip"
    out.parent.mkdir()
    remote = tmp_path / "inbox" / "case.zip"
    remote.parent.mkdir()
    code, summary, text = collect(disk, out, *upload_args(sshd, remote))
    assert code == 0, text
    up = summary["upload"]
    assert up["delivered"] and up["streamed"] and up["local_copy"]
    assert sha256sum(out) == sha256sum(remote) == summary["container_sha256"] == up["sha256"]
    assert unzip_ok(remote)
    # Streamed: every member has a data descriptor (Info-ZIP's own words).
    info = subprocess.run([need_tool("zipinfo"), "-v", str(remote)], capture_output=True, text=True).stdout
    assert info.count("extended local header:                          yes") >= 5
    hashes = content_hashes(remote)
    truth = disk[2]
    # One of the two equal files was streamed, then cut off again: a duplicate record.
    twins = {hashes["data/big2.bin"], hashes["data/zcopy.bin"]}
    assert twins == {"duplicate", truth["data/big2.bin"]}
    assert {p: h for p, h in hashes.items() if h != "duplicate"} == {
        p: h for p, h in truth.items() if hashes[p] != "duplicate"
    }
    verify = CliRunner().invoke(app, ["verify", str(remote)])
    assert verify.exit_code == 0, verify.output


def test_no_local_copy_leaves_no_container_here(sshd, disk, tmp_path):
    here = tmp_path / "suspect"
    here.mkdir()
    remote = tmp_path / "inbox" / "case.zip"
    remote.parent.mkdir()
    code, summary, text = collect(disk, here / "case.zip", "--no-local-copy", *upload_args(sshd, remote))
    assert code == 0, text
    assert list(here.iterdir()) == []  # no container, and the journals are gone
    assert summary["output"] is None and summary["upload"]["local_copy"] is False
    assert sha256sum(remote) == summary["container_sha256"] == summary["upload"]["sha256"]
    assert unzip_ok(remote)
    verify = CliRunner().invoke(app, ["verify", str(remote)])
    assert verify.exit_code == 0, verify.output
    assert content_hashes(remote)["data/big1.bin"] == disk[2]["data/big1.bin"]
    show = CliRunner().invoke(app, ["show", str(remote)])
    assert show.exit_code == 0 and "complete" in show.output, show.output
    dest = tmp_path / "extracted"
    extract = CliRunner().invoke(app, ["extract", str(remote), str(dest)])
    assert extract.exit_code == 0, extract.output
    notes = list(dest.rglob("notes.txt"))
    assert len(notes) == 1 and hashlib.sha256(notes[0].read_bytes()).hexdigest() == disk[2]["data/notes.txt"]


def test_no_local_copy_encrypted(sshd, disk, tmp_path):
    age_keygen = shutil.which("age-keygen")
    if age_keygen is None:
        pytest.skip("age not installed")
    made = subprocess.run([age_keygen, "-o", str(tmp_path / "age.key")], capture_output=True, text=True, check=True)
    public = made.stderr.strip().split()[-1]
    here = tmp_path / "suspect"
    here.mkdir()
    remote = tmp_path / "inbox" / "case.zip.age"
    remote.parent.mkdir()
    code, summary, text = collect(
        disk, here / "case.zip.age", "--no-local-copy", "--encrypt-to", public,
        *upload_args(sshd, remote),
    )
    assert code == 0, text
    # Only the hash of the encrypted file stays here (it cannot be inside it).
    assert [p.name for p in here.iterdir()] == ["case.zip.age.sha256"]
    assert sha256sum(remote) == summary["container_sha256"] == summary["upload"]["sha256"]
    plain = tmp_path / "plain.zip"
    plain.write_bytes(
        subprocess.run(["age", "-d", "-i", str(tmp_path / "age.key"), str(remote)], capture_output=True, check=True).stdout
    )
    assert unzip_ok(plain)
    verify = CliRunner().invoke(app, ["verify", str(remote), "--identity", str(tmp_path / "age.key")])
    assert verify.exit_code == 0, verify.output


def test_connection_cut_mid_stream_is_resumed(sshd, disk, tmp_path):
    """sshd killed (with its sessions) while the collection is still writing, back a
    second later; the journal bound (2 MiB) holds the collection back meanwhile."""
    from selective_imager.collect.collector import CollectOptions
    from selective_imager.collect.collector import collect as run_collect
    from selective_imager.discovery import open_disk
    from selective_imager.selection.rules import resolve
    from selective_imager.transfer.sftp import SftpUploader, parse_target
    from selective_imager.transfer.stream import StreamingUpload

    image, rule, truth = disk
    remote = tmp_path / "inbox.zip"
    uploader = SftpUploader(
        parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}"),
        known_hosts=sshd.root / "known_hosts", key_file=sshd.root / "client", retry_delay=0.3,
    )
    sinks: list[StreamingUpload] = []
    seen = {"cut_while_writing": False, "peak": 0}

    def on_sent(sent: int) -> None:
        sink = sinks[0]
        seen["peak"] = max(seen["peak"], sink.held)
        if not seen.get("cut") and sent >= 3 << 20:
            seen["cut"] = sent
            seen["cut_while_writing"] = not sink._closing
            sshd.cut()
            threading.Timer(1.0, sshd.start).start()

    def factory(output: Path, overwrite: bool) -> StreamingUpload:
        sinks.append(StreamingUpload(uploader, None, memory=2 << 20, on_sent=on_sent))
        return sinks[0]

    out = tmp_path / "journals" / "case.zip"
    out.parent.mkdir()
    with open_disk(str(image)) as d:
        report = run_collect(
            d, resolve([str(rule)]), out, CollectOptions(disk_hash=(), stream=factory)
        )
    sink = sinks[0]
    done = sink.deliver()
    assert seen["cut_while_writing"] and sink.reconnects >= 1 and done.streamed
    assert seen["peak"] <= (2 << 20) + (1 << 20)  # the bound, plus one write
    assert sha256sum(remote) == sink.sha256 == done.sha256 == report.container_sha256
    assert not out.exists() and unzip_ok(remote)
    hashes = content_hashes(remote)
    assert hashes["data/big1.bin"] == truth["data/big1.bin"]
    assert hashes["data/small.bin"] == truth["data/small.bin"]


def test_killed_remote_only_run_recovers_from_the_remote_file(sshd, disk, tmp_path):
    """SIGKILL of a --no-local-copy run: the remote file (no central directory, data
    descriptors) fetched next to the journals is rebuilt by ``recover``."""
    exe = VENV_BIN / "selective-imager"
    if not exe.exists():
        pytest.skip("the console script is not installed in .venv")
    image, rule, truth = disk
    here = tmp_path / "suspect"
    here.mkdir()
    remote = tmp_path / "inbox" / "case.zip"
    remote.parent.mkdir()
    proc = subprocess.Popen(
        [str(exe), "collect", str(image), "-o", str(here / "case.zip"), "--rule", str(rule),
         "--quiet", "--disk-hash", "none", "--no-local-copy", *upload_args(sshd, remote)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if remote.exists() and remote.stat().st_size >= 8 << 20:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    journal = here / "case.zip.manifest.jsonl.part"
    assert journal.exists() and not (here / "case.zip").exists()
    shutil.copy(remote, here / "case.zip")
    result = CliRunner().invoke(app, ["recover", str(here / "case.zip")])
    assert result.exit_code in (0, 1), result.output
    assert unzip_ok(here / "case.zip")
    hashes = content_hashes(here / "case.zip")
    assert hashes and all(h == truth[p] for p, h in hashes.items() if h != "duplicate")
    verify = CliRunner().invoke(app, ["verify", str(here / "case.zip"), "--json"])
    assert json.loads(verify.stdout)["intact"] is True


def test_an_existing_remote_file_is_refused_before_collecting(sshd, disk, tmp_path):
    remote = tmp_path / "taken.zip"
    remote.write_bytes(b"evidence of another case")
    out = tmp_path / "case.zip"
    code, _, text = collect(disk, out, "--no-local-copy", *upload_args(sshd, remote))
    assert code == 2 and "exists" in text and "Traceback" not in text
    assert remote.read_bytes() == b"evidence of another case"
    assert not out.exists()


def test_a_lost_upload_without_local_copy_is_not_complete(sshd, disk, tmp_path):
    """The server gone for good mid-stream: the collection stops (never complete) and
    says how many bytes the remote file holds; a remote file changed afterwards is
    never called delivered."""
    from selective_imager.collect.collector import CollectOptions
    from selective_imager.collect.collector import collect as run_collect
    from selective_imager.discovery import open_disk
    from selective_imager.errors import ContainerError, TransferError
    from selective_imager.selection.rules import resolve
    from selective_imager.transfer.sftp import SftpUploader, parse_target
    from selective_imager.transfer.stream import StreamingUpload

    image, rule, _ = disk
    remote = tmp_path / "inbox.zip"
    uploader = SftpUploader(
        parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}"),
        known_hosts=sshd.root / "known_hosts", key_file=sshd.root / "client",
        retries=1, retry_delay=0.1,
    )

    def on_sent(sent: int) -> None:
        if sent >= 4 << 20 and sshd.proc is not None and sshd.proc.poll() is None:
            sshd.cut()

    def factory(output: Path, overwrite: bool) -> StreamingUpload:
        return StreamingUpload(uploader, None, memory=2 << 20, on_sent=on_sent)

    out = tmp_path / "journals" / "case.zip"
    out.parent.mkdir()
    with open_disk(str(image)) as d, pytest.raises(ContainerError) as caught:
        run_collect(d, resolve([str(rule)]), out, CollectOptions(disk_hash=(), stream=factory))
    message = str(caught.value)
    confirmed = int(message.split("no local copy: the first ")[1].split(" ")[0])
    assert 1 << 20 <= confirmed <= remote.stat().st_size, message
    assert (out.parent / "case.zip.manifest.jsonl.part").exists()  # the record stays here

    # Delivered only when the remote SHA-256 matches: change one remote byte after the end.
    sshd.start()
    remote2 = tmp_path / "inbox2.zip"
    uploader2 = SftpUploader(
        parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote2}"),
        known_hosts=sshd.root / "known_hosts", key_file=sshd.root / "client",
    )
    sinks: list[StreamingUpload] = []

    def factory2(output: Path, overwrite: bool) -> StreamingUpload:
        sinks.append(StreamingUpload(uploader2, None))
        return sinks[0]

    with open_disk(str(image)) as d:
        run_collect(d, resolve([str(rule)]), tmp_path / "j2.zip", CollectOptions(disk_hash=(), stream=factory2))
    with open(remote2, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(TransferError, match="differs"):
        sinks[0].deliver()


def test_ctrl_c_of_a_remote_only_run_says_what_arrived(sshd, disk, tmp_path):
    """SIGINT to ``collect --no-local-copy``: wherever it lands (still collecting, or
    waiting for the last bytes to go out), exit 1 and the truth about the remote file."""
    exe = VENV_BIN / "selective-imager"
    if not exe.exists():
        pytest.skip("the console script is not installed in .venv")
    image, rule, _ = disk
    here = tmp_path / "suspect"
    here.mkdir()
    remote = tmp_path / "inbox" / "case.zip"
    remote.parent.mkdir()
    proc = subprocess.Popen(
        [str(exe), "collect", str(image), "-o", str(here / "case.zip"), "--rule", str(rule),
         "--quiet", "--disk-hash", "none", "--no-local-copy", *upload_args(sshd, remote)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if remote.exists() and remote.stat().st_size >= 2 << 20:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.001)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "--resume" not in stderr and not (here / "case.zip").exists()
    if "finished as incomplete; delivered" in stderr:
        verify = CliRunner().invoke(app, ["verify", str(remote), "--json"])
        assert json.loads(verify.stdout)["status"] == "incomplete" and unzip_ok(remote)
    else:
        assert "interrupted while the container was being sent: not delivered" in stderr, stderr
        confirmed = int(stderr.split("the first ")[1].split(" ")[0])
        assert confirmed <= remote.stat().st_size
        assert (here / "case.zip.manifest.jsonl.part").exists()  # kept for recover


def test_ctrl_c_while_the_last_bytes_go_out_stops_the_upload(sshd, disk, tmp_path):
    """The container is written whole (into the 32 MiB journal) and the run waits for
    the upload (throttled here) when Ctrl-C comes: stopped, never delivered."""
    from selective_imager.collect.collector import CollectOptions
    from selective_imager.collect.collector import collect as run_collect
    from selective_imager.discovery import open_disk
    from selective_imager.errors import TransferError
    from selective_imager.selection.rules import resolve
    from selective_imager.transfer.sftp import SftpUploader, parse_target
    from selective_imager.transfer.stream import StreamingUpload

    image, rule, _ = disk
    remote = tmp_path / "inbox.zip"
    uploader = SftpUploader(
        parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}"),
        known_hosts=sshd.root / "known_hosts", key_file=sshd.root / "client",
    )
    sinks: list[StreamingUpload] = []

    def on_sent(sent: int) -> None:
        time.sleep(0.05)
        if sinks[0]._closing and len(sinks) == 1:
            sinks.append(sinks[0])  # once
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C

    def factory(output: Path, overwrite: bool) -> StreamingUpload:
        sinks.append(StreamingUpload(uploader, None, on_sent=on_sent))
        return sinks[0]

    with open_disk(str(image)) as d, pytest.raises(KeyboardInterrupt):
        run_collect(d, resolve([str(rule)]), tmp_path / "j.zip", CollectOptions(disk_hash=(), stream=factory))
    sink = sinks[0]
    assert sink.sha256 is None and sink.error == "interrupted before the upload finished"
    assert sink.acknowledged <= remote.stat().st_size
    with pytest.raises(AssertionError):
        sink.deliver()  # there is no streamed hash to deliver against
    with pytest.raises(TransferError):
        uploader.verify("0" * 64, 0)
    assert not unzip_ok(remote)


def test_ctrl_c_during_the_collection_finishes_the_remote_container(sshd, disk, tmp_path):
    """Ctrl-C while the journal bound holds the collection back: the container is
    finished as incomplete through the stream and delivered."""
    from selective_imager.collect.collector import CollectOptions
    from selective_imager.collect.collector import collect as run_collect
    from selective_imager.discovery import open_disk
    from selective_imager.selection.rules import resolve
    from selective_imager.transfer.sftp import SftpUploader, parse_target
    from selective_imager.transfer.stream import StreamingUpload

    image, rule, _ = disk
    remote = tmp_path / "inbox.zip"
    uploader = SftpUploader(
        parse_target(f"sftp://root@127.0.0.1:{sshd.port}{remote}"),
        known_hosts=sshd.root / "known_hosts", key_file=sshd.root / "client",
    )
    sinks: list[StreamingUpload] = []

    class Interrupted(StreamingUpload):
        """Ctrl-C as it lands in a write of the collection, once, past 3 MiB (a signal
        sent from another thread can land anywhere; this lands in the stream for sure)."""

        def write(self, data):
            if self.kept >= 3 << 20 and len(sinks) == 1:
                sinks.append(self)
                raise KeyboardInterrupt
            return super().write(data)

    def factory(output: Path, overwrite: bool) -> StreamingUpload:
        sinks.append(Interrupted(uploader, None, memory=2 << 20))
        return sinks[0]

    with open_disk(str(image)) as d, pytest.raises(KeyboardInterrupt):
        run_collect(d, resolve([str(rule)]), tmp_path / "j.zip", CollectOptions(disk_hash=(), stream=factory))
    done = sinks[0].deliver()
    assert sha256sum(remote) == done.sha256 and unzip_ok(remote)
    verify = CliRunner().invoke(app, ["verify", str(remote), "--json"])
    report = json.loads(verify.stdout)
    assert verify.exit_code == 1 and report["intact"] is True and report["status"] == "incomplete"

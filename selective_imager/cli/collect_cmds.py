"""``collect`` (and its dry run) and ``hash``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from selective_imager.credentials import (
    LUKS_KEY_FILE,
    STARTUP_KEY,
    PromptingCredentials,
)
from selective_imager.errors import (
    RuleError,
)

if TYPE_CHECKING:

    from selective_imager.discovery import Disk

from selective_imager.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    ParentOption,
    RulePathOption,
    _errors,
    _escape,
    _human,
    _open,
    _rule_specs,
    _source_options,
    _Unrecognised,
    _vss_options,
    app,
    err,
    out,
)
from selective_imager.cli.options import (
    _NO_CREDENTIALS,
    _CredentialOptions,
    _with_credentials,
)


# -- collect ----------------------------------------------------------------
class _RichProgress:
    """ProgressSink on a rich progress bar (stderr)."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.quiet = quiet
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[items]} items {task.fields[current]}"),
            console=err,
            transient=False,
            disable=quiet,
        )
        self._task: Any = None
        self._items = 0

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total_bytes: int | None, total_items: int | None) -> None:
        self._items = 0
        self._task = self._progress.add_task(name, total=total_bytes, items=0, current="")

    def item(self, label: str) -> None:
        if self._task is not None:
            short = label if len(label) <= 60 else "…" + label[-59:]
            self._progress.update(self._task, current=_escape(short))

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        if self._task is not None:
            self._items += items
            self._progress.update(self._task, advance=nbytes, items=self._items)

    def done(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, current="")
            self._task = None


def _redacted_argv(creds: PromptingCredentials) -> tuple[str, ...]:
    secrets = {c.secret for c in creds.static if c.kind not in (STARTUP_KEY, LUKS_KEY_FILE)}
    return tuple("<redacted>" if arg in secrets else arg for arg in sys.argv)


def _parse_size(text: str) -> int:
    from selective_imager.selection.rules import parse_size

    try:
        return parse_size(text)
    except (ValueError, RuleError) as exc:
        raise typer.BadParameter(f"{text!r}: {exc}") from None


@app.command()
@_with_credentials
def collect(
    source: Annotated[str | None, typer.Argument(help="Disk image (raw, split, E01, VMDK, VHD/VHDX, QCOW) or device.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Container file to write (.zip).")
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule",
            "-R",
            help="Rule name (ours, a KAPE target or ForensicArtifacts name from --rule-path), "
            "rule file or rule folder (repeatable). Default: triage.",
        ),
    ] = None,
    rule_path: RulePathOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be collected; copy nothing.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    volume: Annotated[
        list[str] | None,
        typer.Option(
            "--volume", "-v", help="Only these volumes: number or label (p2/apfs1); repeatable."
        ),
    ] = None,
    hash_algorithms: Annotated[
        str, typer.Option("--hash", help="Per-file hashes, e.g. md5,sha1,sha256.")
    ] = "md5,sha1,sha256",
    disk_hash: Annotated[
        str, typer.Option("--disk-hash", help="Whole-disk hashes, or 'none'.")
    ] = "md5,sha1,sha256",
    disk_hash_mode: Annotated[
        str, typer.Option("--disk-hash-mode", help="'after' the artifacts, or 'concurrent'.")
    ] = "after",
    piece_size: Annotated[
        str,
        typer.Option(
            "--piece-size",
            help="Also a SHA-256 per piece of the disk, e.g. 1GiB (0: off; a 4th pass).",
        ),
    ] = "0",
    store: Annotated[bool, typer.Option("--store", help="Do not compress members.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing finished container (never a partial one of a killed run).",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed or interrupted collection into the same container.",
        ),
    ] = False,
    listing: Annotated[
        bool | None,
        typer.Option(
            "--listing/--no-listing",
            help="Also list every entry of every volume (JSON Lines + bodyfile in "
            "listing/). Default: on for the triage rule, off otherwise.",
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", help="Matcher: auto, walk or scan.")
    ] = "auto",
    case: Annotated[str, typer.Option("--case", help="Case number.")] = "",
    evidence: Annotated[str, typer.Option("--evidence", help="Evidence number.")] = "",
    examiner: Annotated[str, typer.Option("--examiner", help="Examiner name.")] = "",
    notes: Annotated[str, typer.Option("--notes", help="Free-text notes.")] = "",
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print nothing but errors (the exit code says how it ended)."
        ),
    ] = False,
    vss: Annotated[
        str | None,
        typer.Option(
            "--vss",
            metavar="[all|latest|1,3]",
            help="Also collect from shadow copies: all (a bare --vss), latest, or store indexes.",
        ),
    ] = None,
    vss_since: Annotated[
        str | None,
        typer.Option("--vss-since", help="Only shadow copies created at or after this date (UTC)."),
    ] = None,
    vss_read_all: Annotated[
        bool,
        typer.Option(
            "--vss-read-all",
            help="Read every shadow-copy item, even one no store changed (default: record "
            "it as the live file without reading it).",
        ),
    ] = False,
    encrypt_to: Annotated[
        list[str] | None,
        typer.Option(
            "--encrypt-to",
            help="Write the container age-encrypted to this recipient (age1… or an "
            "ssh-ed25519/ssh-rsa public key); repeatable. Name the output .zip.age.",
        ),
    ] = None,
    recipients_file: Annotated[
        Path | None,
        typer.Option("--recipients-file", help="age recipients, one a line (as age -R)."),
    ] = None,
    upload: Annotated[
        str | None,
        typer.Option(
            "--upload",
            help="Stream the container, as it is written, to sftp://user@host[:port]/path (key "
            "or agent authentication; resumed after a drop; delivered only when the remote "
            "SHA-256 matches). With --resume: sent once finished.",
        ),
    ] = None,
    no_local_copy: Annotated[
        bool,
        typer.Option(
            "--no-local-copy",
            help="With --upload: keep no container here (-o, default the remote file's name, "
            "then only places the journals of the running collection).",
        ),
    ] = False,
    known_hosts: Annotated[
        Path | None,
        typer.Option("--known-hosts", help="Known host keys for --upload (default ~/.ssh/known_hosts)."),
    ] = None,
    upload_key: Annotated[
        Path | None,
        typer.Option("--upload-key", help="Private key for --upload (default: the agent, ~/.ssh keys)."),
    ] = None,
    parent: ParentOption = None,
    read_timeout: Annotated[
        float | None,
        typer.Option(
            "--read-timeout",
            help="Abandon a source read that has not returned after this many seconds "
            "(its sectors are recorded as unreadable). Default: 30 on devices, never on "
            "image files; 0: never.",
        ),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image", help="Also a physical image (.E01 or .raw), written by the disk-hash pass."
        ),
    ] = None,
    image_format: Annotated[
        str, typer.Option("--image-format", help="e01, raw, or auto (from --image's suffix).")
    ] = "auto",
    segment_size: Annotated[
        str, typer.Option("--segment-size", help="Largest E01 segment file.")
    ] = "2GiB",
    image_compression: Annotated[
        str, typer.Option("--image-compression", help="E01: none, empty-block, fast or best.")
    ] = "fast",
    chunk_size: Annotated[str, typer.Option("--chunk-size", help="E01 chunk size.")] = "32KiB",
    live: Annotated[bool, typer.Option("--live", help="Read this running Linux system's device behind its mounted file systems.")] = False,
    device: Annotated[list[str] | None, typer.Option("--device", help="With --live: the block device to read.")] = None,
    allow_output_on_source: Annotated[bool, typer.Option("--allow-output-on-source", help="With --live: allow an output on a file system of the device read.")] = False,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Collect rule-selected artifacts into a sealed evidence container (ZIP64)."""
    if live and len(device or ()) != 1:
        from selective_imager.cli.live_opts import each_device

        each_device(collect.__wrapped__, dict(locals()))  # type: ignore[attr-defined]
    from selective_imager.collect.collector import CollectOptions, missing_volumes
    from selective_imager.collect.collector import collect as run_collect
    from selective_imager.collect.hashing import parse_algorithms
    from selective_imager.collect.resume import NothingToResume, check_output
    from selective_imager.errors import ContainerError
    from selective_imager.selection.rules import resolve

    code = EXIT_OK
    with _errors():
        try:
            hashes = parse_algorithms(hash_algorithms)
            disk_hashes = parse_algorithms(disk_hash)
        except ValueError as exc:
            raise _Unrecognised(str(exc)) from None
        if disk_hash_mode not in ("after", "concurrent"):
            raise _Unrecognised(f"--disk-hash-mode {disk_hash_mode!r}: use after or concurrent")
        if strategy not in ("auto", "walk", "scan"):
            raise _Unrecognised(f"--strategy {strategy!r}: use auto, walk or scan")
        pieces = _parse_size(piece_size)
        recipients = _recipients(encrypt_to or [], recipients_file)
        uploader = stream = None
        if no_local_copy and (upload is None or resume):
            raise _Unrecognised("--no-local-copy needs --upload, and leaves nothing to --resume")
        if upload is not None and not dry_run:
            uploader = _uploader(upload, known_hosts, upload_key, absent=not resume)
            if not resume:
                from selective_imager.transfer.stream import StreamFactory

                stream = StreamFactory(uploader, local_copy=not no_local_copy)
                if output is None and no_local_copy:
                    output = Path(Path(uploader.target.path).name)
        if not dry_run and output is None:
            raise _Unrecognised("--output is required (or use --dry-run)")
        if output is not None and not dry_run:
            try:
                check_output(output, overwrite=force, resume=resume)
            except ContainerError as exc:
                raise _Unrecognised(str(exc)) from None
        if image is not None and image.exists():
            raise _Unrecognised(f"{image}: exists: refusing to overwrite")
        discovery = _vss_options(vss, vss_since)
        specs, folders = _rule_specs(rule or [], rule_path)
        ruleset = resolve(specs or ["triage"], rule_paths=folders)
        live_options: dict[str, Any] = {}
        if live or device:
            from selective_imager.cli.live_opts import live_source

            source, live_options = live_source(source, device, output, allow_output_on_source)
        if source is None:
            raise _Unrecognised("give a SOURCE (image or device), or --live")
        creds = credentials.build()
        with _open(
            source, creds, discovery, parents=parent, read_timeout=read_timeout
        ) as disk:
            problem = missing_volumes(disk, volume)
            if problem:
                raise _Unrecognised(problem)
            image_opts = None
            if image is not None and not dry_run:
                from selective_imager.cli.image_cmds import image_options

                header = {"case_number": case, "evidence_number": evidence,
                          "examiner": examiner, "notes": notes}  # fmt: skip
                image_opts = image_options(
                    image, image_format, segment_size, image_compression, chunk_size,
                    disk.source.info.sector_size, True, header,
                )  # fmt: skip
            if dry_run:
                code = _dry_run(disk, ruleset, volume, strategy, json_output)
            else:
                assert output is not None
                options = CollectOptions(
                    hashes=hashes or ("sha256",),
                    disk_hash=disk_hashes,
                    disk_hash_mode=disk_hash_mode,
                    piece_size=pieces,
                    overwrite=force,
                    compress=False if store else None,
                    case=case,
                    evidence=evidence,
                    examiner=examiner,
                    notes=notes,
                    command_line=_redacted_argv(creds),
                    image=image_opts,
                    image_output=image,
                    strategy=strategy,
                    vss_reuse=not vss_read_all,
                    encrypt_to=recipients,
                    resume=resume,
                    listing="triage" in (specs or ["triage"]) if listing is None else listing,
                    stream=stream,
                    **live_options,
                )
                interrupted = False
                with _RichProgress(quiet or json_output) as progress:
                    try:
                        report = run_collect(disk, ruleset, output, options, progress, volume)
                    except KeyboardInterrupt:
                        interrupted = True
                    except NothingToResume as exc:
                        out.print(_escape(str(exc)))
                        raise typer.Exit(EXIT_OK) from None
                if interrupted:
                    _interrupted(output, uploader, stream)
                    raise typer.Exit(EXIT_PARTIAL)
                code = report.exit_code
                delivery = None
                if uploader is not None:
                    delivery = _deliver(uploader, output, report.container_sha256, stream)
                    if not delivery["delivered"]:
                        code = max(code, EXIT_PARTIAL)
                        err.print(f"[red]not delivered[/]: {_escape(delivery['error'])}")
                        if no_local_copy:  # no copy anywhere is known to be the container
                            report.status = "partial"
                            report.status_reasons.append("not delivered, and no local copy")
                if json_output or not quiet:
                    _print_collect_summary(report, json_output, delivery)
    raise typer.Exit(code)


def _interrupted(output: Path, uploader: Any, stream: Any) -> None:
    """Say where the container finished as incomplete went (and whether it arrived)."""
    sink = stream.sink if stream is not None else None
    if sink is None:
        err.print(f"interrupted: {output} was finished as incomplete (continue it with --resume)")
        return
    if sink.sha256 is None:  # Ctrl-C while the last bytes were going out
        whole = f"; {output} holds the container whole" if stream.local_copy else ""
        err.print(
            f"interrupted while the container was being sent: not delivered; the first "
            f"{sink.acknowledged} byte(s) of {_escape(str(uploader.target))} are the "
            f"container's, confirmed{_escape(whole)}"
        )
        return
    where = f"{output} and {uploader.target}" if stream.local_copy else str(uploader.target)
    delivery = _deliver(uploader, output, sink.sha256, stream)
    verdict = "delivered" if delivery["delivered"] else f"not delivered: {delivery['error']}"
    err.print(f"interrupted: {_escape(where)} finished as incomplete; {_escape(verdict)}")


def _uploader(url: str, known_hosts: Path | None, key: Path | None, *, absent: bool) -> Any:
    """The SFTP uploader of ``--upload``, after one test connection (before collecting)."""
    from selective_imager.transfer.sftp import SftpUploader, parse_target

    uploader = SftpUploader(parse_target(url), known_hosts=known_hosts, key_file=key, retries=2)
    uploader.check(absent=absent)
    uploader.retries = 8
    return uploader


def _deliver(uploader: Any, output: Path, sha256: str, stream: Any) -> dict[str, Any]:
    """Check the streamed container (or upload the finished one) by the remote SHA-256."""
    from selective_imager.errors import TransferError

    local = stream is None or stream.local_copy
    try:
        done = uploader.upload(output, sha256) if stream is None else stream.sink.deliver()
    except TransferError as exc:
        return {"delivered": False, "target": str(uploader.target), "error": str(exc),
                "local_copy": local}  # fmt: skip
    return {
        "local_copy": local,
        "streamed": done.streamed,
        "delivered": True,
        "target": done.target,
        "bytes": done.size,
        "sha256": done.sha256,
        "checked_by": done.checked_by,
        "reconnects": done.reconnects,
    }


def _recipients(keys: list[str], recipients_file: Path | None) -> tuple[Any, ...]:
    """The age recipients of ``--encrypt-to`` and ``--recipients-file``."""
    if not keys and recipients_file is None:
        return ()
    from selective_imager.container.age import parse_recipient, read_recipients_file

    found = [parse_recipient(key) for key in keys]
    if recipients_file is not None:
        found += read_recipients_file(recipients_file)
    return tuple(found)


def _print_collect_summary(
    report: Any, json_output: bool, delivery: dict[str, Any] | None = None
) -> None:
    disk = report.disk_hash
    here = delivery is None or delivery["local_copy"]
    summary = {
        "output": str(report.output) if here else None,
        "status": report.status,
        "counts": report.counts,
        "bytes_collected": report.bytes_collected,
        "container_sha256": report.container_sha256,
        "container_encrypted": report.encrypted,
        "disk_hash": None
        if disk is None
        else {
            "complete": disk.complete,
            "digests": disk.digests.as_dict() if disk.digests else None,
            "bytes_hashed": disk.bytes_hashed,
            "unreadable": [list(r) for r in disk.unreadable],
        },
        "volume_errors": report.volume_errors,
        "source_bytes_read": report.source_bytes_read,
        "vss_unchanged_not_read": report.vss_unchanged,
        "vss_bytes_not_read": report.vss_bytes_not_read,
        "image": None
        if report.image is None
        else {"files": report.image.get("files", []), "complete": report.image["complete"]},
        "upload": delivery,
        "unreadable": report.unreadable,
        "status_reasons": report.status_reasons,
        "notes": report.notes,
        "resumed": report.resumed,
        "stored_hash_check": report.stored_hash.as_dict() if report.stored_hash else None,
        "changed_while_read": report.changed_while_read,
        "reread_after_change": report.reread_after_change,
    }
    if json_output:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title="Collection summary", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("container", _escape(str(report.output)) if here else "(no local copy)")
    table.add_row("status", report.status + (" (resumed)" if report.resumed else ""))
    for reason in report.status_reasons:
        table.add_row("[yellow]why[/]", _escape(reason))
    for note in report.notes:
        table.add_row("note", _escape(note))
    for outcome, count in report.counts.items():
        table.add_row(outcome, str(count))
    table.add_row("bytes collected", f"{report.bytes_collected} ({_human(report.bytes_collected)})")
    table.add_row(
        "read from source", f"{report.source_bytes_read} ({_human(report.source_bytes_read)})"
    )
    if report.changed_while_read or report.reread_after_change:
        table.add_row(
            "changed while read",
            f"{report.changed_while_read} stored as read, {report.reread_after_change} read again",
        )
    if report.vss_unchanged:
        table.add_row(
            "shadow-copy items unchanged (not read)",
            f"{report.vss_unchanged} ({_human(report.vss_bytes_not_read)})",
        )
    if disk is not None:
        if disk.digests:
            for alg, value in disk.digests.as_dict().items():
                table.add_row(f"disk {alg}", value)
        else:
            table.add_row("disk hash", f"incomplete: {disk.bytes_hashed} of {disk.size} bytes")
        if disk.unreadable:
            table.add_row("unreadable", ", ".join(f"{o}+{n}" for o, n in disk.unreadable))
    if report.image is not None:
        files = report.image.get("files") or []
        table.add_row("image", _escape(", ".join(files)) if files else "[red]incomplete[/]")
    stored = report.stored_hash
    if stored is not None:
        table.add_row(
            "stored hash",
            f"{stored.verdict} ("
            + ", ".join(
                f"{alg} {'matches' if alg in stored.matched else 'MISMATCH' if alg in stored.mismatched else 'unchecked'}"
                for alg in stored.stored
            )
            + ")",
        )
    for problem in report.volume_errors:
        table.add_row("[red]volume error[/]", _escape(problem))
    out.print(table)
    out.print(f"container sha256 {report.container_sha256}")
    if report.encrypted:
        out.print(f"(of the age-encrypted file; also in {_escape(str(report.output))}.sha256)")
    if delivery is not None and delivery["delivered"]:
        how = "streamed while written" if delivery["streamed"] else "sent when finished"
        out.print(
            f"delivered to {_escape(delivery['target'])}: sha256 matches "
            f"({how}, {delivery['checked_by']}, {delivery['reconnects']} reconnect(s))"
        )


def _dry_run(
    disk: Disk, ruleset: Any, volumes: list[str] | None, strategy: str, json_output: bool
) -> int:
    from selective_imager.collect.manifest import vss_record
    from selective_imager.selection.matcher import match_all

    code = EXIT_OK
    rows: list[dict[str, Any]] = []
    for vol in disk.selected(volumes):
        fs = vol.filesystem
        if fs is None:
            if not json_output:
                err.print(
                    f"[yellow]volume {vol.report.volume.index} skipped: {_escape(vol.report.error)}[/]"
                )
            continue
        result = match_all(fs, ruleset, strategy=strategy)
        for problem in result.errors:
            code = EXIT_PARTIAL
            err.print(
                f"[red]volume {vol.report.volume.index}: cannot read {_escape(problem.path or '/')}: {_escape(str(problem.error))}[/]"
            )
        for m in result.matches:
            rows.append(
                {
                    "volume": vol.report.volume.index,
                    "volume_label": vol.report.label,
                    "vss": vss_record(vol.report.snapshot),
                    "path": m.entry.path,
                    "stream": m.stream,
                    "size": m.size,
                    "rules": list(m.rules),
                    "targets": list(m.targets),
                    "entry": m.entry.entry,
                }
            )
    if json_output:
        print(
            json.dumps(
                {"items": rows, "count": len(rows), "bytes": sum(r["size"] for r in rows)},
                indent=2,
                ensure_ascii=False,
            )
        )
        return code
    table = Table(title="Would collect")
    for col in ("vol", "path", "size", "rules"):
        table.add_column(col)
    for row in rows:
        name = row["path"] + (f":{row['stream']}" if row["stream"] else "")
        table.add_row(
            row["volume_label"], _escape(name), str(row["size"]), ", ".join(row["rules"])
        )
    out.print(table)
    out.print(f"{len(rows)} items, {_human(sum(r['size'] for r in rows))}")
    return code


# -- hash -------------------------------------------------------------------
@app.command("hash")
def hash_command(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01, VMDK, VHD/VHDX, QCOW) or device.")],
    algorithms: Annotated[
        str, typer.Option("--disk-hash", "--hash", help="Algorithms.")
    ] = "md5,sha1,sha256",
    piece_size: Annotated[
        str,
        typer.Option(
            "--piece-size",
            help="Also a SHA-256 per piece, e.g. 1GiB (0: off; a 4th pass).",
        ),
    ] = "0",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    parent: ParentOption = None,
) -> None:
    """Hash the whole source (raw bytes), optionally with piecewise SHA-256."""
    import threading

    from selective_imager.collect.chainhash import chain_hasher
    from selective_imager.collect.hashing import hash_source, parse_algorithms
    from selective_imager.collect.stored_hash import compare_stored_hashes
    from selective_imager.sources import open_source

    with _errors():
        try:
            algs = parse_algorithms(algorithms)
        except ValueError as exc:
            raise _Unrecognised(str(exc)) from None
        if not algs:
            raise _Unrecognised("--disk-hash none: nothing to do")
        pieces = _parse_size(piece_size)
        with open_source(source, _source_options(parent, None)) as src, _RichProgress(quiet or json_output) as progress:
            progress.phase("disk-hash", src.info.size, None)
            last = [0]

            def update(total: int) -> None:
                progress.advance(total - last[0])
                last[0] = total

            cancel = threading.Event()
            # A virtual disk's files as received are hashed during the same pass.
            chain = chain_hasher(src.info, algs)
            try:
                result = hash_source(
                    src.stream,
                    algs,
                    piece_size=pieces,
                    sector_size=src.info.sector_size,
                    progress=update,
                    cancel=cancel,
                    sinks=(chain,) if chain else (),
                )
            except KeyboardInterrupt:
                cancel.set()
                raise
            progress.done()
            chain_files = [c.as_dict() for c in chain.results()] if chain else []
            check = compare_stored_hashes(src.info.details, result.digests)
    data: dict[str, Any] = {
        "source": source,
        "size": result.size,
        "complete": result.complete,
        "bytes_hashed": result.bytes_hashed,
        "digests": result.digests.as_dict() if result.digests else None,
        "pieces": [
            {"index": p.index, "offset": p.offset, "length": p.length, "sha256": p.sha256}
            for p in result.pieces
        ],
        "unreadable": [list(r) for r in result.unreadable],
        "stored_hashes": check.stored,
        "stored_hash_check": check.as_dict(),
        "seconds": round(result.seconds, 3),
    }
    if chain_files:
        data["chain_files"] = chain_files
    mismatch = list(check.mismatched)
    data["stored_hash_mismatch"] = mismatch
    if json_output:
        print(json.dumps(data, indent=2))
    else:
        for alg, value in (data["digests"] or {}).items():
            print(f"{alg}  {value}  {source}")
        for item in chain_files:
            for alg, value in (item["digests"] or {}).items():
                print(f"{alg}  {value}  {item['path']}  ({item['role']} file as received)")
        for alg, value in check.stored.items():
            state = "MISMATCH" if alg in mismatch else "matches" if alg in check.matched else "unchecked"
            print(f"stored {alg} {value}: {state}")
        if result.unreadable:
            print(
                "unreadable ranges (zero-filled): "
                + ", ".join(f"{o}+{n}" for o, n in result.unreadable)
            )
    raise typer.Exit(
        EXIT_PARTIAL if mismatch or result.unreadable or not result.complete else EXIT_OK
    )

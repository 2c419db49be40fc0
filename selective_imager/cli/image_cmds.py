"""``image``: a physical image (E01 or raw) written during the disk-hash pass."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from selective_imager.cli.collect_cmds import _parse_size, _RichProgress
from selective_imager.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    ParentOption,
    _errors,
    _source_options,
    _Unrecognised,
    app,
    out,
)
from selective_imager.cli.options import _NO_CREDENTIALS, _CredentialOptions, _with_credentials

if TYPE_CHECKING:
    from selective_imager.discovery import Disk
    from selective_imager.imaging.imager import ImageOptions
    from selective_imager.streams import ByteStream


def image_options(
    output: Path,
    image_format: str,
    segment_size: str,
    compression: str,
    chunk_size: str,
    sector_size: int,
    sparse: bool,
    header: dict[str, str],
) -> ImageOptions:
    """The :class:`ImageOptions` of the command-line values (also used by ``collect``)."""
    from selective_imager.imaging.imager import ImageOptions

    fmt = image_format.lower()
    if fmt == "auto":
        fmt = "raw" if output.suffix.lower() in (".raw", ".dd", ".img", ".bin") else "e01"
    chunk = _parse_size(chunk_size)
    if chunk <= 0 or chunk % sector_size:
        raise _Unrecognised(f"--chunk-size {chunk_size}: must be a multiple of {sector_size} bytes")
    options = ImageOptions(
        format=fmt,
        segment_size=_parse_size(segment_size),
        compression=compression.lower(),
        chunk_sectors=chunk // sector_size,
        sparse=sparse,
        case_number=header.get("case_number", ""),
        evidence_number=header.get("evidence_number", ""),
        examiner=header.get("examiner", ""),
        description=header.get("description", ""),
        notes=header.get("notes", ""),
    )
    try:
        options.check()
    except ValueError as exc:
        raise _Unrecognised(str(exc)) from None
    return options


def record_path(output: Path) -> Path:
    """Where the image's acquisition record goes: ``disk.E01.json``."""
    return output.with_name(output.name + ".json")


@app.command("image")
@_with_credentials
def image_command(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01) or device.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image to write (.E01 or .raw).")],
    image_format: Annotated[
        str, typer.Option("--format", help="e01, raw, or auto (from the output's suffix).")
    ] = "auto",
    segment_size: Annotated[
        str, typer.Option("--segment-size", help="Largest E01 segment file.")
    ] = "2GiB",
    compression: Annotated[
        str, typer.Option("--compression", help="E01: none, empty-block, fast or best.")
    ] = "fast",
    chunk_size: Annotated[str, typer.Option("--chunk-size", help="E01 chunk size.")] = "32KiB",
    sparse: Annotated[
        bool, typer.Option("--sparse/--no-sparse", help="Raw: holes where the source is zero.")
    ] = True,
    disk_hash: Annotated[
        str, typer.Option("--disk-hash", help="Hashes (an E01 always gets md5 and sha1).")
    ] = "md5,sha1",
    piece_size: Annotated[
        str, typer.Option("--piece-size", help="Also a SHA-256 per piece, e.g. 1GiB.")
    ] = "0",
    volume: Annotated[
        str | None, typer.Option("--volume", "-v", help="Image only this volume (number or label).")
    ] = None,
    decrypted: Annotated[
        bool, typer.Option("--decrypted", help="With --volume: the decrypted bytes (BitLocker).")
    ] = False,
    case: Annotated[str, typer.Option("--case", help="Case number.")] = "",
    evidence: Annotated[str, typer.Option("--evidence", help="Evidence number.")] = "",
    examiner: Annotated[str, typer.Option("--examiner", help="Examiner name.")] = "",
    description: Annotated[str, typer.Option("--description", help="Description.")] = "",
    notes: Annotated[str, typer.Option("--notes", help="Free-text notes.")] = "",
    json_output: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    parent: ParentOption = None,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Write a bit-for-bit image of the source (or one volume), hashed in the same pass."""
    from selective_imager.collect.hashing import parse_algorithms
    from selective_imager.discovery import open_disk
    from selective_imager.sources import open_source

    with _errors():
        try:
            wanted = parse_algorithms(disk_hash)
        except ValueError as exc:
            raise _Unrecognised(str(exc)) from None
        if decrypted and volume is None:
            raise _Unrecognised("--decrypted needs --volume N")
        for existing in (output, record_path(output)):
            if existing.exists():
                raise _Unrecognised(f"{existing}: exists: refusing to overwrite")
        header = {
            "case_number": case,
            "evidence_number": evidence,
            "examiner": examiner,
            "description": description,
            "notes": notes,
        }
        pieces = _parse_size(piece_size)

        def write(stream: ByteStream, sector: int, details: dict[str, str]) -> dict[str, Any]:
            # header is read now: the volume branch adds its notes before calling
            opts = image_options(
                output, image_format, segment_size, compression, chunk_size, sector, sparse,
                header,
            )  # fmt: skip
            return _run(stream, sector, output, opts, wanted, pieces, quiet or json_output, details)

        if volume is None:
            with open_source(source, _source_options(parent, None)) as src:
                stream, sector = src.stream, src.info.sector_size
                record = write(stream, sector, dict(src.info.details))
                record["source"] = {"path": source, "format": src.info.format,
                                    "size": src.info.size, "details": dict(src.info.details)}  # fmt: skip
        else:
            creds = credentials.build()
            with open_disk(source, creds, source_options=_source_options(parent, None)) as disk:
                stream, sector, extra = _volume_stream(
                    disk, volume, decrypted, quiet or json_output
                )
                if extra.get("encrypted_source"):
                    header["notes"] = _volume_note(notes, extra)
                record = write(stream, sector, dict(disk.source.info.details))
                record["source"] = {"path": source, "format": disk.source.info.format,
                                    "size": disk.source.info.size, **extra}  # fmt: skip
        record_path(output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if json_output:
        print(json.dumps(record, indent=2))
    else:
        for alg, value in (record.get("digests") or {}).items():
            out.print(f"{alg}  {value}")
        out.print(f"image: {', '.join(record.get('files') or [])}")
        if record["unreadable"]:
            out.print(f"unreadable sectors (zero-filled): {len(record['unreadable'])} range(s)")
    partial = record["unreadable"] or not record["complete"]
    raise typer.Exit(EXIT_PARTIAL if partial else EXIT_OK)


def _run(
    stream: ByteStream,
    sector: int,
    output: Path,
    options: ImageOptions,
    wanted: tuple[str, ...],
    piece_size: int,
    quiet: bool,
    details: dict[str, str],
) -> dict[str, Any]:
    from selective_imager.imaging.imager import ImageTarget, hash_algorithms, image_stream

    target = ImageTarget(
        output,
        stream.size,
        sector,
        options,
        model=details.get("device.model", ""),
        serial=details.get("device.serial", ""),
    )
    cancel = threading.Event()
    with _RichProgress(quiet) as progress:
        progress.phase("image", stream.size, None)
        last = [0]

        def update(total: int) -> None:
            progress.advance(total - last[0])
            last[0] = total

        try:
            _result, record = image_stream(
                stream,
                sector,
                target,
                hash_algorithms(options, wanted),
                piece_size=piece_size,
                progress=update,
                cancel=cancel,
            )
        except KeyboardInterrupt:
            cancel.set()
            raise
        progress.done()
    return record


def _volume_stream(
    disk: Disk, key: str, decrypted: bool, quiet: bool
) -> tuple[ByteStream, int, dict[str, Any]]:
    """The stream of one volume, and what the record says about it."""
    from selective_imager.collect.hashing import hash_source
    from selective_imager.streams import RangeStream

    try:
        vol = disk.volume(int(key) if key.isdigit() else key)
    except KeyError:
        have = ", ".join(v.report.label for v in disk.volumes)
        raise _Unrecognised(f"no volume {key} (volumes: {have})") from None
    report = vol.report
    sector = disk.source.info.sector_size
    extra: dict[str, Any] = {"volume": report.as_dict()}
    enc = report.encryption
    # The encrypted bytes: the partition's slice of the source (the volume's own stream
    # is already the decrypted one once BitLocker is unlocked).
    encrypted_bytes = RangeStream(disk.source.stream, report.volume.offset, report.volume.size)
    if not decrypted:
        return (encrypted_bytes if enc is not None else vol.raw), sector, extra
    if enc is None:
        raise _Unrecognised(f"volume {key}: not encrypted: --decrypted does not apply")
    if vol.stream is None or not enc.unlocked_with:
        raise _Unrecognised(f"volume {key}: locked ({enc.reason or 'no credential unlocked it'})")
    if not quiet:
        out.print(f"hashing the encrypted volume {report.label} first")
    # A separate pass: the decrypted bytes do not give the hash of the encrypted ones.
    encrypted = hash_source(encrypted_bytes, ("md5", "sha256"), sector_size=sector)
    extra["encrypted_source"] = {
        "volume": report.label,
        "offset": report.volume.offset,
        "length": encrypted_bytes.size,
        "complete": encrypted.complete,
        "digests": encrypted.digests.as_dict() if encrypted.digests else None,
        "unreadable": [list(r) for r in encrypted.unreadable],
    }
    extra["decrypted"] = {
        "type": enc.type,
        "method": enc.method,
        "unlocked_with": enc.unlocked_with,
        "volume_guid": enc.volume_guid,
        "decryptor": enc.decryptor,
    }
    return vol.stream, sector, extra


def _volume_note(notes: str, extra: dict[str, Any]) -> str:
    """The E01 notes of a decrypted volume image: which volume, protector, source hash."""
    src = extra["encrypted_source"]
    dec = extra["decrypted"]
    sha = (src.get("digests") or {}).get("sha256", "unknown")
    text = (
        f"decrypted {dec['type']} volume {src['volume']} (disk offset {src['offset']}, "
        f"{dec['method']}, unlocked with {dec['unlocked_with']}); "
        f"encrypted source sha256 {sha}"
    )
    return f"{notes}; {text}" if notes else text

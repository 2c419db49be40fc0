"""``info`` and ``ls``: what is on a source, and the tree of one volume."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from selective_imager.errors import (
    FilesystemError,
    PathNotFoundError,
    SelectiveImagerError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selective_imager.discovery import Disk, OpenVolume
    from selective_imager.models import FileEntry

from selective_imager.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    ParentOption,
    _errors,
    _escape,
    _human,
    _open,
    _pick_store,
    _pick_volume,
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


@app.command()
@_with_credentials
def info(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01, VMDK, VHD/VHDX, QCOW) or device.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    parent: ParentOption = None,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Show the source, its partitions, encrypted volumes and file systems."""
    with _errors():
        creds = credentials.build()
        with _open(source, creds, parents=parent) as disk:
            data = disk.as_dict()
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    _print_info(data)


def _print_info(data: dict[str, Any]) -> None:
    src = data["source"]
    out.print(f"[bold]Source[/] {_escape(src['path'])}")
    out.print(
        f"  format {src['format']}, {src['size']} bytes ({_human(src['size'])}), "
        f"sector size {src['sector_size']}, {len(src['segments'])} segment(s)"
    )
    chain = src.get("chain") or []
    if len(chain) > 1 or any(c["identifier"] for c in chain):
        out.print("  chain (as received, child first):")
        for item in chain:
            ids = "".join(
                f", {label} {item[key]}"
                for label, key in (("id", "identifier"), ("parent id", "parent_identifier"))
                if item[key]
            )
            out.print(
                f"    {item['role']} {_escape(item['path'])}: {item['format']}, "
                f"{item['size']} bytes{ids}"
            )
    for key, value in sorted(src["details"].items()):
        out.print(f"  {_escape(key)}: {_escape(str(value))}")
    table_info = data["partition_table"]
    if table_info:
        out.print(
            f"  partition table: {table_info['scheme']}"
            + (f", disk GUID {table_info['disk_guid']}" if table_info["disk_guid"] else "")
        )
        for problem in table_info["problems"]:
            out.print(f"  [yellow]problem:[/] {_escape(problem)}")
    else:
        out.print("  partition table: none (the source is one volume)")
    table = Table(show_lines=False)
    for col in (
        "#",
        "offset",
        "size",
        "type",
        "name",
        "encryption",
        "file system",
        "label",
        "serial",
    ):
        table.add_column(col)
    for vol in data["volumes"]:
        enc = vol["encryption"]
        fs = vol["filesystem"]
        enc_text = "none"
        if enc:
            enc_text = f"{enc['state']}" + (f" ({enc['method']})" if enc["method"] else "")
        table.add_row(
            # A volume inside a volume (an APFS volume, a shadow copy) shows its label.
            vol["label"] if "/" in vol["label"] else str(vol["index"]),
            str(vol["offset"]),
            _human(vol["size"]),
            _escape(vol["type_name"] or vol["type"] or "-"),
            _escape(vol["name"] or ""),
            enc_text,
            fs["type"] if fs else "-",
            _escape(fs["label"]) if fs else "",
            fs["serial"] if fs else "",
        )
    out.print(table)
    for vol in data["volumes"]:
        enc = vol["encryption"]
        if enc:
            kind = _ENCRYPTION_NAMES.get(enc["type"], enc["type"])
            out.print(
                f"volume {vol['label'] if '/' in vol['label'] else vol['index']}: {kind} "
                f"{enc['state']}, {enc['method'] or '?'}, "
                f"protectors: {', '.join(enc['protectors']) or '-'}, "
                f"{'UUID' if enc['type'] == 'luks' else 'GUID'} {enc['volume_guid']}, "
                + (f"created {enc['created']}, " if enc["created"] else "")
                + f"{'label' if enc['type'] == 'luks' else 'description'} "
                f"{_escape(enc['description'] or '-')}"
                + (f", unlocked with {enc['unlocked_with']}" if enc["unlocked_with"] else "")
                + (f", decrypted with {enc['decryptor']}" if enc.get("decryptor") else "")
            )
            if enc.get("conversion"):
                out.print(f"  [yellow]conversion:[/] {_escape(enc['conversion'])}")
            if enc.get("decryptor_note"):
                out.print(f"  [yellow]decryptor:[/] {_escape(enc['decryptor_note'])}")
            if enc["fallback"]:
                out.print(f"  [yellow]fallback:[/] {_escape(enc['fallback'])}")
        if vol.get("luks"):
            _print_luks(vol["luks"])
        if vol.get("apfs_volume"):
            _print_apfs(vol)
        name = vol["label"] if "/" in vol["label"] else vol["index"]
        if vol["error"]:
            out.print(f"[red]volume {name}: {_escape(vol['error'])}[/]")
        if vol["note"]:
            out.print(f"[yellow]volume {name}: {_escape(vol['note'])}[/]")
        _print_shadow_copies(vol)


def _print_apfs(vol: dict[str, Any]) -> None:
    apfs = vol["apfs_volume"]
    container = vol.get("apfs_container") or {}
    out.print(
        f"volume {vol['label']}: APFS volume {apfs['index']} of "
        f"{container.get('volumes', '?')} in container {container.get('identifier', '?')}, "
        f"role {apfs['role']}, {'case-sensitive' if apfs['case_sensitive'] else 'case-insensitive'}"
        f", {'encrypted' if apfs['encrypted'] else 'not encrypted'}, "
        f"{apfs['snapshot_count']} snapshot(s)"
    )
    for snap in apfs["snapshots"]:
        out.print(f"  snapshot {_escape(snap['name'])} (xid {snap['xid']}), created {snap['created']}")
    if apfs.get("snapshot_problem"):
        out.print(f"  [yellow]snapshots:[/] {_escape(apfs['snapshot_problem'])}")


def _print_shadow_copies(vol: dict[str, Any]) -> None:
    stores = vol.get("shadow_copies")
    if stores is None or vol.get("snapshot") is not None:
        return
    if vol.get("shadow_copies_error"):
        out.print(f"[red]volume {vol['index']}: {_escape(vol['shadow_copies_error'])}[/]")
    out.print(f"volume {vol['index']}: {len(stores)} shadow copies (1 = oldest)")
    table = Table(show_lines=False)
    for col in ("store", "identifier", "copy identifier", "created (UTC)", "in-volume data"):
        table.add_column(col)
    for store in stores:
        in_volume = store["in_volume_data"]
        table.add_row(
            str(store["index"]),
            store["identifier"] or "-",
            store["copy_identifier"] or "-",
            store["creation_time"] or "-",
            "-" if in_volume is None else ("yes" if in_volume else "no"),
        )
    out.print(table)
    for store in stores:
        if store["error"]:
            out.print(f"[red]  {_escape(store['error'])}[/]")



_ENCRYPTION_NAMES = {"bitlocker": "BitLocker", "luks": "LUKS", "apfs": "APFS encryption"}


def _print_luks(luks: dict[str, Any]) -> None:
    """The LUKS header facts of ``info``: cipher, key size, key slots, header copy."""
    slots = ", ".join(
        f"{k['index']} {k['kdf']}"
        + (
            f" {k['hash']} {k['iterations']} it."
            if k["kdf"] == "pbkdf2"
            else f" t={k['time']} m={k['memory_kib']} KiB p={k['parallelism']}"
        )
        for k in luks["keyslots"]
    )
    out.print(
        f"  LUKS{luks['version']}: {luks['cipher']} {luks['key_bits']}-bit, "
        f"sector {luks['sector_size']}, payload at {luks['payload_offset']}, "
        f"{len(luks['segments'])} segment(s), {luks['header_copy']} header; "
        f"key slots in use: {_escape(slots) or '-'}"
    )
    for note in luks["notes"]:
        out.print(f"  [yellow]LUKS:[/] {_escape(note)}")
    if luks.get("cross_check"):
        out.print(f"  cross-check: {_escape(luks['cross_check'])}")


@app.command()
@_with_credentials
def ls(
    source: Annotated[str, typer.Argument(help="Disk image (raw, split, E01, VMDK, VHD/VHDX, QCOW) or device.")],
    path: Annotated[str, typer.Argument(help="Directory or file, '/'-separated.")] = "",
    volume: Annotated[
        str | None,
        typer.Option("--volume", "-v", help="Volume number or label (p2/apfs1) from info."),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="List the whole tree.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    vss: Annotated[
        int | None,
        typer.Option("--vss", help="List the tree as it was in this shadow copy (1 = oldest)."),
    ] = None,
    parent: ParentOption = None,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """List a directory (or the tree) of a volume with entry numbers, sizes, times and ADS."""
    code = EXIT_OK
    with _errors():
        creds = credentials.build()
        options = _vss_options(str(vss)) if vss is not None else None
        with _open(source, creds, options, parents=parent) as disk:
            path, drive = _volume_path(path)
            system = _system_volume(disk) if drive == "C:" and volume is None else None
            vol = system or _pick_volume(disk, volume)
            if vss is not None:
                vol = _pick_store(disk, vol, vss)
            fs = vol.filesystem
            assert fs is not None
            if drive:
                why = " (the one holding Windows/System32)" if system is not None else ""
                err.print(
                    f"note: drive letter {drive} dropped: listing volume {vol.report.label}"
                    f"{why}; choose another with --volume"
                )
            try:
                start = fs.lookup(path)
            except PathNotFoundError:
                where = vol.report.label if vol.report.snapshot else vol.report.volume.index
                raise _Unrecognised(f"{path}: not found on volume {where}") from None
            entries: Iterator[FileEntry]
            unreadable: list[str] = []

            def report(directory: FileEntry, exc: SelectiveImagerError) -> None:
                unreadable.append(directory.path)
                err.print(
                    f"[red]cannot list {_escape(directory.path or '/')}: {_escape(str(exc))}[/]"
                )

            if not start.is_directory:
                entries = iter([start])
            elif recursive:
                entries = fs.walk(start, on_error=report)
            else:
                listing = fs.list_directory(start)
                for problem in listing.problems:
                    report(start, FilesystemError(problem))
                entries = iter(listing.entries)
            damaged = 0
            if not json_output:
                print(f"{'t':1} {'entry-seq':>12} {'size':>12} {'modified (UTC)':<28} path")
            for entry in entries:
                damaged += bool(entry.damage)
                if json_output:
                    print(json.dumps(entry.as_dict(), ensure_ascii=False))
                else:
                    _print_entry(entry)
            code = EXIT_PARTIAL if unreadable or damaged else EXIT_OK
    raise typer.Exit(code)


_DRIVE = re.compile(r"^([A-Za-z]:)(?:[/\\]|$)")


def _system_volume(disk: Disk) -> OpenVolume | None:
    """The one volume holding ``Windows/System32`` (what ``C:`` names, as in CopyLog.csv);
    None when there is no such volume or more than one."""
    found = []
    for vol in disk.volumes:
        if vol.filesystem is None or vol.report.snapshot is not None:
            continue
        try:
            if vol.filesystem.lookup("Windows/System32").is_directory:
                found.append(vol)
        except SelectiveImagerError:
            continue
    return found[0] if len(found) == 1 else None


def _volume_path(text: str) -> tuple[str, str]:
    """``C:\\Windows`` -> (``Windows``, ``C:``): a path inside a volume, and a dropped drive."""
    match = _DRIVE.match(text)
    drive = match.group(1).upper() if match else ""
    if match:
        text = text[match.end() :]
    return text.replace("\\", "/").strip("/"), drive


def _printable(text: str) -> str:
    """A name with control characters escaped, so a hostile name cannot drive the terminal."""
    return "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
        for ch in text
    )


def _print_entry(entry: FileEntry) -> None:
    kind = "d" if entry.is_directory else "l" if entry.link_target else "r"
    ref = f"{entry.entry}-{entry.sequence}" if entry.sequence is not None else f"{entry.entry}"
    times = entry.si or entry.times
    modified = times.modified.isoformat() if times and times.modified else "-"
    deleted = "" if entry.allocated else " (deleted)"
    damaged = f" (damaged: {_printable(entry.damage)})" if entry.damage else ""
    link = f" -> {_printable(entry.link_target)}" if entry.link_target else ""
    name = _printable(entry.path)
    print(f"{kind} {ref:>12} {entry.size:>12} {modified:<28} {name}{link}{deleted}{damaged}")
    for stream in entry.streams:
        print(f"{kind} {ref:>12} {stream.size:>12} {'':<28} {name}:{_printable(stream.name)}")

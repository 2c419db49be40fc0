"""``verify``, ``extract`` and ``show``: reading a finished container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from selective_imager.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    ParentOption,
    _errors,
    _escape,
    _fail,
    _human,
    _open,
    app,
    err,
    out,
)
from selective_imager.cli.options import (
    _NO_CREDENTIALS,
    _CredentialOptions,
    _with_credentials,
)

IdentityOption = Annotated[
    Path | None,
    typer.Option(
        "--identity",
        "-i",
        help="age identity file or unencrypted SSH private key, for an age-encrypted container.",
    ),
]


def _identities(path: Path | None) -> list[Any] | None:
    """The identities in ``--identity`` (read inside the caller's error handler)."""
    if path is None:
        return None
    from selective_imager.container.age import read_identities

    return list(read_identities(path))



# -- verify / extract / show -------------------------------------------------
@app.command()
@_with_credentials
def verify(
    container: Annotated[Path, typer.Argument(help="Evidence container (.zip).")],
    source: Annotated[
        str | None,
        typer.Option("--source", help="Also re-read every item and re-hash the disk from it."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    parent: ParentOption = None,
    identity: IdentityOption = None,
    credentials: _CredentialOptions = _NO_CREDENTIALS,
) -> None:
    """Re-hash every member against the manifest and the seal (and the source)."""
    from selective_imager.container.reader import verify as verify_container

    differences: list[dict[str, Any]] = []
    with _errors():
        identities = _identities(identity)
        report = verify_container(container, identities=identities)
        differences = [
            {
                "what": d.member,
                "kind": d.kind,
                "expected": d.expected,
                "found": d.found,
                "detail": d.detail,
            }
            for d in report.differences
        ]
        source_checked = None
        if source is not None:
            from selective_imager.collect.reverify import reverify_container
            from selective_imager.volumes.base import DiscoveryOptions

            creds = credentials.build()
            # Every shadow copy opened (not read): items collected from stores are
            # looked up in theirs.
            with _open(source, creds, DiscoveryOptions(vss=True), parents=parent) as disk:
                source_checked, item_diffs, disk_diffs = reverify_container(
                    container, disk, identities=identities
                )
            differences += [
                {
                    "what": d.what,
                    "kind": f"source-{d.kind}",
                    "expected": d.expected,
                    "found": d.found,
                    "detail": d.detail,
                }
                for d in (*item_diffs, *disk_diffs)
            ]
    intact = not differences
    complete = report.complete
    ok = intact and complete
    data = {
        "container": str(container),
        "ok": ok,
        "intact": intact,
        "complete": complete,
        "status": report.status,
        "not_complete": list(report.not_complete),
        "seal_present": report.seal_present,
        "members_checked": report.members_checked,
        "items_checked": report.items_checked,
        "source_items_checked": source_checked,
        "differences": differences,
    }
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        extra = (
            f", {source_checked} items re-read from the source"
            if source_checked is not None
            else ""
        )
        counted = f"{report.members_checked} members, {report.items_checked} items checked{extra}"
        # The verdict first (scripts read the first word), then the two answers, then
        # one line per difference.
        if ok:
            verdict = "[green]OK[/]: intact and complete"
        elif intact:
            verdict = "[yellow]NOT OK[/]: intact but not complete"
        else:
            verdict = "[red]FAILED[/]: not intact" + ("" if complete else " and not complete")
        out.print(f"{verdict} ({counted})")
        if intact:
            out.print("intact: yes")
        else:
            out.print(f"[red]intact: NO[/] ({len(differences)} difference(s) below)")
        if complete:
            out.print("complete: yes (status complete)")
        else:
            out.print(f"[yellow]complete: NO[/] ({_escape('; '.join(report.not_complete))})")
        for d in differences:
            out.print(
                f"[red]{d['kind']}[/] {_escape(d['what'])}"
                + (
                    f" expected {d['expected']} found {d['found']}"
                    if d["expected"] or d["found"]
                    else ""
                )
                + (f" ({_escape(d['detail'])})" if d["detail"] else "")
            )
    raise typer.Exit(EXIT_OK if ok else EXIT_PARTIAL)


@app.command()
def extract(
    container: Annotated[Path, typer.Argument(help="Evidence container (.zip).")],
    dest: Annotated[Path, typer.Argument(help="Destination folder.")],
    path: Annotated[
        str | None, typer.Option("--path", help="Only items whose original path matches this glob.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    identity: IdentityOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Extract anyway: from a container that is not intact, and into a non-empty "
            "DEST (replacing its regular files).",
        ),
    ] = False,
    layout: Annotated[
        str,
        typer.Option(
            "--layout", help="native (DEST/p3/...) or kape (DEST/C/Windows/..., KAPE's output)."
        ),
    ] = "native",
) -> None:
    """Restore collected files under their original names, with modification times.

    A non-empty DEST is refused before anything is read, and the container is verified
    first; one that is not intact is refused. --force does both anyway.
    """
    from selective_imager.container.reader import check_destination, check_layout
    from selective_imager.container.reader import extract as extract_container
    from selective_imager.container.reader import verify as verify_container

    with _errors():
        check_layout(layout)
        check_destination(dest, overwrite=force)
        checked = verify_container(container, identities=_identities(identity))
        if not checked.intact:
            first = checked.differences[0]
            what = f"{first.kind} {first.member}" + (f" ({first.detail})" if first.detail else "")
            if not force:
                _fail(
                    f"{container}: not extracted: it fails verify ({len(checked.differences)} "
                    f"difference(s), first: {what}); use --force to extract anyway",
                    EXIT_PARTIAL,
                )
            err.print(
                f"[yellow]warning:[/] {_escape(str(container))} is not intact "
                f"({len(checked.differences)} difference(s), first: {_escape(what)}); "
                "extracting anyway (--force)"
            )
        elif not checked.complete:
            err.print(
                f"[yellow]note:[/] the acquisition is not complete: "
                f"{_escape('; '.join(checked.not_complete))}"
            )
        report = extract_container(
            container,
            dest,
            pattern=path,
            identities=_identities(identity),
            overwrite=force,
            layout=layout,
        )
    if json_output:
        print(
            json.dumps(
                {
                    "dest": report.dest,
                    "files": report.files,
                    "bytes": report.bytes,
                    "refused": [list(r) for r in report.refused],
                    "failed": [list(f) for f in report.failed],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for name, reason in report.refused:
            err.print(f"[yellow]refused[/] {_escape(name)}: {_escape(reason)}")
        for name, error in report.failed:
            err.print(f"[red]failed[/] {_escape(name)}: {_escape(error)}")
        out.print(
            f"{report.files} files, {_human(report.bytes)} restored under {_escape(report.dest)}"
        )
    raise typer.Exit(EXIT_OK if report.ok else EXIT_PARTIAL)


@app.command()
def recover(
    container: Annotated[Path, typer.Argument(help="Container of a killed collection (.zip).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rebuild a valid, sealed container (status incomplete) from a killed collection.

    Keeps every member that is complete and matches its journal line; never reads the
    source, never changes a kept member's bytes. Running it again changes nothing.
    """
    from selective_imager.container.recover import recover as recover_container

    with _errors():
        report = recover_container(container)
    if json_output:
        print(
            json.dumps(
                {
                    "container": report.path,
                    "recovered": report.recovered,
                    "message": report.message,
                    "kept": report.kept,
                    "dropped": [list(d) for d in report.dropped],
                    "records": report.records,
                    "lost": report.lost,
                    "counts": report.counts,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for name, reason in report.dropped:
            err.print(f"[yellow]dropped[/] {_escape(name)}: {_escape(reason)}")
        out.print(_escape(report.message))
    raise typer.Exit(EXIT_OK)


@app.command()
def show(
    container: Annotated[Path, typer.Argument(help="Evidence container (.zip).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    identity: IdentityOption = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write CopyLog.csv, SkipLog.csv, bodyfile.txt and report.html into DIR.",
        ),
    ] = None,
) -> None:
    """Summarise a container: source, volumes, counts, hashes, seal status."""
    from selective_imager.container.reader import summary

    with _errors():
        identities = _identities(identity)
        data = summary(container, identities)
        if export is not None:
            _export(container, export, identities, data.get("seal") or {})
    if json_output:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    acq = data.get("acquisition") or {}
    out.print(
        f"[bold]Container[/] {_escape(str(data.get('path')))} ({_human(int(data.get('container_bytes') or 0))})"
    )
    if acq:
        src = acq.get("source") or {}
        out.print(
            f"  tool {acq.get('tool')} {acq.get('version')}, {acq.get('started')} → {acq.get('ended')}, status {acq.get('status')}"
        )
        out.print(
            f"  source {_escape(str(src.get('path')))} ({src.get('format')}, {src.get('size')} bytes)"
        )
        case = acq.get("case") or {}
        if any(case.values()):
            out.print("  case " + ", ".join(f"{k}={_escape(str(v))}" for k, v in case.items() if v))
        for vol in acq.get("volumes", []):
            if vol.get("snapshot") is not None:
                continue  # listed under its live volume
            fs = vol.get("filesystem") or {}
            enc = vol.get("encryption") or {}
            out.print(
                f"  volume {vol.get('index')}: {fs.get('type', '-')} {_escape(fs.get('label', '') or '')}"
                + (f", BitLocker {enc.get('state')}" if enc else "")
                + (f" [red]{_escape(vol['error'])}[/]" if vol.get("error") else "")
            )
            _show_stores(vol, data.get("items_by_volume") or {})
        disk = acq.get("disk_hash") or {}
        for alg, value in (disk.get("digests") or {}).items():
            out.print(f"  disk {alg} {value}")
        if disk and not disk.get("complete"):
            out.print(
                f"  [yellow]disk hash incomplete: {disk.get('bytes_hashed')} of {disk.get('size')} bytes[/]"
            )
    status = acq.get("status") if acq else None
    out.print(f"  [bold]status {_escape(str(status or 'unknown (no acquisition.json)'))}[/]")
    for reason in acq.get("status_reasons") or []:
        out.print(f"    {_escape(str(reason))}")
    for problem in acq.get("volume_errors") or []:
        out.print(f"    [red]volume error[/] {_escape(str(problem))}")
    out.print(f"  items: {data.get('items', 0)}")
    for key, value in sorted((data.get("outcomes") or {}).items()):
        out.print(f"    {_escape(key)}: {value}")
    from selective_imager.collect.report import seal_words

    out.print(f"  seal: {_escape(seal_words(data.get('seal') or {}))}")

def _export(
    container: Path, dest: Path, identities: list[Any] | None, seal: dict[str, Any]
) -> None:
    """Write the exports (the container's own, else made from its manifest: older
    containers lack them) and a report.html that quotes the seal."""
    from selective_imager.collect.exports import EXPORT_NAMES, write_export_files
    from selective_imager.collect.report import REPORT_NAME, report_bytes
    from selective_imager.container.reader import MAX_METADATA, open_container
    from selective_imager.container.seal import MANIFEST_NAME

    with open_container(container, identities) as box:
        records = [json.loads(x) for x in box.read(MANIFEST_NAME).decode("utf-8").splitlines() if x]
        acquisition = box.acquisition() or {}
        members = box.zip.NameToInfo
        stored = {
            n: box.read(n)
            for n in EXPORT_NAMES
            if n in members and members[n].file_size <= MAX_METADATA
        }
    ended = str(acquisition.get("ended") or "")
    files = {**stored, REPORT_NAME: report_bytes(acquisition, records, seal)}
    for path in write_export_files(records, ended, dest, files):
        err.print(f"wrote {_escape(str(path))}")


def _show_stores(vol: dict[str, Any], items: dict[str, int]) -> None:
    """One line per shadow copy of a volume: when, whether collected, how many items."""
    stores = vol.get("shadow_copies")
    if vol.get("snapshot") is not None or not isinstance(stores, list):
        return
    if not stores:
        return
    taken = sum(1 for s in stores if s.get("selected") and not s.get("error"))
    out.print(f"    {len(stores)} shadow copies, {taken} collected")
    for store in stores:
        label = f"{vol.get('label')}/vss{store.get('index')}"
        state = "not selected"
        if store.get("error"):
            state = f"[red]{_escape(str(store['error']))}[/]"
        elif store.get("selected"):
            state = f"{items.get(label, 0)} items"
        out.print(
            f"    {label}: created {store.get('creation_time')}, "
            f"id {store.get('identifier')}: {state}"
        )

"""``collect --live``: the device to read, the output check and the live facts.

The one place the CLI turns ``--live`` / ``--device`` / ``--allow-output-on-source``
into a source path and the :class:`~selective_imager.collect.collector.CollectOptions`
fields of a live run (host facts, the device's stack and mounts, the re-check).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from selective_imager.cli.common import _errors, _escape, _Unrecognised, err

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def each_device(command: Callable[..., None], params: dict[str, Any]) -> None:
    """Run ``collect`` once per device, one container each; return when there is one.

    Every output and the output check are settled for all devices before the first
    is read. Each container records the host facts as they were when its own
    collection started. Exits with the worst of the runs' exit codes.
    """
    import inspect

    from selective_imager.collect.resume import check_output
    from selective_imager.live.plan import live_outputs, plan_live, refuse_output_on_sources

    wanted = inspect.signature(command).parameters
    params = {name: value for name, value in params.items() if name in wanted}

    with _errors():
        if params["source"] is not None:
            raise _Unrecognised("--live takes no SOURCE: it finds the devices (narrow with --device)")
        plan = plan_live(tuple(params["device"] or ()))
        if len(plan.sources) == 1:
            return
        if params.get("upload"):
            # One remote path names one container.
            raise _Unrecognised(
                f"--upload with {len(plan.sources)} devices: collect one per run (--device DEV)"
            )
        output = params["output"]
        outputs: list[Path | None] = [None] * len(plan.sources)
        if output is not None and not params["dry_run"]:
            if not params["allow_output_on_source"]:
                refuse_output_on_sources(plan, output)
            for index, target in enumerate(live_outputs(plan, output)):
                check_output(target, overwrite=params["force"], resume=params["resume"])
                outputs[index] = target
    codes = []
    for source, path in zip(plan.sources, outputs, strict=True):
        where = ", ".join(m.mountpoint for m in source.mounts) or "not mounted"
        err.print(f"--live: {_escape(source.device.path)} ({_escape(where)}) -> {_escape(str(path))}")
        try:
            command(**{**params, "device": [source.device.path], "output": path})
        except typer.Exit as exc:
            codes.append(exc.exit_code)
    raise typer.Exit(max(codes))


def live_source(
    source: str | None, devices: list[str] | None, output: Path | None, allow_on_source: bool
) -> tuple[str, dict[str, Any]]:
    """The device to read and the CollectOptions fields of the live run.

    Raises:
        _Unrecognised: not Linux, a SOURCE as well, several devices and no --device,
            or an output on a file system of the device (without allow_on_source).
    """
    from selective_imager.collect.host import host_facts
    from selective_imager.live.blockdev import bottom_disks, device_by_name, read_mounts
    from selective_imager.live.plan import mount_record, plan_live, refuse_output_on_sources
    from selective_imager.live.recheck import RecordRecheck
    from selective_imager.sources.ata import hidden_areas

    if not sys.platform.startswith("linux"):
        raise _Unrecognised("--live reads the running system's devices on Linux only")
    if source is not None:
        raise _Unrecognised("--live takes no SOURCE: it finds the devices (narrow with --device)")
    mounts = read_mounts()
    plan = plan_live(tuple(devices or ()), mounts)
    if len(plan.sources) > 1:  # each_device runs one collection per device
        raise _Unrecognised("--live: one device per run")
    if output is not None and not allow_on_source:
        refuse_output_on_sources(plan, output, mounts)
    chosen = plan.sources[0]
    disks = []
    for name in bottom_disks(chosen.device.name) or [chosen.device.name]:
        disk = device_by_name(name)
        disks.append(hidden_areas(name, disk.size if disk else 0))
    live = {
        "device": chosen.as_dict(),
        "hidden_areas": disks,
        "skipped_mounts": plan.skipped,
        "output_on_source_allowed": allow_on_source,
        "read": "buffered O_RDONLY reads of the block device (its page cache); sync is not "
        "run: data the mounted file system has not written back yet is not on the device",
    }
    options = {
        "host": host_facts([mount_record(m) for m in mounts]),
        "live": live,
        "recheck": RecordRecheck(),
        "allow_output_on_source": allow_on_source,
    }
    return chosen.device.path, options

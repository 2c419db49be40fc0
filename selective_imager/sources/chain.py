"""What the virtual-disk formats share: opening a differencing chain, child first.

A differencing child (VHD/VHDX differencing disk, QCOW overlay, VMDK snapshot) records
its parent by name or path and, in most formats, by identifier. Each parent is looked
for among the files given with ``--parent`` (same name first, then any of them), then
next to the child by the name it records, then at the recorded path itself. A parent
whose identifier differs from the one the child records is refused (it is not the
disk the child was made over). Every file is opened read-only through
:class:`~selective_imager.streams.FileStream` objects handed to the libyal binding, so
the bindings never open a path themselves.
"""

from __future__ import annotations

import ntpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selective_imager.errors import SourceError, short_error
from selective_imager.models import ChainFile, SourceInfo
from selective_imager.sources.base import Source, SourceOptions, detect_sector_size, file_stream
from selective_imager.streams import LibyalStream

if TYPE_CHECKING:
    from collections.abc import Callable

    from selective_imager.streams import FileStream

# Deeper chains exist (VMware snapshot trees) but not hundreds deep: a bound stops loops.
MAX_DEPTH = 64


@dataclass(slots=True)
class OpenedFile:
    """One file of a virtual disk, open in its binding.

    Attributes:
        path: the file's path.
        handle: the libyal object reading it (``set_parent`` links the parent).
        files: the read-only file objects handed to the binding (closed after it).
        chain: this file (and, for VMDK, its extent files) as received.
        identifier: the identifier the format stores for this file ("" if none).
        parent_name: the name or path the file records for its parent ("" = no parent).
        parent_identifier: the parent identifier the file records ("" if none).
        details: facts about this file for ``SourceInfo.details``.
    """

    path: str
    handle: Any
    files: list[FileStream]
    chain: list[ChainFile]
    identifier: str = ""
    parent_name: str = ""
    parent_identifier: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        """Close the binding, then the files it read."""
        self.handle.close()
        for f in self.files:
            f.close()


def open_stream(path: str) -> FileStream:
    """A read-only file object over ``path`` for a binding's ``open_file_object``."""
    return file_stream(path, Path(path).stat().st_size)


def open_virtual_disk(
    path: str,
    options: SourceOptions,
    fmt: str,
    open_file: Callable[[str], OpenedFile],
) -> Source:
    """Open ``path`` and its parents as one :class:`Source` (the virtual disk).

    Raises:
        SourceError: a file is damaged, a parent is missing or is the wrong one.
    """
    layers = [open_file(path)]
    try:
        while layers[-1].parent_name or layers[-1].parent_identifier:
            if len(layers) > MAX_DEPTH:
                raise SourceError(f"{path}: differencing chain deeper than {MAX_DEPTH} files")
            parent = _find_parent(layers[-1], options, layers, open_file)
            try:
                layers[-1].handle.set_parent(parent.handle)
            except OSError as exc:
                parent.close()
                raise SourceError(
                    f"{layers[-1].path}: cannot use {parent.path} as its parent: "
                    f"{short_error(exc)}"
                ) from exc
            layers.append(parent)
        return _as_source(path, fmt, layers)
    except BaseException:
        for layer in reversed(layers):
            layer.close()
        raise


def _as_source(path: str, fmt: str, layers: list[OpenedFile]) -> Source:
    child = layers[0]
    try:
        size = int(child.handle.get_media_size())
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the virtual disk size: {short_error(exc)}") from exc
    if size <= 0:
        raise SourceError(f"{path}: the virtual disk is empty (size 0)")
    stream = VirtualDiskStream(child.handle, size, path, fmt)
    details = dict(child.details)
    details["virtual_size"] = str(size)
    details["chain_length"] = str(len(layers))
    chain: list[ChainFile] = []
    for depth, layer in enumerate(layers):
        role = "parent" if depth else ("child" if len(layers) > 1 else "")
        for item in layer.chain:
            chain.append(_with_role(item, role) if role and item.role == "image" else item)
    info = SourceInfo(
        path=path,
        format=fmt,
        size=size,
        sector_size=detect_sector_size(stream),
        segments=tuple(c.path for c in chain),
        details=details,
        chain=tuple(chain),
    )
    extra: list[Any] = [f for layer in layers for f in layer.files]
    extra += [layer.handle for layer in layers[1:]]
    return Source(info, stream, child.handle, extra)


def _with_role(item: ChainFile, role: str) -> ChainFile:
    return ChainFile(
        item.path, item.size, role, item.format, item.identifier, item.parent_identifier
    )


def _find_parent(
    child: OpenedFile,
    options: SourceOptions,
    layers: list[OpenedFile],
    open_file: Callable[[str], OpenedFile],
) -> OpenedFile:
    """Open the parent ``child`` records; check its identifier."""
    in_chain = {str(Path(layer.path).resolve()) for layer in layers}
    wrong: list[str] = []
    for candidate in _candidates(child, options):
        if str(Path(candidate).resolve()) in in_chain:
            continue
        parent = open_file(candidate)
        if child.parent_identifier and parent.identifier != child.parent_identifier:
            wrong.append(f"{candidate} has {parent.identifier or 'no identifier'}")
            parent.close()
            continue
        return parent
    wanted = child.parent_name or f"identifier {child.parent_identifier}"
    if wrong:
        raise SourceError(
            f"{child.path}: wrong parent: the child was made over parent identifier "
            f"{child.parent_identifier} ({wanted}), but " + "; ".join(wrong)
        )
    raise SourceError(
        f"{child.path}: parent {wanted} not found (looked for "
        f"{_next_to(child) or wanted}): give it with --parent FILE"
    )


def _candidates(child: OpenedFile, options: SourceOptions) -> list[str]:
    """Parent paths to try, in order (existing files only)."""
    base = _base_name(child.parent_name)
    given = list(options.parents)
    order = [p for p in given if base and Path(p).name == base]
    order += [p for p in given if p not in order]
    beside = _next_to(child)
    if beside:
        order.append(beside)
    recorded = child.parent_name.replace("\\", "/") if child.parent_name else ""
    if recorded and Path(recorded).is_absolute():
        order.append(recorded)
    seen: set[str] = set()
    result = []
    for p in order:
        if p not in seen and Path(p).is_file():
            seen.add(p)
            result.append(p)
    return result


def _next_to(child: OpenedFile) -> str:
    """The recorded parent name, resolved in the child's directory ("" if none)."""
    if not child.parent_name:
        return ""
    folder = Path(child.path).parent
    relative = child.parent_name.replace("\\", "/")
    if not Path(relative).is_absolute() and not ntpath.isabs(child.parent_name):
        here = folder / relative
        if here.is_file():
            return str(here)
    return str(folder / _base_name(child.parent_name))


def _base_name(recorded: str) -> str:
    """The file name of a recorded parent path (Windows or POSIX separators)."""
    return ntpath.basename(recorded.replace("/", "\\")) if recorded else ""


class VirtualDiskStream(LibyalStream):
    """The virtual disk (what the guest saw) as a ByteStream; a read error names the file."""

    def __init__(self, handle: Any, size: int, path: str, fmt: str) -> None:
        super().__init__(handle, size)
        self.path = path
        self.fmt = fmt

    def _read_at(self, offset: int, size: int) -> bytes:
        try:
            data = super()._read_at(offset, size)
        except OSError as exc:
            raise SourceError(
                f"{self.path}: {self.fmt} read error at {offset}: {short_error(exc)}"
            ) from exc
        if len(data) != size:
            raise SourceError(
                f"{self.path}: {self.fmt} read at {offset} returned {len(data)} of {size} "
                "bytes (the file is truncated?)"
            )
        return data

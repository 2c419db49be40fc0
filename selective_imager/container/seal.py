"""The container layout and its seal.

A container is a ZIP file holding::

    files/<volume>/<encoded path>     collected content (names: container.names)
    manifest.jsonl                    one JSON object per collected item
    acquisition.json                  the run: source, volumes, options, times
    log.jsonl                         the run's log
    rules/<file>                      the rule files used
    SEAL.json                         written last: SHA-256 of every other member

``SEAL.json`` is ``{"format": "selective-imager-seal/1", "algorithm": "sha256",
"created": ISO time, "tool": "...", "members": {name: hex, ...}}`` and covers every
other member's uncompressed content, in file order. The writer hashes each member
while streaming it (or takes the digest the collector already computed), so sealing
needs no second read.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from selective_imager.collect.outcome import Outcome
from selective_imager.errors import ContainerError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from selective_imager.container.zipwriter import MemberInfo, ZipWriter

SEAL_NAME = "SEAL.json"
SEAL_NAMES = (SEAL_NAME, "seal.json")
SEAL_FORMAT = "selective-imager-seal/1"
MANIFEST_NAME = "manifest.jsonl"
ACQUISITION_NAME = "acquisition.json"
LOG_NAME = "log.jsonl"
RULES_PREFIX = "rules/"

OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True, slots=True)
class Seal:
    """A parsed seal document."""

    algorithm: str
    members: dict[str, str]
    created: str = ""
    tool: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Sealer:
    """Collects member digests and renders the seal document."""

    def __init__(self) -> None:
        self._members: dict[str, str] = {}

    def record(self, info: MemberInfo) -> None:
        """Add a closed member (its ``sha256`` must be known)."""
        if info.sha256 is None:
            raise ContainerError(f"member {info.name!r} has no SHA-256: it cannot be sealed")
        self.add(info.name, info.sha256)

    def add(self, name: str, sha256: str) -> None:
        """Add a member digest."""
        if name in SEAL_NAMES:
            raise ContainerError("the seal cannot cover itself")
        self._members[name] = sha256.lower()

    def document(
        self, *, tool: str, created: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The seal as a JSON-ready dict."""
        when = created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace(
            "+00:00", "Z"
        )
        doc: dict[str, Any] = {
            "format": SEAL_FORMAT,
            "algorithm": "sha256",
            "created": when,
            "tool": tool,
        }
        if extra:
            doc.update({k: v for k, v in extra.items() if k not in doc and k != "members"})
        doc["members"] = dict(self._members)
        return doc

    def to_bytes(self, **kwargs: Any) -> bytes:
        """The seal document as UTF-8 JSON (keyword arguments as :meth:`document`)."""
        return (json.dumps(self.document(**kwargs), indent=1, ensure_ascii=False) + "\n").encode()


def seal_members(members: Iterable[MemberInfo]) -> Sealer:
    """A :class:`Sealer` holding every member in ``members`` except a seal."""
    sealer = Sealer()
    for info in members:
        if info.name not in SEAL_NAMES:
            sealer.record(info)
    return sealer


def write_seal(
    writer: ZipWriter,
    *,
    tool: str,
    created: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> MemberInfo:
    """Write ``SEAL.json`` covering every member written so far.

    Call it last, right before :meth:`ZipWriter.close`.

    Raises:
        ContainerError: a member has no SHA-256, or a member is still open.
    """
    sealer = seal_members(writer.members)
    data = sealer.to_bytes(tool=tool, created=created, extra=extra)
    return writer.add_bytes(SEAL_NAME, data, compress=True)


def parse_seal(data: bytes) -> Seal:
    """Parse a seal document.

    Raises:
        ContainerError: not a valid seal.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContainerError(f"the seal is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("members"), dict):
        raise ContainerError("the seal has no members table")
    algorithm = doc.get("algorithm", "sha256")
    if algorithm != "sha256":
        raise ContainerError(f"unsupported seal algorithm {algorithm!r}")
    members = {str(k): str(v).lower() for k, v in doc["members"].items()}
    extra = {k: v for k, v in doc.items() if k not in ("algorithm", "members", "created", "tool")}
    return Seal(
        algorithm=algorithm,
        members=members,
        created=str(doc.get("created", "")),
        tool=str(doc.get("tool", "")),
        extra=extra,
    )


__all__ = [
    "ACQUISITION_NAME",
    "LOG_NAME",
    "MANIFEST_NAME",
    "OUTCOMES",
    "RULES_PREFIX",
    "SEAL_FORMAT",
    "SEAL_NAME",
    "SEAL_NAMES",
    "Seal",
    "Sealer",
    "parse_seal",
    "seal_members",
    "write_seal",
]

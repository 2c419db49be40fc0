"""The hash an image format stores for its media (E01) against the one computed here.

An EWF image records the MD5 (and often SHA-1/SHA-256) its acquisition tool computed
over the media; the source layer puts them in ``SourceInfo.details`` as
``stored_hash.<algorithm>``. Comparing them with the disk hash this tool computed
while reading the same media says whether the image still holds what was acquired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from selective_imager.models import Digests

_PREFIX = "stored_hash."


@dataclass(frozen=True, slots=True)
class StoredHashCheck:
    """The comparison of stored and computed media hashes.

    Attributes:
        stored: ``{algorithm: hex}`` the image records.
        matched: algorithms whose computed digest equals the stored one.
        mismatched: algorithms whose computed digest differs.
        unchecked: stored algorithms not computed here (or no finished disk hash).
    """

    stored: dict[str, str]
    matched: tuple[str, ...]
    mismatched: tuple[str, ...]
    unchecked: tuple[str, ...]

    @property
    def verdict(self) -> str:
        """``match``, ``MISMATCH``, ``unchecked`` or ``none`` (nothing stored)."""
        if not self.stored:
            return "none"
        if self.mismatched:
            return "MISMATCH"
        return "match" if self.matched else "unchecked"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``acquisition.json`` and ``--json`` summaries)."""
        return {
            "verdict": self.verdict,
            "stored": dict(self.stored),
            "matched": list(self.matched),
            "mismatched": list(self.mismatched),
            "unchecked": list(self.unchecked),
        }


def stored_hashes(details: Mapping[str, Any]) -> dict[str, str]:
    """``{algorithm: hex}`` from a source's details (``stored_hash.md5`` ...)."""
    return {
        key[len(_PREFIX) :]: str(value).lower()
        for key, value in details.items()
        if key.startswith(_PREFIX) and value
    }


def compare_stored_hashes(details: Mapping[str, Any], computed: Digests | None) -> StoredHashCheck:
    """Compare the stored media hashes with ``computed`` (None: no finished disk hash)."""
    stored = stored_hashes(details)
    matched: list[str] = []
    mismatched: list[str] = []
    unchecked: list[str] = []
    for alg, value in stored.items():
        found = computed.get(alg) if computed is not None else None
        if found is None:
            unchecked.append(alg)
        elif found.lower() == value:
            matched.append(alg)
        else:
            mismatched.append(alg)
    return StoredHashCheck(stored, tuple(matched), tuple(mismatched), tuple(unchecked))


__all__ = ["StoredHashCheck", "compare_stored_hashes", "stored_hashes"]

"""How the library reports progress without knowing about terminals.

The CLI implements :class:`ProgressSink` with rich; tests and library users get
:class:`NullProgress`.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    """Receives progress of a long operation (collection, disk hash)."""

    def phase(self, name: str, total_bytes: int | None, total_items: int | None) -> None:
        """A new phase starts (``collect``, ``disk-hash``...); totals may be unknown."""
        ...

    def item(self, label: str) -> None:
        """Work on one item (a file being collected) starts."""
        ...

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        """Some bytes and/or items are done."""
        ...

    def done(self) -> None:
        """The current phase ended."""
        ...


class NullProgress:
    """Discards progress."""

    def phase(self, name: str, total_bytes: int | None, total_items: int | None) -> None:
        """Ignored."""

    def item(self, label: str) -> None:
        """Ignored."""

    def advance(self, nbytes: int = 0, items: int = 0) -> None:
        """Ignored."""

    def done(self) -> None:
        """Ignored."""

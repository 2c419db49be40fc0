"""What happened to one selected item: the one vocabulary of manifests, reports and readers."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What happened to one selected item (acquire's ``Outcome`` idea)."""

    COLLECTED = "collected"
    DUPLICATE = "duplicate"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"


# Items whose content is in the container (a duplicate's is in the member it names).
CONTENT_OUTCOMES = frozenset({Outcome.COLLECTED, Outcome.PARTIAL, Outcome.DUPLICATE})
# Items whose own member holds the content.
STORED_OUTCOMES = frozenset({Outcome.COLLECTED, Outcome.PARTIAL})
# Items that were matched but not stored intact.
LOST_OUTCOMES = frozenset({Outcome.PARTIAL, Outcome.FAILED})

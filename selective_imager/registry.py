"""What every layer's registry shares: entries are ``module:Class`` strings, imported on use."""

from __future__ import annotations

import importlib
from typing import Any


def load_class(spec: str) -> Any:
    """The class named by a ``module:Class`` registry entry (each registry types its own)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)

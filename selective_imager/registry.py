"""What every layer's registry shares: entries are ``module:Class`` strings, imported on use."""

from __future__ import annotations

import importlib
from typing import Any

from selective_imager.errors import BackendMissingError


def load_class(spec: str) -> Any:
    """The class named by a ``module:Class`` registry entry (each registry types its own).

    Raises:
        BackendMissingError: the module imports a library that is not installed.
    """
    module, _, name = spec.partition(":")
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        # Format modules import their bindings (pyvmdk, pyfsapfs...) at the top.
        missing = exc.name or str(exc)
        raise BackendMissingError(
            f"{module.rsplit('.', 1)[-1]} support needs the Python module {missing!r}, "
            "which is not installed (scripts/setup.sh installs it)"
        ) from exc
    return getattr(loaded, name)

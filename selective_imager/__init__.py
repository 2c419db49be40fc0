"""selective_imager: forensic selective and logical imaging.

Open a disk image or device, find its volumes (MBR/GPT, BitLocker) and file systems,
select artifacts with rules and collect them into a sealed logical evidence container.
The library never imports typer or rich; only :mod:`selective_imager.cli.app` does.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

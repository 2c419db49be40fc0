"""``python -m selective_imager``."""

from __future__ import annotations

from selective_imager.cli.app import main

if __name__ == "__main__":
    main()

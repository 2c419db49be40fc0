#!/usr/bin/env bash
# Set up and run every check: ruff, mypy, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check selective_imager tests fixtures bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Set up and run the main job on the bundled demo image (a small Windows-like GPT disk).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
mkdir -p demo-output
IMAGE=demo-output/gpt-ntfs.raw
[ -f "$IMAGE" ] || gunzip -c fixtures/gpt-ntfs.raw.gz > "$IMAGE"
SI=.venv/bin/selective-imager
set -x
"$SI" info "$IMAGE"
"$SI" ls "$IMAGE" Windows/System32/config --volume 3

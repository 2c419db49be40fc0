#!/usr/bin/env bash
# Set up, then run the main job on the bundled demo image: a small Windows-like GPT
# disk (EFI FAT partition, MSR, NTFS with hives, event logs, prefetch, user profiles,
# ADS and a sparse $UsnJrnl:$J). Output goes to demo-output/.
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
"$SI" collect "$IMAGE" --rule registry-and-mft --dry-run
"$SI" collect "$IMAGE" -o demo-output/demo.zip --force --case DEMO-1 --examiner demo
"$SI" verify demo-output/demo.zip --source "$IMAGE"
"$SI" show demo-output/demo.zip

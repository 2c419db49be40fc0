"""Physical images: E01 (EnCase 6 layout) and raw, written during the disk-hash pass."""

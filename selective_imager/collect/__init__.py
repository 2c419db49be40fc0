"""Copying: the collection run, the disk hash, the manifest records and re-verification."""

"""The $MFT of an NTFS volume read two ways: the own record parser, or pyfsntfs per entry.

    .venv/bin/python bench/listing_parse.py IMAGE (own|pyfsntfs)

Prints one JSON line: entries seen in use (both must agree) and the last partition's
label. ``own`` is ``NtfsFilesystem.mft_records()`` (sequential 4 MiB reads, numpy
fixups, struct parsing); ``pyfsntfs`` reads each entry with ``get_file_entry(i)`` and
what the listing needs of it (names, parents, $SI/$FN times, size, ADS).
"""

from __future__ import annotations

import json
import sys

from selective_imager.discovery import open_disk
from selective_imager.filesystems.ntfs import NtfsFilesystem


def own(fs: NtfsFilesystem) -> int:
    return sum(1 for r in fs.mft_records() if r.in_use and not r.damage)


def with_pyfsntfs(fs: NtfsFilesystem) -> int:
    volume = fs._volume
    seen = 0
    for i in range(volume.get_number_of_file_entries()):
        try:
            fe = volume.get_file_entry(i)
            if not fe.is_allocated():
                continue
        except OSError:
            continue
        if int(fe.get_base_record_file_reference()) & 0xFFFFFFFFFFFF not in (0, i):
            continue
        for k in range(fe.get_number_of_attributes()):
            attr = fe.get_attribute(k)
            if attr.get_attribute_type() in (0x10, 0x30):
                attr.get_creation_time_as_integer()
                attr.get_modification_time_as_integer()
                attr.get_entry_modification_time_as_integer()
                attr.get_access_time_as_integer()
                if attr.get_attribute_type() == 0x30:
                    attr.get_name()
                    attr.get_parent_file_reference()
        if fe.has_default_data_stream():
            fe.get_size()
        for ads in fe.alternate_data_streams:
            ads.get_name()
            ads.get_size()
        seen += 1
    return seen


def main() -> None:
    image, how = sys.argv[1], sys.argv[2]
    disk = open_disk(image)
    vol = [v for v in disk.volumes if isinstance(v.filesystem, NtfsFilesystem)][-1]
    fs = vol.filesystem
    assert isinstance(fs, NtfsFilesystem)
    count = own(fs) if how == "own" else with_pyfsntfs(fs)
    print(json.dumps({"in_use": count, "volume": vol.report.label, "how": how}))


if __name__ == "__main__":
    main()

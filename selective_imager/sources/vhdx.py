"""Microsoft VHDX (Hyper-V) disks through libvhdi (pyvhdi).

Fixed, dynamic and differencing disks. A differencing disk's parent locator names
the parent (relative and absolute paths) and its ``parent_linkage`` identifier,
which must match the parent's; the opening itself is shared with :mod:`.vhd`.

References:
    - libyal libvhdi, "Virtual Hard Disk version 2 (VHDX) image format" (file type
      identifier ``vhdxfile``, the two headers and region tables, the metadata region
      with file parameters (has-parent flag) and the parent locator).
"""

from __future__ import annotations

from selective_imager.sources.base import Source, SourceFormat, SourceOptions
from selective_imager.sources.chain import open_virtual_disk
from selective_imager.sources.vhd import open_vhdi

_SIGNATURE = b"vhdxfile"


class VhdxFormat(SourceFormat):
    """A VHDX: the ``vhdxfile`` file type identifier at the start."""

    name = "vhdx"

    @classmethod
    def detect(cls, path: str, head: bytes) -> bool:
        """The file type identifier at offset 0."""
        return head.startswith(_SIGNATURE)

    @classmethod
    def open_source(cls, path: str, options: SourceOptions) -> Source:
        """Open the VHDX and any parents."""
        return open_virtual_disk(path, options, "vhdx", lambda p: open_vhdi(p, "vhdx"))

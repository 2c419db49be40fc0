"""BitLocker as a volume layer: the decrypted volume is the one child.

References:
    - libyal libbde, "BitLocker Drive Encryption (BDE) format".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from selective_imager.models import LayerRef
from selective_imager.volumes.base import Child, LayerResult, VolumeLayer
from selective_imager.volumes.bitlocker.unlock import is_bitlocker, open_bitlocker

if TYPE_CHECKING:
    from selective_imager.streams import ByteStream
    from selective_imager.volumes.base import LayerContext


class BitLockerLayer(VolumeLayer):
    """A BitLocker (or BitLocker To Go) volume, unlocked with the credentials given."""

    name = "bitlocker"
    kind = "encryption"

    @classmethod
    def detect(cls, stream: ByteStream, context: LayerContext) -> bool:
        """The ``-FVE-FS-`` boot sector or the To Go GUID."""
        return is_bitlocker(stream)

    @classmethod
    def open_layer(cls, stream: ByteStream, context: LayerContext) -> LayerResult:
        """Unlock; a volume no credential opens is reported locked, with the reason."""
        volume = context.volume if context.volume.scheme != "none" else None
        bde = open_bitlocker(stream, context.credentials, volume)
        info = bde.info
        if bde.stream is None:
            return LayerResult(
                encryption=info, error=f"BitLocker volume locked: {info.reason}", handles=[bde]
            )
        child = Child(bde.stream, LayerRef("bitlocker", 0, 0, info.volume_guid))
        return LayerResult(children=[child], encryption=info, handles=[bde])

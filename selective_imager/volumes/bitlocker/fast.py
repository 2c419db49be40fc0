"""The decrypted BitLocker volume, decrypted by OpenSSL (through ``cryptography``) in bulk.

libbde decrypts in software, one sector at a time (~100 MiB/s per core). BitLocker
encrypts every sector as its own data unit (XTS tweak or CBC IV derived from the sector
position), so one OpenSSL call per sector would spend its time creating cipher objects.
Here a whole read is decrypted with a handful of large calls:

* AES-ECB runs through OpenSSL's XTS code with a tweak that encrypts to zero (every XTS
  mask ``T * alpha^j`` is then zero, so XTS *is* ECB). OpenSSL's XTS is about ten times
  faster than its ECB through ``cryptography`` (measured here: 14 vs 1.3 GB/s); the
  equivalence is checked on a probe block when a key is set up.
* AES-XTS: every sector's tweak ``T = E_K2(sector number)`` comes from one ECB call, the
  masks ``T * alpha^i`` of its blocks from vectorised GF(2^128) doublings (numpy, on
  little-endian u64 pairs), then ``P = D_K1(C ^ M) ^ M`` with one ECB call.
* AES-CBC (no diffuser): the IVs ``E_K(byte offset)`` from one ECB call, one ECB
  decryption of the buffer, then the XOR with the previous ciphertext block or the IV.
* AES-CBC + Elephant diffuser (Vista's default, offered by Windows 7): the CBC step above,
  then diffusers B and A undone word position by word position with every sector of the
  batch in one numpy vector (their steps depend on each other within a sector), then the
  XOR with each sector's key ``E_T(e) || E_T(e | 0x80 << 120)`` from one ECB call.

The volume is presented exactly as libbde presents it
(``libbde_sector_data_read_file_io_handle``):

* virtual sectors inside one of the three FVE metadata areas read as zeros;
* the volume-header copy reads as zeros, and the first ``volume_header_size`` bytes
  come from the copy, decrypted with the copy's own sector numbers;
* sectors whose physical offset is at or past the encrypted volume size (a conversion
  paused or in progress; the volume-header copy too, by its own offset) are plain;
* Windows Vista (metadata version 1): the first 8 KiB are unencrypted in place, and
  sector 0 gets ``NTFS    `` back at byte 3 and the MFT-mirror cluster from the metadata
  block header at 0x38 (where Vista keeps metadata area 1's cluster); the metadata
  areas are 16 KiB rounded up to whole clusters;
* a sector whose bytes cannot be read (a truncated image) fails the read with
  :class:`~selective_imager.errors.SourceTruncatedError` (an ``OSError`` too, as pybde
  raises), checked before anything is decrypted.

Not supported (:class:`FastBdeStream` raises
:class:`~selective_imager.errors.UnsupportedEncryptionError` and the caller keeps pybde):
volumes with "encrypt on write" (EOW) metadata (used-space-only encryption, and what
Windows leaves on a decrypted volume), whose EOW bitmaps say sector by sector what is
encrypted: not read here.

Work buffers are per thread and nothing else changes after construction: one stream may
be read from several threads (when its raw stream allows that, as
:class:`~selective_imager.streams.FileStream` does).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from selective_imager.errors import SourceTruncatedError, UnsupportedEncryptionError
from selective_imager.streams import ByteStream
from selective_imager.volumes.bitlocker import fve

if TYPE_CHECKING:
    import numpy.typing as npt

    U64Array = npt.NDArray[np.uint64]
    U8Array = npt.NDArray[np.uint8]

SUPPORTED_METHODS = (
    fve.METHOD_NONE,
    fve.METHOD_AES_128_CBC_DIFFUSER,
    fve.METHOD_AES_256_CBC_DIFFUSER,
    fve.METHOD_AES_128_CBC,
    fve.METHOD_AES_256_CBC,
    fve.METHOD_AES_128_XTS,
    fve.METHOD_AES_256_XTS,
)
DEFAULT_CHUNK = 4 << 20  # bytes per batch: 1-4 MiB measured fastest
# Batches at least this big are decrypted in two halves on two cores.
_PARALLEL_MIN = 1 << 20
_CPUS = os.cpu_count() or 1
_U64 = np.dtype("<u8")
# OpenSSL refuses an XTS data unit above 2^20 blocks; stay well below.
_MAX_ECB_CALL = 8 << 20
# Reads up to this size reuse a per-thread output buffer (a fresh one per read costs
# page faults); larger ones get their own.
_REUSED_OUT = 16 << 20
# Windows Vista: bytes at the start of the volume left unencrypted in place.
VISTA_PLAIN_HEADER = 0x2000
_ONE = np.uint64(1)
_S7 = np.uint64(7)
_S2 = np.uint64(2)
_S32 = np.uint64(32)
_S63 = np.uint64(63)
_GF128_POLY = np.uint64(0x87)  # x^128 = x^7 + x^2 + x + 1
_SHIFT_LEFT = np.arange(32, dtype=_U64)
_SHIFT_RIGHT = np.uint64(63) - _SHIFT_LEFT
# Below this many sectors the masks are computed in one broadcast (measured crossover
# 128-512 sectors: 33 vs 108 us at 128, 289 vs 161 us at 512).
_BROADCAST_BELOW = 256
# Up to this many sectors an XTS read uses one OpenSSL context per sector (~5 us each)
# instead of the batch (~30 us to set up).
_PER_SECTOR_MAX = 4


class _Scratch(threading.local):
    """Per-thread work buffers, reused from read to read.

    Allocating fresh multi-MiB arrays for every read cost more than the decryption
    (page faults each time the allocator hands memory back to the kernel: 370 MB/s
    instead of 1.5 GB/s, measured).
    """

    def __init__(self) -> None:
        self.buffers: dict[str, U64Array] = {}

    def u64(self, name: str, count: int) -> U64Array:
        """``count`` u64 words of the buffer called ``name`` (contents undefined)."""
        buf = self.buffers.get(name)
        if buf is None or buf.size < count:
            buf = np.empty(count, _U64)
            self.buffers[name] = buf
        return buf[:count]


class _Ecb:
    """AES-ECB in bulk, through OpenSSL's XTS with a tweak that encrypts to zero."""

    __slots__ = ("_iv", "_key", "_via_xts", "_xts_key")

    def __init__(self, key: bytes) -> None:
        self._key = key
        # Any second key that differs from the first (OpenSSL rejects equal halves).
        companion = bytes(b ^ 0x5A for b in key)
        # The tweak is E_companion(iv); iv = D_companion(0) makes it zero.
        zero_ecb = Cipher(algorithms.AES(companion), modes.ECB()).decryptor()
        self._iv = zero_ecb.update(bytes(16)) + zero_ecb.finalize()
        self._xts_key = key + companion
        self._via_xts = True
        probe = np.frombuffer(bytes(range(64)), np.uint8)
        plain_ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        expected = plain_ecb.update(probe.tobytes()) + plain_ecb.finalize()
        got = np.empty(64, np.uint8)
        self.apply(probe, got, encrypt=True)
        if got.tobytes() != expected:
            # Not expected with any OpenSSL; stay correct, only slower.
            self._via_xts = False

    def apply(
        self, src: npt.NDArray[np.generic], dst: npt.NDArray[np.generic], encrypt: bool
    ) -> None:
        """ECB-en/decrypt the C-contiguous ``src`` into ``dst`` (same size in bytes)."""
        if not (src.flags.c_contiguous and dst.flags.c_contiguous) or src.nbytes != dst.nbytes:
            raise ValueError("ECB buffers must be contiguous and of equal size")
        source = src.reshape(-1).view(np.uint8).data
        target = dst.reshape(-1).view(np.uint8).data
        for i in range(0, len(source), _MAX_ECB_CALL):
            j = min(len(source), i + _MAX_ECB_CALL)
            # A context per call: cheap (~4 us) and nothing is shared between threads.
            if self._via_xts:
                xts = Cipher(algorithms.AES(self._xts_key), modes.XTS(self._iv))
                ctx = xts.encryptor() if encrypt else xts.decryptor()
                ctx.update_into(source[i:j], target[i:j])
            else:
                ecb = Cipher(algorithms.AES(self._key), modes.ECB())
                ctx = ecb.encryptor() if encrypt else ecb.decryptor()
                target[i:j] = ctx.update(source[i:j])


def _xts_masks(tweaks: U64Array, masks: U64Array) -> None:
    """Fill ``masks`` (sectors, blocks, 2) with ``T * alpha^i`` for each sector tweak T.

    A u64 pair (lo, hi) is the 128-bit little-endian tweak. The first 32 masks of a
    few sectors are computed at once as ``T << i`` with the i bits shifted out of the
    top folded back with 0x87 (few numpy calls); of many sectors, by 31 doublings over
    all sectors (less memory traffic). Further groups of 32 (4 KiB sectors) multiply the
    previous group by alpha^32.
    """
    blocks = masks.shape[1]
    first = min(blocks, 32)
    if tweaks.shape[0] < _BROADCAST_BELOW:
        lo, hi = tweaks[:, 0:1], tweaks[:, 1:2]
        left, right = _SHIFT_LEFT[:first], _SHIFT_RIGHT[:first]
        # (x >> 1) >> (63 - i) is x >> (64 - i), also for i = 0 (numpy would not shift 64).
        top = np.right_shift(np.right_shift(hi, _ONE), right)
        np.bitwise_or(
            np.left_shift(hi, left),
            np.right_shift(np.right_shift(lo, _ONE), right),
            out=masks[:, :first, 1],
        )
        fold = top ^ np.left_shift(top, _ONE) ^ np.left_shift(top, _S2) ^ np.left_shift(top, _S7)
        np.bitwise_xor(np.left_shift(lo, left), fold, out=masks[:, :first, 0])
    else:
        # Row 0 holds every sector's lo word, row 1 its hi word: one call shifts both.
        cur = np.empty((2, tweaks.shape[0]), _U64)
        carry = np.empty_like(cur)
        cur[0] = tweaks[:, 0]
        cur[1] = tweaks[:, 1]
        lo, hi = cur[0], cur[1]
        lo_top, hi_top = carry[0], carry[1]
        masks[:, 0, 0] = lo
        masks[:, 0, 1] = hi
        for i in range(1, first):
            np.right_shift(cur, _S63, out=carry)
            np.left_shift(cur, _ONE, out=cur)
            np.bitwise_or(hi, lo_top, out=hi)
            np.multiply(hi_top, _GF128_POLY, out=hi_top)
            np.bitwise_xor(lo, hi_top, out=lo)
            masks[:, i, 0] = lo
            masks[:, i, 1] = hi
    for j in range(32, blocks, 32):
        src_lo, src_hi = masks[:, j - 32 : j, 0], masks[:, j - 32 : j, 1]
        dst_lo, dst_hi = masks[:, j : j + 32, 0], masks[:, j : j + 32, 1]
        # The 32 bits shifted out of the top fold back as clmul(top, 0x87) (< 2^39).
        top = np.right_shift(src_hi, _S32)
        np.left_shift(src_hi, _S32, out=dst_hi)
        np.bitwise_or(dst_hi, np.right_shift(src_lo, _S32), out=dst_hi)
        np.left_shift(src_lo, _S32, out=dst_lo)
        fold = top ^ np.left_shift(top, _ONE) ^ np.left_shift(top, _S2) ^ np.left_shift(top, _S7)
        np.bitwise_xor(dst_lo, fold, out=dst_lo)


def _positions(scratch: _Scratch, first: int, count: int, step: int) -> U64Array:
    """(count, 2) u64: ``first + k * step`` as 128-bit little-endian numbers."""
    out = scratch.u64("positions", 2 * count).reshape(count, 2)
    out[:, 0] = np.arange(first, first + count * step, step, dtype=_U64)
    out[:, 1] = 0
    return out


class _XtsSectors:
    """AES-XTS with one data unit per sector, tweak = sector number (u128 LE)."""

    __slots__ = ("_blocks", "_data", "_sector_size", "_tweak", "_xts_key")

    def __init__(self, data_key: bytes, tweak_key: bytes, sector_size: int) -> None:
        self._data = _Ecb(data_key)
        self._tweak = _Ecb(tweak_key)
        self._sector_size = sector_size
        self._blocks = sector_size // 16
        # OpenSSL refuses XTS keys with equal halves; such a volume takes the batch path.
        self._xts_key = data_key + tweak_key if data_key != tweak_key else b""

    def decrypt_into(
        self, src: U8Array, first_offset: int, dst: U8Array, scratch: _Scratch
    ) -> None:
        """Decrypt whole sectors read at the physical byte ``first_offset`` into ``dst``."""
        ss = self._sector_size
        n = len(src) // ss
        first = first_offset // ss
        if n <= _PER_SECTOR_MAX and self._xts_key:
            # A few sectors: one OpenSSL XTS context each beats the batch set-up.
            source, target = src.data, dst.data
            for k in range(n):
                tweak = (first + k).to_bytes(16, "little")
                ctx = Cipher(algorithms.AES(self._xts_key), modes.XTS(tweak)).decryptor()
                ctx.update_into(source[k * ss : (k + 1) * ss], target[k * ss : (k + 1) * ss])
            return
        shape = (n, self._blocks, 2)
        numbers = _positions(scratch, first, n, 1)
        tweaks = scratch.u64("tweaks", 2 * n).reshape(n, 2)
        self._tweak.apply(numbers, tweaks, encrypt=True)
        masks = scratch.u64("masks", 2 * n * self._blocks).reshape(shape)
        _xts_masks(tweaks, masks)
        work = scratch.u64("work", masks.size).reshape(shape)
        np.bitwise_xor(src.view(_U64).reshape(shape), masks, out=work)
        plain = dst.view(_U64).reshape(shape)
        self._data.apply(work, plain, encrypt=False)
        np.bitwise_xor(plain, masks, out=plain)


class _CbcSectors:
    """AES-CBC per sector, IV = E_K(byte offset as u128 LE), without the diffuser."""

    __slots__ = ("_blocks", "_ecb", "_sector_size")

    def __init__(self, key: bytes, sector_size: int) -> None:
        self._ecb = _Ecb(key)
        self._sector_size = sector_size
        self._blocks = sector_size // 16

    def decrypt_into(
        self, src: U8Array, first_offset: int, dst: U8Array, scratch: _Scratch
    ) -> None:
        """Decrypt whole sectors read at the physical byte ``first_offset`` into ``dst``."""
        ss = self._sector_size
        n = len(src) // ss
        offsets = _positions(scratch, first_offset, n, ss)
        ivs = scratch.u64("ivs", 2 * n).reshape(n, 2)
        self._ecb.apply(offsets, ivs, encrypt=True)
        cipher = src.view(_U64).reshape(n, self._blocks, 2)
        plain = dst.view(_U64).reshape(cipher.shape)
        self._ecb.apply(cipher, plain, encrypt=False)
        np.bitwise_xor(plain[:, 0], ivs, out=plain[:, 0])
        np.bitwise_xor(plain[:, 1:], cipher[:, :-1], out=plain[:, 1:])


# Elephant diffuser (Ferguson 2006): rotation amounts and cycle counts of A and B.
_DIFFUSER_A_ROTATIONS = (9, 0, 13, 0)
_DIFFUSER_B_ROTATIONS = (0, 10, 0, 25)
_DIFFUSER_A_CYCLES = 5
_DIFFUSER_B_CYCLES = 3


def _rotl_into(src: npt.NDArray[np.uint32], bits: int, tmp: npt.NDArray[np.uint32]) -> None:
    """``tmp = src <<< bits`` on 32-bit words (``bits`` > 0)."""
    np.left_shift(src, np.uint32(bits), out=tmp)
    tmp |= np.right_shift(src, np.uint32(32 - bits))


def _diffuser_decrypt(words: npt.NDArray[np.uint32]) -> None:
    """Undo diffusers B then A in place on ``words`` shaped (words per sector, sectors).

    Decryption direction of both diffusers: for i = 0, 1, ... over ``cycles`` times the
    sector's words (indices mod n), A adds ``d[i-2] ^ (d[i-5] <<< Ra[i mod 4])`` to d[i]
    and B adds ``d[i+2] ^ (d[i+5] <<< Rb[i mod 4])``. Each step depends on the one before
    within a sector, so the loop runs over word positions with every sector of the batch
    in one vector (rows are contiguous in this layout).
    """
    n = words.shape[0]
    tmp = np.empty(words.shape[1], np.uint32)
    for i in range(n * _DIFFUSER_B_CYCLES):
        k = i % n
        bits = _DIFFUSER_B_ROTATIONS[i % 4]
        far = words[(k + 5) % n]
        if bits:
            _rotl_into(far, bits, tmp)
            np.bitwise_xor(tmp, words[(k + 2) % n], out=tmp)
        else:
            np.bitwise_xor(far, words[(k + 2) % n], out=tmp)
        words[k] += tmp
    for i in range(n * _DIFFUSER_A_CYCLES):
        k = i % n
        bits = _DIFFUSER_A_ROTATIONS[i % 4]
        far = words[(k - 5) % n]
        if bits:
            _rotl_into(far, bits, tmp)
            np.bitwise_xor(tmp, words[(k - 2) % n], out=tmp)
        else:
            np.bitwise_xor(far, words[(k - 2) % n], out=tmp)
        words[k] += tmp


class _DiffuserCbcSectors:
    """AES-CBC + Elephant diffuser (Vista's default; Windows 7 offers it too).

    Decryption of a sector at byte offset e: AES-CBC with IV ``E_K(e)``, diffuser B, then
    diffuser A, then XOR with the sector key ``E_T(e) || E_T(e with byte 15 = 0x80)``
    (T the tweak key, the second half of the FVEK entry) repeated over the sector.
    """

    __slots__ = ("_cbc", "_sector_size", "_tweak")

    def __init__(self, data_key: bytes, tweak_key: bytes, sector_size: int) -> None:
        self._cbc = _CbcSectors(data_key, sector_size)
        self._tweak = _Ecb(tweak_key)
        self._sector_size = sector_size

    def decrypt_into(
        self, src: U8Array, first_offset: int, dst: U8Array, scratch: _Scratch
    ) -> None:
        """Decrypt whole sectors read at the physical byte ``first_offset`` into ``dst``."""
        ss = self._sector_size
        n = len(src) // ss
        if not n:
            return
        self._cbc.decrypt_into(src, first_offset, dst, scratch)
        # (words, sectors): one contiguous row per word position.
        words = np.ascontiguousarray(dst.view(np.uint32).reshape(n, ss // 4).T)
        _diffuser_decrypt(words)
        offsets = _positions(scratch, first_offset, n, ss)
        keys = np.empty((n, 2, 2), _U64)
        keys[:, 0] = offsets
        keys[:, 1] = offsets
        keys[:, 1, 1] |= np.uint64(0x80 << 56)
        sector_keys = np.empty_like(keys)
        self._tweak.apply(keys, sector_keys, encrypt=True)
        plain = dst.view(np.uint32).reshape(n, ss // 32, 8)
        plain[:] = words.T.reshape(n, ss // 32, 8) ^ sector_keys.view(np.uint32).reshape(n, 1, 8)


class _NoEncryption:
    """Method 0 (a decrypted volume that kept its BitLocker metadata)."""

    __slots__ = ()

    def decrypt_into(
        self, src: U8Array, first_offset: int, dst: U8Array, scratch: _Scratch
    ) -> None:
        """Copy the data as it is."""
        dst[:] = src


def unsupported_reason(metadata: fve.FveMetadata) -> str:
    """Why :class:`FastBdeStream` cannot present this volume, or "" when it can."""
    method = metadata.method
    if method not in SUPPORTED_METHODS:
        name = fve.METHOD_NAMES.get(method, f"0x{method:04x}")
        return f"encryption method {name} is not supported"
    if metadata.version not in (1, 2):
        return f"FVE metadata version {metadata.version} is not supported"
    if metadata.boot.encrypt_on_write:
        # libbde also blanks the EOW information and bitmap blocks; not modelled.
        return "encrypt-on-write (EOW) volumes are not supported"
    ss = metadata.bytes_per_sector
    if ss % 16 or ss < 512:
        return f"sector size {ss} is not supported"
    if metadata.volume_header_size % ss or metadata.volume_header_offset % ss:
        return "the volume header copy is not sector-aligned"
    if metadata.encrypted_volume_size % ss:
        return "the encrypted volume size is not sector-aligned"
    return ""


def sector_engine(
    method: int, key: fve.FullVolumeKey | None, sector_size: int
) -> _XtsSectors | _CbcSectors | _DiffuserCbcSectors | _NoEncryption:
    """The decryptor of one method.

    Raises:
        UnsupportedEncryptionError: the method is not supported here (diffuser), or the
            key is missing or does not fit the method.
    """
    if method not in SUPPORTED_METHODS:
        name = fve.METHOD_NAMES.get(method, f"0x{method:04x}")
        raise UnsupportedEncryptionError(f"{name} is not supported by the OpenSSL path")
    if method == fve.METHOD_NONE:
        return _NoEncryption()
    if key is None:
        raise UnsupportedEncryptionError("no full-volume key")
    if key.method != method:
        raise UnsupportedEncryptionError(
            f"the key is for {key.method_name}, the volume uses "
            f"{fve.METHOD_NAMES.get(method, hex(method))}"
        )
    if method in (fve.METHOD_AES_128_XTS, fve.METHOD_AES_256_XTS):
        return _XtsSectors(key.data_key(), key.tweak_key(), sector_size)
    if method in (fve.METHOD_AES_128_CBC_DIFFUSER, fve.METHOD_AES_256_CBC_DIFFUSER):
        return _DiffuserCbcSectors(key.data_key(), key.tweak_key(), sector_size)
    return _CbcSectors(key.data_key(), sector_size)


def _first_uncovered(start: int, end: int, covered: list[tuple[int, int]]) -> int | None:
    """The first offset in [start, end) outside every ``covered`` range, or None."""
    pos = start
    for lo, hi in sorted(covered):
        if lo > pos:
            break
        pos = max(pos, hi)
        if pos >= end:
            return None
    return pos if pos < end else None


class FastBdeStream(ByteStream):
    """The decrypted BitLocker volume, byte-identical to pybde's, decrypted by OpenSSL.

    Args:
        raw: the encrypted volume (the same stream pybde was given).
        metadata: its FVE metadata (:func:`selective_imager.volumes.bitlocker.fve.read_metadata`).
        key: the full-volume key (None for a volume with method 0).
        size: the decrypted volume size; take pybde's ``get_size()``.
        chunk_size: bytes decrypted per batch.

    Raises:
        UnsupportedEncryptionError: the method or the metadata layout is not supported.
    """

    def __init__(
        self,
        raw: ByteStream,
        metadata: fve.FveMetadata,
        key: fve.FullVolumeKey | None,
        size: int,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__(size)
        problem = unsupported_reason(metadata)
        if problem:
            raise UnsupportedEncryptionError(problem)
        ss = metadata.bytes_per_sector
        self._engine = sector_engine(metadata.method, key, ss)
        self.method = metadata.method
        self._raw = raw
        self._sector_size = ss
        self._chunk = max(ss, chunk_size - chunk_size % ss)

        def sectors(start: int, length: int) -> tuple[int, int]:
            # libbde tests each sector's start offset against the range.
            return start + (-start) % ss, start + length + (-(start + length)) % ss

        self._header_size = metadata.volume_header_size
        self._header_offset = metadata.volume_header_offset
        zeros = [sectors(o, metadata.metadata_area_size) for o in metadata.metadata_offsets]
        zeros.append(sectors(self._header_offset, self._header_size))
        self._zeros = sorted(z for z in zeros if z[1] > z[0])
        # Past this physical offset the volume is not (yet) encrypted; 0: all of it is.
        self._plain_from = metadata.encrypted_volume_size
        if self._plain_from >= size + (-size) % ss:
            self._plain_from = 0
        # Vista: the first 8 KiB stay unencrypted in place; sector 0 is patched back to NTFS.
        self._vista_mft_mirror = (
            metadata.mft_mirror_cluster.to_bytes(8, "little") if metadata.version == 1 else b""
        )
        self._scratch = _Scratch()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop the decryption thread (the raw stream belongs to the caller)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        super().close()

    def __repr__(self) -> str:
        name = fve.METHOD_NAMES.get(self.method, hex(self.method))
        return f"FastBdeStream({name}, size={self.size})"

    def _read_at(self, offset: int, size: int) -> bytes:
        ss = self._sector_size
        start = offset - offset % ss
        end = offset + size
        end += (-end) % ss
        total = end - start
        if total <= _REUSED_OUT:
            out = self._scratch.u64("out", total // 8).view(np.uint8)
        else:
            out = np.empty(total, np.uint8)
        pos = start
        while pos < end:
            stop = min(end, pos + self._chunk)
            self._fill(out[pos - start : stop - start], pos, stop)
            pos = stop
        return out[offset - start : offset - start + size].tobytes()

    def _decrypt_physical(self, data: U8Array, physical: int, dst: U8Array) -> None:
        """Decrypt sectors read at ``physical`` into ``dst``; unencrypted ones are copied."""
        n = len(data)
        # Bytes before the unencrypted tail (libbde: offset >= encrypted volume size).
        split = min(max(self._plain_from - physical, 0), n) if self._plain_from else n
        if split >= _PARALLEL_MIN and _CPUS > 1:
            # numpy and OpenSSL release the GIL: the second half goes to another core.
            # Only decryption runs there; the source is read by the caller's thread.
            half = split // 2 - (split // 2) % self._sector_size
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="bde")
            other = self._pool.submit(
                self._engine.decrypt_into,
                data[half:split],
                physical + half,
                dst[half:split],
                self._scratch,
            )
            try:
                self._engine.decrypt_into(data[:half], physical, dst[:half], self._scratch)
            finally:
                other.result()
        elif split:
            self._engine.decrypt_into(data[:split], physical, dst[:split], self._scratch)
        if split < n:
            dst[split:] = data[split:]

    def _read_raw(self, offset: int, length: int) -> tuple[U8Array, int]:
        """``length`` raw bytes at ``offset`` (zero-padded) and how many were read."""
        raw = self._raw.read_at(offset, length)
        if len(raw) == length:
            return np.frombuffer(raw, np.uint8), length
        data = np.zeros(length, np.uint8)
        data[: len(raw)] = np.frombuffer(raw, np.uint8)
        return data, len(raw)

    def _fill(self, out: U8Array, start: int, end: int) -> None:
        """Decrypt the virtual sectors [start, end) into ``out``.

        Raises:
            SourceTruncatedError: a sector whose bytes are needed lies past the end of
                the source (checked before anything is decrypted).
        """
        ss = self._sector_size
        data, got = self._read_raw(start, end - start)
        exempt = list(self._zeros)  # sectors whose ciphertext is never needed
        hs = self._header_size
        if start < hs:
            exempt.append((0, hs))
        got -= got % ss
        missing = _first_uncovered(start + got, end, exempt)
        if missing is not None:
            raise SourceTruncatedError(
                f"BitLocker: cannot read encrypted sector at offset {missing}: the source "
                f"ends at 0x{start + got:x}",
                missing,
                end - missing,
            )
        self._decrypt_physical(data, start, out)

        # Windows 7+: the first sectors live, encrypted, in the volume-header copy.
        if start < hs:
            hi = min(end, hs)
            phys = start + self._header_offset
            head, head_got = self._read_raw(phys, hi - start)
            head_got -= head_got % ss
            missing = _first_uncovered(start + head_got, hi, self._zeros)
            if missing is not None:
                raise SourceTruncatedError(
                    f"BitLocker: cannot read the volume header copy for offset {missing}: "
                    f"the source ends before 0x{phys + head_got:x}",
                    missing,
                    hi - missing,
                )
            self._decrypt_physical(head, phys, out[: hi - start])

        if self._vista_mft_mirror and start < VISTA_PLAIN_HEADER:
            # Vista leaves the NTFS boot area unencrypted (the sectors were read and
            # checked above); its boot sector carries the FVE signature and, in the MFT
            # mirror field, the first metadata cluster: both are put back.
            hi = min(end, VISTA_PLAIN_HEADER)
            out[: hi - start] = data[: hi - start]
            if start == 0:
                out[3:11] = np.frombuffer(b"NTFS    ", np.uint8)
                out[56:64] = np.frombuffer(self._vista_mft_mirror, np.uint8)

        for lo, hi in self._zeros:
            a, b = max(lo, start), min(hi, end)
            if a < b:
                out[a - start : b - start] = 0

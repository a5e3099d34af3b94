"""Content hashes (which bytes a file holds) and perceptual hashes (what it looks like).

The content hash is the SHA-256 of the file's bytes, in hex: the same value ``sha256sum``
prints, so a user can check a row by hand. It keys the analysis: a file that moves keeps it,
and two copies of one photo share it. The perceptual hash is the 64-bit DCT hash of
``imagehash.phash`` (32x32 grey, top-left 8x8 DCT coefficients above their median), stored
as a signed 64-bit integer so SQLite holds it natively; near-duplicates are hashes a few
bits apart (Hamming distance).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["file_sha256", "hamming", "hamming_to_many", "phash", "popcount64"]

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file's bytes, as 64 hex digits.

    Raises:
        OSError: The file cannot be read.
    """
    with open(path, "rb") as fh:
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def phash(rgb: NDArray[np.uint8]) -> int:
    """The 64-bit perceptual hash of an RGB image, as a signed int64 value.

    Example:
        >>> img = np.zeros((64, 64, 3), np.uint8); img[:, 32:] = 255
        >>> phash(img) == phash(img.copy())
        True
    """
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(rgb)).hash.flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (signed or unsigned)."""
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def hamming_to_many(hashes: NDArray[np.int64], target: int) -> NDArray[np.int64]:
    """Hamming distance from ``target`` to each of ``hashes`` (vectorised)."""
    x = np.ascontiguousarray(hashes, np.int64).view(np.uint64) ^ np.uint64(
        target & 0xFFFFFFFFFFFFFFFF)
    return popcount64(x)


def popcount64(x: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Set bits of each 64-bit word, any shape."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        out: NDArray[np.int64] = np.bitwise_count(x).astype(np.int64)
        return out
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8), axis=-1)
    counted: NDArray[np.int64] = bits.sum(axis=-1, dtype=np.int64)
    return counted

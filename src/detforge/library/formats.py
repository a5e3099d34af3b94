"""Which files the library indexes, by suffix, and how each kind is decoded.

======== ======================================================== =========================
kind     suffixes                                                 decoder
======== ======================================================== =========================
image    .jpg .jpeg .jpe .png .webp .tif .tiff .bmp               OpenCV (Pillow for EXIF)
heif     .heic .heif .hif .avif                                   Pillow + pillow-heif
raw      .dng .cr2 .cr3 .nef .nrw .arw .srf .sr2 .orf .rw2 .raf   rawpy (LibRaw)
         .pef .srw .x3f .3fr .erf .kdc .mrw .iiq .rwl
video    .mp4 .mov .m4v .avi .mkv .webm .mpg .mpeg .wmv .3gp .mts OpenCV
         .m2ts .ts
======== ======================================================== =========================

Any other file is recorded as ``other`` with the reason, never decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["HEIF_SUFFIXES", "IMAGE_SUFFIXES", "RAW_SUFFIXES", "VIDEO_SUFFIXES", "Kind",
           "kind_of", "media_kind"]

Kind = Literal["image", "heif", "raw", "video", "other"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp"})
HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif", ".avif"})
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2",
                          ".orf", ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".erf",
                          ".kdc", ".mrw", ".iiq", ".rwl"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                            ".wmv", ".3gp", ".mts", ".m2ts", ".ts"})

_KINDS: dict[str, Kind] = {
    **dict.fromkeys(IMAGE_SUFFIXES, "image"),
    **dict.fromkeys(HEIF_SUFFIXES, "heif"),
    **dict.fromkeys(RAW_SUFFIXES, "raw"),
    **dict.fromkeys(VIDEO_SUFFIXES, "video"),
}


def kind_of(path: str | Path) -> Kind:
    """The decoder family of ``path`` from its suffix (``"other"`` when unsupported).

    Example:
        >>> kind_of("IMG_0001.HEIC"), kind_of("notes.txt")
        ('heif', 'other')
    """
    return _KINDS.get(Path(path).suffix.lower(), "other")


def media_kind(kind: Kind) -> Literal["image", "video", "other"]:
    """What a user searches for: ``image`` (every still format), ``video`` or ``other``."""
    if kind == "video":
        return "video"
    return "other" if kind == "other" else "image"

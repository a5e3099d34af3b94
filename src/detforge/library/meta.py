"""EXIF metadata of still images, read with Pillow's EXIF parser.

JPEG, PNG (``eXIf``), WebP, TIFF and HEIC (through pillow-heif) go through ``Image.open``;
TIFF-based RAW files (DNG, NEF, CR2, ARW, PEF, ...) are parsed as a TIFF directory by
``PIL.Image.Exif`` without decoding pixels. Fields, with their EXIF tags:

================ =====================================================================
field            source
================ =====================================================================
taken_at         DateTimeOriginal (0x9003), else DateTimeDigitized (0x9004), else
                 DateTime (0x0132); ISO 8601 local time ``YYYY-MM-DDTHH:MM:SS``
tz               OffsetTimeOriginal (0x9011), e.g. ``+02:00``, when present
camera_make      Make (0x010F)
camera_model     Model (0x0110)
lens             LensModel (0xA434), else LensMake (0xA433)
orientation      Orientation (0x0112), 1..8
gps_lat/lon/alt  GPS IFD (0x8825): degrees, minutes, seconds with N/S, E/W; metres
iso              ISOSpeedRatings (0x8827)
exposure_time    ExposureTime (0x829A), seconds
f_number         FNumber (0x829D)
focal_length     FocalLength (0x920A), millimetres
================ =====================================================================

A file without EXIF, or with a damaged block, gets empty fields: never an error.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from typing import Any

from detforge.library.formats import Kind

__all__ = ["PhotoMeta", "read_meta"]

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_TZ = re.compile(r"^[+-]\d{2}:\d{2}$")


@dataclass(frozen=True, slots=True)
class PhotoMeta:
    """EXIF fields of one photo (None when absent); see the module table."""

    taken_at: str | None = None
    tz: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    orientation: int = 1
    gps_lat: float | None = None
    gps_lon: float | None = None
    gps_alt: float | None = None
    iso: int | None = None
    exposure_time: float | None = None
    f_number: float | None = None
    focal_length: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


def read_meta(data: bytes, kind: Kind) -> PhotoMeta:
    """The EXIF fields of an encoded image.

    Args:
        data: The file's bytes.
        kind: ``image``, ``heif`` or ``raw``.

    Returns:
        The :class:`PhotoMeta` (all empty when there is no readable EXIF).

    Example:
        >>> read_meta(b"not an image", "image").taken_at is None
        True
    """
    exif = _load_exif(data, kind)
    if exif is None:
        return PhotoMeta()
    try:
        return _fields(exif)
    except Exception:  # a damaged EXIF block: keep the file, drop its EXIF
        return PhotoMeta()


def _load_exif(data: bytes, kind: Kind) -> Any:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "raw":
                if data[:4] not in (b"II*\x00", b"MM\x00*"):
                    return None
                exif = Image.Exif()
                exif.load(data)
                return exif
            if kind == "heif":
                from detforge.library.decode import register_heif

                register_heif()
            with Image.open(io.BytesIO(data)) as im:
                return im.getexif()
    except Exception:  # unreadable headers are reported by the decoder, not here
        return None


def _fields(exif: Any) -> PhotoMeta:
    sub = _ifd(exif, _EXIF_IFD)
    gps = _ifd(exif, _GPS_IFD)
    taken = _date(sub.get(0x9003)) or _date(sub.get(0x9004)) or _date(exif.get(0x0132))
    tz = _text(sub.get(0x9011))
    lat = _coord(gps.get(2), gps.get(1), "S")
    lon = _coord(gps.get(4), gps.get(3), "W")
    alt = _number(gps.get(6))
    if alt is not None and gps.get(5) in (1, b"\x01"):
        alt = -alt
    orientation = exif.get(0x0112)
    return PhotoMeta(
        taken_at=taken, tz=tz if tz and _TZ.match(tz) else None,
        camera_make=_text(exif.get(0x010F)), camera_model=_text(exif.get(0x0110)),
        lens=_text(sub.get(0xA434)) or _text(sub.get(0xA433)),
        orientation=int(orientation) if isinstance(orientation, int) and 1 <= orientation <= 8
        else 1,
        gps_lat=lat, gps_lon=lon, gps_alt=alt,
        iso=_int(sub.get(0x8827)), exposure_time=_number(sub.get(0x829A)),
        f_number=_number(sub.get(0x829D)), focal_length=_number(sub.get(0x920A)))


def _ifd(exif: Any, tag: int) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(tag))
    except Exception:
        return {}


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _date(value: Any) -> str | None:
    text = _text(value)
    m = _DATE.match(text) if text else None
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61 and y > 1800):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"


def _number(value: Any) -> float | None:
    if isinstance(value, tuple | list):
        value = value[0] if len(value) == 1 else None
    try:
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return out if out == out and abs(out) != float("inf") else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _coord(value: Any, ref: Any, negative: str) -> float | None:
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    parts = [_number(v) for v in value]
    if any(p is None for p in parts):
        return None
    deg, minutes, seconds = (float(p) for p in parts if p is not None)
    out = deg + minutes / 60 + seconds / 3600
    return -out if _text(ref) == negative else out

"""Reduced-scale JPEG decoding (``--fast-decode``): scale choice, EXIF, pixels and box mapping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from detforge.runtime.preprocess import letterbox
from detforge.runtime.reduced_decode import decode_reduced, jpeg_size, reduction_for
from detforge.runtime.sources import UnreadableError, decode_image
from detforge.testing import write_image


def _smooth(height: int, width: int) -> np.ndarray:
    """A smooth RGB gradient with a few soft blobs: JPEG-friendly, unlike noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    for cy, cx, r in ((0.3, 0.3, 0.1), (0.6, 0.7, 0.15)):
        d = np.hypot(y - cy * height, x - cx * width) / (r * max(height, width))
        img[..., 0] += 120 * np.exp(-d * d)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("orig", "size", "factor"), [
    ((480, 640), (320, 320), 2),
    ((480, 640), (640, 640), 1),
    ((480, 640), (160, 160), 4),
    ((3000, 4000), (640, 640), 4),
    ((3000, 4000), (384, 640), 4),
    ((6000, 8000), (640, 640), 8),
    ((479, 639), (320, 320), 1),  # the letterbox shrinks by less than 2
    ((100, 100), (640, 640), 1),  # the letterbox enlarges
])
def test_reduction_never_goes_below_what_the_letterbox_keeps(
        orig: tuple[int, int], size: tuple[int, int], factor: int) -> None:
    assert reduction_for(orig, size) == factor


def test_jpeg_size_reads_the_header_with_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    Image.fromarray(_smooth(480, 640)).save(path, exif=exif)
    assert jpeg_size(path.read_bytes()) == (640, 480)
    image, full = decode_reduced(path, (320, 320))
    assert full == (640, 480)
    assert image.shape == (320, 240, 3)
    assert decode_image(path).shape == (640, 480, 3)  # same orientation as a full decode


def test_not_a_jpeg_is_decoded_in_full(tmp_path: Path) -> None:
    png = write_image(tmp_path / "a.png", _smooth(480, 640))
    assert jpeg_size(png.read_bytes()) is None
    image, full = decode_reduced(png, (320, 320))
    assert image.shape == (480, 640, 3) and full == (480, 640)
    assert jpeg_size(b"\xff\xd8 not really") is None


def test_unreadable_files_raise_the_pipelines_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(UnreadableError):
        decode_reduced(bad, (320, 320))
    with pytest.raises(UnreadableError, match="image file not found"):
        decode_reduced(tmp_path / "missing.jpg", (320, 320))


def test_reduced_pixels_are_close_to_full_decode_then_resize(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), _smooth(480, 640)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    reduced, _ = decode_reduced(path, (320, 320))
    full, _ = letterbox(decode_image(path), (320, 320))
    boxed, _ = letterbox(reduced, (320, 320))
    diff = np.abs(boxed.astype(np.int16) - full.astype(np.int16))
    assert reduced.shape == (240, 320, 3)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4

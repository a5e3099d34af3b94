"""Decoding every format, EXIF fields, quality formulas and perceptual hashes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from detforge.core.errors import MissingExtraError
from detforge.library.decode import UndecodableError, decode_still
from detforge.library.formats import kind_of
from detforge.library.hashing import file_sha256, hamming, phash
from detforge.library.meta import read_meta
from detforge.library.quality import analysis_image, exposure_label, measure
from detforge.library.synth import save_image, write_dng
from detforge.testing import random_image


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"),
                                        ("TIFF", ".tiff"), ("HEIF", ".heic")],
                         ids=["jpeg", "png", "webp", "tiff", "heic"])
def test_every_format_decodes_upright_with_its_exif(tmp_path: Path, fmt: str, suffix: str) -> None:
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif")
    rgb = random_image(60, 80, seed=3)
    path = save_image(tmp_path / f"x{suffix}", rgb, fmt, quality=95, make="Apple",
                      model="iPhone 15 Pro", date="2024:05:06 07:08:09", gps=(52.52, -13.41),
                      lens="back camera", orientation=6 if fmt != "HEIF" else 1)
    data = path.read_bytes()
    kind = kind_of(path)
    meta = read_meta(data, kind)
    assert (meta.camera_make, meta.camera_model, meta.lens) == ("Apple", "iPhone 15 Pro",
                                                                "back camera")
    assert meta.taken_at == "2024-05-06T07:08:09"
    assert meta.gps_lat == pytest.approx(52.52, abs=1e-4)
    assert meta.gps_lon == pytest.approx(-13.41, abs=1e-4)
    decoded = decode_still(data, kind)
    if fmt == "HEIF":
        assert (decoded.width, decoded.height) == (80, 60)
        assert decoded.rgb.shape == (60, 80, 3)
    else:  # orientation 6: stored 80x60, shown 60x80
        assert (decoded.width, decoded.height) == (60, 80)
        assert decoded.rgb.shape == (80, 60, 3)
    if fmt in ("PNG", "TIFF"):  # lossless: the pixels come back rotated 90 degrees clockwise
        np.testing.assert_array_equal(decoded.rgb, np.rot90(rgb, k=-1))


def test_dng_decodes_through_libraw_and_keeps_its_tiff_tags(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    data = write_dng(tmp_path / "r.dng", height=64, width=96, make="Leica",
                     model="M11", date="2023:09:10 11:12:13").read_bytes()
    decoded = decode_still(data, "raw")
    assert (decoded.width, decoded.height) == (96, 64)
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape[2] == 3
    assert decoded.rgb.mean() > 10  # a real demosaic, not a black frame
    meta = read_meta(data, "raw")
    assert (meta.camera_make, meta.camera_model, meta.taken_at) == (
        "Leica", "M11", "2023-09-10T11:12:13")


@pytest.mark.parametrize("data,kind", [(b"", "image"), (b"garbage", "image"),
                                       (b"\xff\xd8\xff\xe0 truncated", "image"),
                                       (b"II*\x00garbage", "raw"), (b"garbage", "heif")],
                         ids=["empty", "garbage", "truncated-jpeg", "bad-raw", "bad-heif"])
def test_corrupt_files_raise_undecodable_with_a_reason(data: bytes, kind: str) -> None:
    pytest.importorskip("rawpy")
    pytest.importorskip("pillow_heif")
    with pytest.raises(UndecodableError, match=r"\S"):
        decode_still(data, kind)  # type: ignore[arg-type]


def test_pixel_cap_refuses_a_decompression_bomb_before_decoding(tmp_path: Path) -> None:
    data = save_image(tmp_path / "big.png", np.zeros((300, 400, 3), np.uint8), "PNG").read_bytes()
    with pytest.raises(UndecodableError, match="pixel cap"):
        decode_still(data, "image", max_pixels=100_000)
    assert decode_still(data, "image", max_pixels=120_000).width == 400


def test_jpeg_decodes_at_a_reduced_scale_but_reports_the_full_size(tmp_path: Path) -> None:
    data = save_image(tmp_path / "big.jpg", random_image(1200, 1600, seed=1), "JPEG").read_bytes()
    decoded = decode_still(data, "image", min_side=300)
    assert (decoded.width, decoded.height) == (1600, 1200)
    assert decoded.rgb.shape == (300, 400, 3)  # 1/4 scale still covers 300


def test_missing_decoder_package_is_a_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rawpy", None)
    with pytest.raises(MissingExtraError, match=r"detforge\[library\]"):
        decode_still(b"II*\x00....", "raw")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(MissingExtraError, match="pillow-heif"):
        decode_still(b"....ftypheic", "heif")


def test_no_exif_gives_empty_fields_not_an_error(tmp_path: Path) -> None:
    data = save_image(tmp_path / "plain.png", random_image(20, 20), "PNG").read_bytes()
    meta = read_meta(data, "image")
    assert meta.taken_at is None and meta.camera_model is None and meta.orientation == 1


def test_quality_formulas() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((256, 256, 3), 128, np.uint8)
    noisy = np.clip(flat + rng.normal(0, 10, (256, 256, 1)), 0, 255).astype(np.uint8)
    noisy = np.repeat(noisy[..., :1], 3, axis=2)
    q = measure(noisy)
    assert q.noise == pytest.approx(10.0, rel=0.1)  # Immerkaer recovers sigma on flat images
    sharp = random_image(256, 256, seed=2)
    import cv2

    soft = cv2.GaussianBlur(sharp, (0, 0), 3)
    assert measure(sharp).sharpness > 5 * measure(soft).sharpness
    assert measure(flat).sharpness == 0.0
    dark = measure(np.full((64, 64, 3), 2, np.uint8))
    assert dark.exposure == "under" and dark.dark_clip == 1.0
    assert measure(np.full((64, 64, 3), 254, np.uint8)).exposure == "over"
    assert exposure_label(0.5, 0.0, 0.0) == "ok"


def test_analysis_image_caps_the_long_side() -> None:
    img = analysis_image(np.zeros((1000, 2000, 3), np.uint8))
    assert img.shape == (256, 512, 3)
    small = np.zeros((100, 50, 3), np.uint8)
    assert analysis_image(small) is small


def test_phash_near_for_a_resized_copy_far_for_another_picture() -> None:
    import cv2

    a = random_image(240, 320, seed=1)
    b = cv2.resize(a, (160, 120), interpolation=cv2.INTER_AREA)
    c = random_image(240, 320, seed=9)
    assert hamming(phash(a), phash(b)) <= 4
    assert hamming(phash(a), phash(c)) > 12


def test_file_hash_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()

"""The image-opening path: special files refused unread, unknown formats refused, the pixel
cap checked on the header before any decoder allocates, every failure an ImageError."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from tests.hostile_inputs import dev_zero_link, fifo, hdr, jpeg_declaring, pam, pfm, png_header

from detforge.core.errors import ConfigError, DatasetError
from detforge.core.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode_image,
    open_image,
    read_file,
    read_header,
    read_image,
    read_image_bgr,
    resolve_max_pixels,
)
from detforge.data.images import image_size
from detforge.runtime.reduced_decode import decode_reduced
from detforge.testing import random_image

WAIT_S = 60.0  # an upper bound for a read that must not block; never a lower bound


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".tif", ".webp", ".ppm"])
def test_supported_formats_decode_like_their_decoders(tmp_path: Path, ext: str) -> None:
    rgb = random_image(30, 50, seed=1)
    path = tmp_path / f"a{ext}"
    assert cv2.imwrite(str(path), rgb[..., ::-1].copy())
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(read_image_bgr(path), expected)
    np.testing.assert_array_equal(read_image(path), expected[..., ::-1])
    with open_image(path) as im, Image.open(path) as ref:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")),
                                      np.asarray(ref.convert("RGB")))
    header = read_header(path)
    assert (header.width, header.height) == (50, 30) and image_size(path) == (50, 30)


def _read_in_thread(fn: Callable[[], Any], unblock: Path | None = None) -> BaseException:
    """Run ``fn`` (which must raise) in a thread; fail if it is still reading after WAIT_S."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT_S)
    if thread.is_alive():
        if unblock is not None:  # let the blocked open() return so the thread can end
            with contextlib.suppress(OSError):
                os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still reading after {WAIT_S:.0f} s")
    assert box, "no error raised"
    return box[0]


@pytest.mark.parametrize("special", ["fifo", "dev-zero-link", "dev-zero", "directory"])
@pytest.mark.parametrize("reader", ["read_image", "open_image", "read_header", "image_size",
                                    "decode_reduced"])
def test_special_files_are_refused_without_reading(tmp_path: Path, special: str,
                                                   reader: str) -> None:
    path = {"fifo": lambda: fifo(tmp_path / "pipe.jpg"),
            "dev-zero-link": lambda: dev_zero_link(tmp_path / "zero.jpg"),
            "dev-zero": lambda: Path("/dev/zero"),
            "directory": lambda: tmp_path}[special]()

    def opened() -> None:
        with open_image(path):
            pass

    call = {"read_image": lambda: read_image(path), "open_image": opened,
            "read_header": lambda: read_header(path), "image_size": lambda: image_size(path),
            "decode_reduced": lambda: decode_reduced(path, (64, 64))}[reader]
    exc = _read_in_thread(call, unblock=path if special == "fifo" else None)
    assert isinstance(exc, ImageError) and exc.kind == "not_a_file", exc
    assert str(path) in str(exc) and "not a regular file" in str(exc)


BIG_PNG = png_header(50000, 50000)
BIG_JPEG = jpeg_declaring(32000, 32000)


@pytest.mark.parametrize("data", [BIG_PNG, BIG_JPEG, b"P6\n40000 40000\n255\n" + b"\0" * 9],
                         ids=["png-50000", "jpeg-32000", "ppm-40000"])
def test_the_pixel_cap_is_checked_before_any_decoder(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bomb.img"
    path.write_bytes(data)
    attempts: list[Callable[[], Any]] = [
        lambda: read_image(path), lambda: decode_image(data, name="up"),
        lambda: decode_reduced(path, (320, 320)), lambda: decode_image(data, reduce=8)]
    for attempt in attempts:
        with pytest.raises(ImageError, match=r"declares \d+x\d+ = [\d,]+ pixels, over the "
                                             r"64,000,000-pixel cap") as info:
            attempt()
        assert info.value.kind == "too_large"
    with pytest.raises(ImageError, match="over the 64,000,000-pixel cap"), open_image(path):
        pass
    header = read_header(path)  # the size alone is harmless: no cap, no Pillow bomb error
    assert header.pixels > DEFAULT_MAX_PIXELS


def test_a_raised_cap_decodes_and_a_lowered_one_refuses(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), random_image(40, 50, seed=2))
    assert read_image(path, max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ImageError, match="50x40 = 2,000 pixels, over the 1,999-pixel cap"):
        read_image(path, max_pixels=1999)
    monkeypatch.setenv("DETFORGE_MAX_PIXELS", "1999")
    assert resolve_max_pixels() == 1999
    with pytest.raises(ImageError, match="too_large|over the 1,999-pixel cap"):
        read_image(path)
    monkeypatch.setenv("DETFORGE_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="DETFORGE_MAX_PIXELS"):
        read_image(path)
    with pytest.raises(ConfigError, match="OpenCV"):
        resolve_max_pixels(2**30 + 1)


@pytest.mark.parametrize(("data", "label"), [
    (pfm(40000, 40000), "PFM"), (pam(40000, 40000), "PAM"), (hdr(40000, 40000), "Radiance HDR"),
    (b"GIF89a\x10\x00\x10\x00", "GIF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
], ids=["pfm", "pam", "hdr", "gif", "jp2"])
def test_formats_whose_header_is_not_checked_are_refused(data: bytes, label: str) -> None:
    with pytest.raises(ImageError, match=f"{label} images are not supported") as info:
        decode_image(data, name="up.bin")
    assert info.value.kind == "unsupported" and "convert it to" in str(info.value)


@pytest.mark.parametrize(("data", "kind"), [
    (b"", "empty"), (b"hello world", "corrupt"), (b"\xff\xd8\xff\xe0\x00", "corrupt"),
    (BIG_PNG[:20], "corrupt"), (png_header(64, 64)[:-30], "corrupt"),
], ids=["empty", "text", "jpeg-stub", "png-cut-header", "png-cut-data"])
def test_broken_files_are_image_errors(tmp_path: Path, data: bytes, kind: str) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert info.value.kind == kind and str(path) in str(info.value)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, OSError)


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="image file not found") as info:
        read_file(tmp_path / "nope.jpg")
    assert info.value.kind == "missing"
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * 5000)
    with pytest.raises(ImageError, match="4.9 KiB, over the 4.0 KiB limit") as info:
        read_file(big, max_bytes=4096)
    assert info.value.kind == "too_large"
    os.chmod(big, 0)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(ImageError, match="cannot read the file") as info:
            read_file(big)
        assert info.value.kind == "unreadable"

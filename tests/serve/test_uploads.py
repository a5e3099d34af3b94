"""The multipart reader and image decoding, on hand-built bodies."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from detforge.serve.config import ServeConfig
from detforge.serve.uploads import UploadError, decode_image_bytes, parse_multipart
from detforge.testing import random_image

from .conftest import encode

CT = "multipart/form-data; boundary=XyZ"


def _part(disposition: str, data: bytes) -> bytes:
    return (b"--XyZ\r\nContent-Disposition: " + disposition.encode() +
            b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")


@pytest.mark.parametrize(("disposition", "filename"), [
    ('form-data; name="images"; filename="a.jpg"', "a.jpg"),
    ('form-data; name="images"; filename="x; y \\"q\\".png"', 'x; y "q".png'),
    ("form-data; name=\"images\"; filename*=UTF-8''%C3%A9t%C3%A9.jpg", "été.jpg"),
    ('form-data; name="images"', "image0"),
], ids=["plain", "quoted", "rfc2231", "no-filename"])
def test_filenames(disposition: str, filename: str) -> None:
    body = _part(disposition, b"DATA") + b"--XyZ--\r\n"
    (up,) = parse_multipart(body, CT, max_file_bytes=100, max_files=2)
    assert (up.filename, up.data) == (filename, b"DATA")


def test_binary_payload_with_crlf_and_dashes_survives() -> None:
    tricky = b"\r\n--XyZnot\r\n--Xy\r\n\r\n" + bytes(range(256))
    body = (b"preamble\r\n" + _part('form-data; name="images"; filename="1"', tricky) +
            _part('form-data; name="images"; filename="2"', b"") + b"--XyZ--\r\nepilogue")
    ups = parse_multipart(body, CT, max_file_bytes=10_000, max_files=2)
    assert [(u.filename, u.data) for u in ups] == [("1", tricky), ("2", b"")]


@pytest.mark.parametrize(("body", "content_type", "status", "match"), [
    (b"", "multipart/form-data", 400, "without a boundary"),
    (b"nothing here", CT, 400, "no part with the boundary"),
    (b"--XyZ--\r\n", CT, 400, "no files"),
    (b"--XyZ\r\nContent-Disposition: form-data", CT, 400, "headers never end"),
    (b"--XyZjunk", CT, 400, "not followed by CRLF"),
    (_part('form-data; name="images"', b"x" * 11) + b"--XyZ--", CT, 413, "over the"),
    (_part('form-data; name="images"', b"x") * 3 + b"--XyZ--", CT, 413, "more than 2"),
], ids=["no-boundary", "no-part", "empty", "open-headers", "no-crlf", "file-size", "count"])
def test_malformed_bodies(body: bytes, content_type: str, status: int, match: str) -> None:
    with pytest.raises(UploadError, match=match) as info:
        parse_multipart(body, content_type, max_file_bytes=10, max_files=2)
    assert info.value.status == status


@pytest.mark.parametrize(("ext", "exact"), [(".png", True), (".jpg", False), (".bmp", True)],
                         ids=["png", "jpeg", "bmp"])
def test_decode_round_trips_rgb(ext: str, exact: bool) -> None:
    img = random_image(30, 50, seed=3)
    out = decode_image_bytes(encode(img, ext), f"a{ext}", max_pixels=10_000)
    assert out.shape == img.shape and out.dtype == np.uint8
    if exact:
        np.testing.assert_array_equal(out, img)
    else:
        assert np.abs(out.astype(int) - img).mean() < 12


@pytest.mark.parametrize(("options", "expectation"), [
    ({"max_batch": 4}, contextlib.nullcontext()),
    ({"max_batch": 0}, pytest.raises(Exception, match="--max-batch")),
    ({"conf": 1.5}, pytest.raises(Exception, match="--conf")),
    ({"max_images": 65}, pytest.raises(Exception, match="raise --max-queue")),
    ({"bogus": 1}, pytest.raises(Exception, match="--bogus")),
], ids=["ok", "max-batch", "conf", "images-over-queue", "unknown"])
def test_config_from_options(options: dict[str, Any], expectation: Any) -> None:
    with expectation:
        config = ServeConfig.from_options(model="m.onnx", threads=None, **options)
        assert config.threads is None and config.max_body_bytes > config.max_image_bytes

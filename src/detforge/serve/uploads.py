"""Request bodies: a small ``multipart/form-data`` reader and image decoding with limits.

The reader is stdlib-only (RFC 7578 over an in-memory body whose size the app has already
capped), so the ``serve`` extra does not need ``python-multipart``. Every failure is an
:class:`UploadError` carrying the HTTP status and a message that names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

import numpy as np
from numpy.typing import NDArray

from detforge.core.imageio import ImageError, decode_image

__all__ = ["IMAGE_FIELD", "Upload", "UploadError", "decode_image_bytes", "parse_multipart",
           "video_container"]

IMAGE_FIELD = "images"
"""The multipart field that carries image files."""


class UploadError(Exception):
    """A request body or one of its images is unusable.

    Attributes:
        status: HTTP status to answer (400, 413 or 415).
        error: Short machine-readable kind, e.g. ``"bad_image"``.
    """

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file.

    Attributes:
        filename: The client's file name (``image<N>`` when it sent none).
        data: The encoded bytes.
    """

    filename: str
    data: bytes


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type.

    Raises:
        UploadError: 400 when the boundary is missing.
    """
    msg = Message()
    msg["content-type"] = content_type
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data without a boundary "
                          "parameter; let the HTTP client build the Content-Type header")
    return boundary


def parse_multipart(body: bytes, content_type: str, *, max_file_bytes: int,
                    max_files: int) -> list[Upload]:
    """Split a ``multipart/form-data`` body into its ``images`` files.

    Args:
        body: The whole request body.
        content_type: The request's Content-Type header (carries the boundary).
        max_file_bytes: Largest file allowed.
        max_files: Most files allowed.

    Returns:
        The files of the ``images`` field, in order.

    Raises:
        UploadError: 400 for a malformed body, another field or no file; 413 for a file over
            ``max_file_bytes`` or more than ``max_files`` files.
    """
    delim = b"--" + boundary_of(content_type).encode("latin-1")
    pos = body.find(delim)
    if pos < 0:
        raise UploadError(400, "bad_request", "multipart body has no part with the boundary "
                          "of its Content-Type; the body is truncated or mislabelled")
    uploads: list[Upload] = []
    pos += len(delim)
    while True:
        if body.startswith(b"--", pos):
            break  # closing delimiter
        if not body.startswith(b"\r\n", pos):
            raise UploadError(400, "bad_request", "malformed multipart body: a boundary is "
                              "not followed by CRLF")
        head_end = body.find(b"\r\n\r\n", pos + 2)
        if head_end < 0:
            raise UploadError(400, "bad_request", "malformed multipart body: part headers "
                              "never end (truncated upload?)")
        headers = Message()
        for line in body[pos + 2:head_end].decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip()] = value.strip()
        data_start = head_end + 4
        end = _next_delimiter(body, b"\r\n" + delim, data_start)
        if end < 0:
            raise UploadError(400, "bad_request", "malformed multipart body: the last part "
                              "has no closing boundary (truncated upload?)")
        uploads.append(_upload(headers, body[data_start:end], len(uploads), max_file_bytes))
        if len(uploads) > max_files:
            raise UploadError(413, "too_many_images", f"more than {max_files} images in one "
                              f"request (--max-images); split it into several requests")
        pos = end + 2 + len(delim)
    if not uploads:
        raise UploadError(400, "no_images", f"no files in the multipart body; send them in "
                          f"the field {IMAGE_FIELD!r}")
    return uploads


def _next_delimiter(body: bytes, marker: bytes, start: int) -> int:
    """Index of the next ``CRLF--boundary`` that is followed by CRLF or ``--`` (RFC 2046)."""
    while True:
        end = body.find(marker, start)
        if end < 0:
            return end
        after = body[end + len(marker):end + len(marker) + 2]
        if after in (b"\r\n", b"--"):
            return end
        start = end + 1


def _upload(headers: Message, data: bytes, index: int, max_file_bytes: int) -> Upload:
    name = headers.get_param("name", header="content-disposition")
    raw_filename = headers.get_filename()
    if name != IMAGE_FIELD:
        raise UploadError(400, "bad_request", f"unexpected form field {name!r} (part "
                          f"{index + 1}); send image files in the field {IMAGE_FIELD!r}")
    filename = raw_filename or f"image{index}"
    check_size(filename, len(data), max_file_bytes)
    return Upload(filename, data)


def check_size(filename: str, size: int, max_bytes: int) -> None:
    """Raise a 413 :class:`UploadError` when ``size`` exceeds ``max_bytes``."""
    if size > max_bytes:
        raise UploadError(413, "image_too_large", f"{filename}: {size / 2**20:.3g} MiB is over "
                          f"the {max_bytes / 2**20:.3g} MiB limit (--max-image-mb); resize or "
                          f"recompress it")


_STATUS = {"too_large": (413, "image_too_large"), "unsupported": (415, "unsupported_image_format")}


def decode_image_bytes(data: bytes, filename: str, *, max_pixels: int) -> NDArray[np.uint8]:
    """Decode an encoded image to RGB ``[H, W, 3]`` uint8, as ``detforge predict`` reads files.

    Decoding goes through :func:`detforge.core.imageio.decode_image`: the format is told by
    its magic bytes (JPEG, PNG, BMP, TIFF, WebP, PNM; Radiance HDR, PFM, PAM and the rest are
    refused unread) and the header's pixel count is checked before any decoder runs.

    Args:
        data: Encoded bytes.
        filename: Named in error messages.
        max_pixels: Largest width x height accepted.

    Returns:
        The RGB image (EXIF orientation applied, as OpenCV does for files).

    Raises:
        UploadError: 400 when it is empty, corrupt or undecodable; 413 over ``max_pixels``;
            415 for a format detforge does not decode.
    """
    try:
        return decode_image(data, name=filename, max_pixels=max_pixels)
    except ImageError as exc:
        container = video_container(data)
        if container is not None:
            raise UploadError(415, "video_not_image", f"{filename}: this is a video "
                              f"({container[1:]}), not an image; POST it to /v1/videos "
                              f"(per-frame results, with every/fps/keyframes sampling)") from exc
        status, error = _STATUS.get(exc.kind, (400, "bad_image"))
        raise UploadError(status, error, str(exc)) from exc


def video_container(data: bytes) -> str | None:
    """The file suffix of a video container told by its magic bytes, or None.

    Recognised: MP4 / MOV / M4V (an ISO-BMFF box at offset 4), AVI (RIFF ... AVI), Matroska
    and WebM (EBML header), MPEG-TS (sync byte every 188 bytes) and MPEG program streams.
    Anything else is refused before a decoder sees it.

    Example:
        >>> video_container(bytes(4) + b"ftypisom" + bytes(8))
        '.mp4'
        >>> video_container(b"GIF89a") is None
        True
    """
    head = data[:12]
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return ".mp4" if head[4:8] == b"ftyp" else ".mov"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".mkv"
    if len(data) > 376 and data[0] == 0x47 and data[188] == 0x47 and data[376] == 0x47:
        return ".ts"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return ".mpg"
    return None

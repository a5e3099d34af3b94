"""Small hostile image files: headers that declare billions of pixels, formats whose header
Pillow cannot read, and special files that never end (FIFOs, ``/dev/zero``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

HDR = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n"


def png_header(width: int, height: int) -> bytes:
    """A ~60-byte PNG whose IHDR declares ``width x height`` (its data is a few rows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", len(idat))
            + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat)))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A valid 16x16 baseline JPEG whose frame header is patched to ``width x height``.

    libjpeg accepts it and fills the missing data with grey: a few hundred bytes that decode
    to ``3 * width * height`` bytes.
    """
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def pfm(width: int, height: int) -> bytes:
    return b"PF\n%d %d\n-1.0\n" % (width, height) + b"\0" * 64


def pam(width: int, height: int) -> bytes:
    return (b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n"
            % (width, height) + b"\0" * 64)


def hdr(width: int, height: int, payload: bytes = b"\0" * 64) -> bytes:
    return HDR % (height, width) + payload


def fifo(path: Path) -> Path:
    """A named pipe at ``path``: opening it for reading blocks until a writer appears."""
    os.mkfifo(path)
    return path


def dev_zero_link(path: Path) -> Path:
    """A symlink at ``path`` to ``/dev/zero``: reading it never ends."""
    path.symlink_to("/dev/zero")
    return path


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A real size-limited file system (tmpfs ``size=...``) mounted at ``path``.

    Mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)

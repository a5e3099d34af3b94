"""A small synthetic photo and video library, seeded: for tests, benchmarks and demos.

Every format the index reads is written with real encoders: JPEG, PNG, WebP and TIFF with
EXIF (Pillow), HEIC (pillow-heif), a DNG (a minimal uncompressed CFA DNG 1.4 written byte by
byte, which LibRaw decodes: no camera file is needed), MJPG videos (OpenCV), plus near and
exact duplicates, a corrupt file and a text file. :func:`write_tiny_clip` saves a tiny
OpenCLIP model (seeded random weights) in the local-folder layout the CLIP tagger loads.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.testing import random_image, write_video

__all__ = ["exif_bytes", "make_library", "save_image", "set_mtime", "write_dng",
           "write_tiny_clip"]


def exif_bytes(*, make: str | None = None, model: str | None = None, date: str | None = None,
               gps: tuple[float, float] | None = None, lens: str | None = None,
               orientation: int = 1) -> bytes:
    """An EXIF block (Pillow) with the given fields; ``date`` as ``YYYY:MM:DD HH:MM:SS``."""
    from PIL import Image

    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if date:
        sub[0x9003] = date
    if lens:
        sub[0xA434] = lens
    if gps:
        lat, lon = gps
        g = exif.get_ifd(0x8825)
        g[1], g[2] = ("N" if lat >= 0 else "S"), _dms(abs(lat))
        g[3], g[4] = ("E" if lon >= 0 else "W"), _dms(abs(lon))
    return bytes(exif.tobytes())


def _dms(value: float) -> tuple[float, float, float]:
    deg = int(value)
    minutes = int((value - deg) * 60)
    return float(deg), float(minutes), round((value - deg - minutes / 60) * 3600, 4)


def save_image(path: Path, rgb: NDArray[np.uint8], fmt: str, *, quality: int = 92,
               **exif: Any) -> Path:
    """Write ``rgb`` with Pillow (``fmt``: JPEG, PNG, WEBP, TIFF or HEIF) and EXIF fields
    (keyword arguments of :func:`exif_bytes`); returns ``path``."""
    from PIL import Image

    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"exif": exif_bytes(**exif)} if exif else {}
    if fmt in ("JPEG", "WEBP", "HEIF"):
        kwargs["quality"] = quality
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    path.write_bytes(buf.getvalue())
    return path


def write_dng(path: Path, *, height: int = 64, width: int = 96, seed: int = 0,
              make: str = "DetforgeCam", model: str = "DNG-1",
              date: str = "2024:05:06 07:08:09") -> Path:
    """A minimal uncompressed 16-bit CFA (RGGB) DNG 1.4 that LibRaw (rawpy) decodes, with
    Make, Model and DateTime tags; returns ``path``."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1500, 3500, (height, width)).astype("<u2").tobytes()
    entries: list[tuple[int, int, int, bytes]] = []

    def add(tag: int, typ: int, values: Any) -> None:
        if typ == 2:
            raw = values.encode() + b"\0"
            entries.append((tag, 2, len(raw), raw))
        elif typ in (5, 10):
            fmt = "<II" if typ == 5 else "<ii"
            entries.append((tag, typ, len(values), b"".join(struct.pack(fmt, *v)
                                                            for v in values)))
        else:
            code = {1: "B", 3: "H", 4: "I"}[typ]
            entries.append((tag, typ, len(values), struct.pack(f"<{len(values)}{code}",
                                                               *values)))

    add(254, 4, [0]); add(256, 4, [width]); add(257, 4, [height]); add(258, 3, [16])  # noqa: E702
    add(259, 3, [1]); add(262, 3, [32803]); add(271, 2, make); add(272, 2, model)  # noqa: E702
    add(273, 4, [0]); add(274, 3, [1]); add(277, 3, [1]); add(278, 4, [height])  # noqa: E702
    add(279, 4, [len(data)]); add(284, 3, [1]); add(306, 2, date)  # noqa: E702
    add(33421, 3, [2, 2]); add(33422, 1, [0, 1, 1, 2]); add(50706, 1, [1, 4, 0, 0])  # noqa: E702
    add(50708, 2, f"{make} {model}"); add(50714, 4, [0]); add(50717, 4, [4095])  # noqa: E702
    add(50721, 10, [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)])
    add(50728, 5, [(1, 1), (1, 1), (1, 1)]); add(50778, 3, [21])  # noqa: E702
    entries.sort()
    ifd_size = 2 + 12 * len(entries) + 4
    extra, records = b"", []
    data_offset_slot = -1
    for tag, typ, count, raw in entries:
        if len(raw) <= 4:
            records.append(struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0"))
        else:
            offset = 8 + ifd_size + len(extra)
            extra += raw + (b"\0" if len(raw) % 2 else b"")
            records.append(struct.pack("<HHII", tag, typ, count, offset))
        if tag == 273:
            data_offset_slot = len(records) - 1
    records[data_offset_slot] = struct.pack("<HHII", 273, 4, 1, 8 + ifd_size + len(extra))
    blob = (b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
            + b"".join(records) + b"\0\0\0\0" + extra + data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def _blurred(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    import cv2

    return np.asarray(cv2.GaussianBlur(rgb, (0, 0), 6), np.uint8)


def set_mtime(path: Path, when: str) -> None:
    """Set a file's access and modification times to ``when`` (ISO 8601, local time)."""
    ts = datetime.fromisoformat(when).timestamp()
    os.utime(path, (ts, ts))


def make_library(root: Path) -> dict[str, Any]:
    """Write the library under ``root``; returns its manifest (paths by role, counts).

    Bright pictures make the tiny test detector (``detforge.testing.tiny_onnx_model``) find
    ``dog`` boxes; the dark one gives none.
    """
    iphone: dict[str, Any] = {"make": "Apple", "model": "iPhone 15 Pro"}
    canon: dict[str, Any] = {"make": "Canon", "model": "Canon EOS R5"}
    base = random_image(120, 160, seed=1)
    p: dict[str, Path] = {}
    p["dog24"] = save_image(root / "a" / "dog_2024.jpg", base, "JPEG", date="2024:05:06 07:08:09",
                            gps=(52.52, 13.405), lens="back camera", **iphone)
    p["dog23"] = save_image(root / "a" / "dog_2023.jpg", random_image(120, 160, seed=2), "JPEG",
                            date="2023:08:01 10:00:00", **canon)
    p["dark"] = save_image(root / "a" / "night.jpg", np.full((96, 96, 3), 6, np.uint8), "JPEG",
                           date="2024:01:02 23:00:00", **iphone)
    p["blurry"] = save_image(root / "a" / "blurry.jpg", _blurred(random_image(120, 160, seed=3)),
                             "JPEG", date="2024:03:03 12:00:00", **iphone)
    p["png"] = save_image(root / "b" / "scan.png", random_image(100, 100, seed=4), "PNG")
    set_mtime(p["png"], "2022-06-01T12:00:00")
    p["webp"] = save_image(root / "b" / "photo.webp", random_image(90, 120, seed=5), "WEBP",
                           date="2021:02:03 04:05:06", **canon)
    p["tiff"] = save_image(root / "b" / "photo.tiff", random_image(90, 120, seed=6), "TIFF",
                           date="2020:02:03 04:05:06", **canon)
    p["heic"] = save_image(root / "c" / "IMG_0001.heic", random_image(96, 128, seed=7), "HEIF",
                           date="2024:07:07 07:07:07", make="Apple", model="iPhone 15")
    p["dng"] = write_dng(root / "c" / "raw.dng")
    small = np.asarray(_resize(base, 80, 60), np.uint8)
    p["near"] = save_image(root / "d" / "dog_2024_small.jpg", small, "JPEG", quality=70,
                           date="2024:05:06 07:08:09", **iphone)
    p["copy"] = root / "d" / "copy_of_2023.jpg"
    shutil.copy2(p["dog23"], p["copy"])
    p["broken"] = root / "e" / "broken.jpg"
    p["broken"].parent.mkdir(parents=True, exist_ok=True)
    p["broken"].write_bytes(b"this is not a jpeg")
    p["text"] = root / "e" / "readme.txt"
    p["text"].write_text("notes")
    frames = [np.clip(random_image(64, 96, seed=s).astype(np.int16) + 60, 0, 255).astype(np.uint8)
              for s in range(12)]
    p["video1"] = write_video(root / "v" / "clip1.avi", frames, fps=6)
    p["video2"] = write_video(root / "v" / "clip2.avi", frames[::-1], fps=6)
    for key in ("video1", "video2"):  # no EXIF: their date is the file's mtime
        set_mtime(p[key], "2024-08-09T10:00:00")
    hidden = root / ".thumbnails" / "x.jpg"
    save_image(hidden, base, "JPEG")
    return {"paths": {k: str(v.absolute()) for k, v in p.items()},
            "files": len(p), "media": len(p) - 1}


def _resize(rgb: NDArray[np.uint8], w: int, h: int) -> NDArray[np.uint8]:
    import cv2

    return np.asarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), np.uint8)


def write_tiny_clip(folder: Path) -> Path:
    """A tiny OpenCLIP model (seeded random weights) saved in the local-dir layout."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                          "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                        "layers": 1}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return folder

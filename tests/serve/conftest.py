"""Serve fixtures: a tiny ONNX detector, encoded images, and a real uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from numpy.typing import NDArray

from detforge.testing import random_image, tiny_onnx_model


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x64 two-class ONNX detector whose scores follow the image's mean intensity."""
    return tiny_onnx_model(tmp_path_factory.mktemp("serve-model") / "tiny.onnx")


def encode(image: NDArray[np.uint8], ext: str = ".png") -> bytes:
    """Encode an RGB image losslessly (PNG by default)."""
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise OSError(f"cv2 could not encode {ext}")
    return buf.tobytes()


def sample_images(n: int) -> list[NDArray[np.uint8]]:
    """``n`` images of different sizes and brightness."""
    out = []
    for i in range(n):
        img = random_image(40 + 8 * i, 72 - 4 * i, seed=i)
        out.append(np.clip(img.astype(np.int16) + 20 * i - 40, 0, 255).astype(np.uint8))
    return out


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none",
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()

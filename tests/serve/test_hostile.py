"""Hostile clients against a real uvicorn on 127.0.0.1: idle and trickling request bodies,
pixel bombs in formats Pillow cannot read, and faults no handler expected.

No assertion depends on how fast anything runs: waits have generous deadlines and the
server's read timeout is set small and explicitly.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.hostile_inputs import hdr, pam, pfm, png_header

from detforge.serve import ServeConfig, create_app
from detforge.testing import FakeBackend, fake_model, solid_image

from .conftest import encode, running_server

WAIT_S = 60.0  # upper bound for anything to happen; never a lower bound


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=WAIT_S).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _gauge(url: str, name: str) -> float:
    return _samples(url)[(name, ())]


def _requests(url: str, status: int) -> float:
    key = ("detforge_requests_total", (("endpoint", "/v1/detect"), ("status", str(status))))
    return _samples(url).get(key, 0.0)


@contextmanager
def _serving(**options: Any) -> Iterator[str]:
    config = ServeConfig(model="fake", warmup=False, **options)
    with running_server(create_app(config, load=lambda: fake_model(FakeBackend.echo()))) as url:
        deadline = time.monotonic() + WAIT_S
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never got ready"
            time.sleep(0.02)
        yield url


def _open(url: str, head: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
    sock.sendall(head)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Read a whole response from a server that closes the connection after it."""
    data = b""
    while chunk := sock.recv(65536):  # b"" once the server has closed the connection
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def _post_image(url: str, value: int) -> httpx.Response:
    return httpx.post(f"{url}/v1/detect", timeout=WAIT_S,
                      files=[("images", ("a.png", encode(solid_image(64, 64, value)),
                                         "image/png"))])


def test_idle_connections_cannot_hold_the_upload_budget() -> None:
    # Defaults: a 64 x 20 MiB body budget; four bodies of the largest allowed size fill it.
    with _serving(body_timeout=2.0) as url, ExitStack() as stack:
        declared = ServeConfig(model="x").max_body_bytes
        head = (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                b"boundary=b\r\nContent-Length: " + str(declared).encode() + b"\r\n\r\n--b\r\n")
        idle = [stack.enter_context(_open(url, head)) for _ in range(4)]
        deadline = time.monotonic() + WAIT_S
        while _gauge(url, "detforge_uploads_in_progress") < 4:
            assert time.monotonic() < deadline, "the idle requests never reached the endpoint"
            time.sleep(0.02)
        held = _gauge(url, "detforge_upload_bytes")
        served = [_post_image(url, 40 + 50 * i) for i in range(3)]  # other clients
        answers = [_response(sock) for sock in idle]  # then the server gives up on the idle
        counts = (_requests(url, 408), _requests(url, 200))
        after = (_gauge(url, "detforge_uploads_in_progress"),
                 _gauge(url, "detforge_upload_bytes"))
    assert held < 1024  # what arrived, not what was declared
    assert [r.status_code for r in served] == [200] * 3, [r.text for r in served]
    for status, headers, body in answers:
        assert status == 408 and headers["connection"] == "close"
        assert body["error"] == "body_timeout" and "--body-timeout" in body["detail"]
    assert counts == (4, 3) and after == (0, 0)


def test_a_trickling_upload_is_cut_off() -> None:
    with _serving(body_timeout=1.0, min_upload_rate=64.0) as url:
        sock = _open(url, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                          b"Content-Length: 1000000\r\n\r\n")
        with sock:
            sock.settimeout(0.05)
            deadline = time.monotonic() + WAIT_S
            data = b""
            while time.monotonic() < deadline:
                try:
                    sock.sendall(b"x")  # a byte at a time: under 64 KiB/s whatever the pace
                    data += sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # the server closed the connection
                    break
                if b"\r\n\r\n" in data:
                    break
            sock.settimeout(WAIT_S)
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except OSError:
                pass
    status = int(data.split(b" ", 2)[1])
    body = json.loads(data.partition(b"\r\n\r\n")[2])
    assert status == 408 and body["error"] in ("upload_too_slow", "body_timeout")


BOMBS = {  # name: (bytes, status, error)
    "png-50000x50000": (png_header(50000, 50000), 413, "image_too_large"),
    "pfm-40000x40000": (pfm(40000, 40000), 415, "unsupported_image_format"),
    "pam-40000x40000": (pam(40000, 40000), 415, "unsupported_image_format"),
    "hdr-40000x40000": (hdr(40000, 40000), 415, "unsupported_image_format"),
    "ppm-40000x40000": (b"P6\n40000 40000\n255\n" + b"\0" * 64, 413, "image_too_large"),
    "garbage": (b"\xff\xd8\xff\xe0 not really a jpeg", 400, "bad_image"),
}


def test_pixel_bombs_get_the_json_error_and_are_counted() -> None:
    rng = np.random.default_rng(0)
    hdr_16mb = hdr(9000, 9000, rng.integers(0, 256, 16 * 2**20, np.uint8).tobytes())
    cases = [*BOMBS.values(), (hdr_16mb, 415, "unsupported_image_format")]
    with _serving() as url:
        answers = [httpx.post(f"{url}/v1/detect", content=data, timeout=WAIT_S,
                              headers={"content-type": "application/octet-stream"})
                   for data, _, _ in cases]
        served = _post_image(url, 90)
        counts = {status: _requests(url, status) for status in (200, 400, 413, 415)}
    for (data, status, error), resp in zip(cases, answers, strict=True):
        assert resp.status_code == status, (data[:20], resp.text)
        assert resp.headers["content-type"] == "application/json"
        assert resp.json()["error"] == error
    assert served.status_code == 200
    assert counts == {200: 1, 400: 1, 413: 2, 415: 4}


def test_an_unexpected_fault_is_json_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def fault(*args: Any) -> Any:
        raise RuntimeError("decoder exploded")

    with _serving() as url:
        monkeypatch.setattr("detforge.serve.app._prepare", fault)
        resp = _post_image(url, 30)
        assert _requests(url, 500) == 1
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal_error",
                           "detail": "POST /v1/detect: RuntimeError: decoder exploded"}

"""The app under a real uvicorn, through httpx (real lifespan, worker and ONNX model).

Starlette's ``TestClient`` is not used: with httpx it raises a deprecation warning.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from detforge.runtime import load_model
from detforge.runtime.sinks import Prediction
from detforge.serve import ServeConfig, create_app
from detforge.testing import FakeBackend, fake_model, solid_image

from .conftest import encode, running_server, sample_images

KEY = "s3cret-key"


def _wait_ready(client: httpx.Client, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(client.get("/ready").json())
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client(tiny_onnx: Path) -> Iterator[httpx.Client]:
    config = ServeConfig(model=str(tiny_onnx), device="cpu", threads=1, max_batch=4,
                         max_image_mb=0.05, max_images=3, max_pixels=200 * 200, max_det=50,
                         api_key_env=None)
    with running_server(create_app(config)) as url, httpx.Client(base_url=url) as c:
        _wait_ready(c)
        yield c


def _files(images: list[Any], names: list[str] | None = None) -> list[tuple[str, Any]]:
    names = names or [f"img{i}.png" for i in range(len(images))]
    return [("images", (n, encode(im) if isinstance(im, np.ndarray) else im, "image/png"))
            for n, im in zip(names, images, strict=True)]


@pytest.mark.parametrize("params", [{}, {"conf": 0.5, "iou": 0.3, "max_det": 1}],
                         ids=["defaults", "overrides"])
def test_detect_equals_load_model_predict(client: httpx.Client, tiny_onnx: Path,
                                          params: dict[str, Any]) -> None:
    images = sample_images(3)
    resp = client.post("/v1/detect", files=_files(images), params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "tiny.onnx" and body["latency_ms"] > 0
    with load_model(tiny_onnx, device="cpu", threads=1) as model:
        expected = model.predict(images, conf=params.get("conf"), iou=params.get("iou"),
                                 max_det=params.get("max_det"))
        classes = model.classes
    assert [r["filename"] for r in body["results"]] == ["img0.png", "img1.png", "img2.png"]
    for res, img, det in zip(body["results"], images, expected, strict=True):
        assert (res["height"], res["width"]) == img.shape[:2]
        ref = Prediction("x", None, img.shape[1], img.shape[0], det).to_record(classes)
        assert len(res["detections"]) == len(ref["detections"]) > 0
        for got, want in zip(res["detections"], ref["detections"], strict=True):
            assert got["class_name"] == want["class_name"] and got["class_id"] == want["class_id"]
            np.testing.assert_allclose(got["xyxy"], want["xyxy"], atol=0.02)
            assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    if params:
        assert all(len(r["detections"]) <= 1 for r in body["results"])


def test_raw_image_body(client: httpx.Client) -> None:
    resp = client.post("/v1/detect", content=encode(sample_images(1)[0]),
                       headers={"content-type": "image/png"}, params={"filename": "cam.png"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["filename"] == "cam.png"


@pytest.mark.parametrize(("kwargs", "status", "error", "detail"), [
    ({"files": [("images", ("bad.jpg", b"\xff\xd8 not a jpeg", "image/jpeg"))]},
     400, "bad_image", "bad.jpg: not a decodable image"),
    ({"files": [("images", ("empty.png", b"", "image/png"))]}, 400, "bad_image", "empty.png"),
    ({"files": [("photo", ("a.png", b"x", "image/png"))]}, 400, "bad_request", "'photo'"),
    ({"files": [("images", ("big.png", b"\0" * 60_000, "image/png"))]},
     413, "image_too_large", "big.png: 0.0572 MiB is over the 0.05 MiB limit"),
    ({"files": [("images", ("huge.png", "HUGE", "image/png"))]},
     413, "image_too_large", "huge.png: PNG header declares 300x300 = 90,000 pixels"),
    ({"files": [("images", (f"{i}.png", b"x", "image/png")) for i in range(4)]},
     413, "too_many_images", "more than 3 images"),
    ({"content": b"\0" * 200_000, "headers": {"content-type": "image/jpeg"}},
     413, "request_too_large", "request body over"),
    ({"json": {"image": "abc"}}, 415, "unsupported_media_type", "'application/json'"),
    ({"content": b"--x\r\nContent-Disposition: form-data; name=\"images\"\r\n\r\nab",
      "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400, "bad_request", "no closing boundary"),
    ({"files": _files([solid_image(8, 8, 1)]), "params": {"conf": 2}},
     422, "invalid_parameter", "query parameter 'conf'"),
    ({"files": _files([solid_image(8, 8, 1)]), "params": {"max_det": 51}},
     422, "invalid_parameter", "over the server's limit 50"),
    ({"files": _files([solid_image(8, 8, 1)]), "params": {"iou": "x"}},
     422, "invalid_parameter", "'iou'"),
], ids=["undecodable", "empty", "wrong-field", "file-too-large", "too-many-pixels",
        "too-many-files", "body-too-large", "json", "truncated-multipart", "conf-range",
        "max-det-limit", "iou-type"])
def test_detect_errors(client: httpx.Client, kwargs: dict[str, Any], status: int, error: str,
                       detail: str) -> None:
    files = kwargs.get("files")
    if files and files[0][1][1] == "HUGE":
        kwargs = {"files": [("images", ("huge.png", encode(solid_image(300, 300, 9)),
                                        "image/png"))]}
    resp = client.post("/v1/detect", **kwargs)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error
    assert detail in resp.json()["detail"]


def test_probes_model_info_metrics_and_404(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    info = client.get("/v1/model").json()
    assert info["classes"] == ["cat", "dog"] and info["imgsz"] == [64, 64]
    assert info["backend"] == "onnxruntime" and info["layout"] == "raw"
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"detforge_requests", "detforge_images", "detforge_batch_size",
            "detforge_request_latency_seconds", "detforge_queue_depth",
            "detforge_model_ready"} <= set(families)
    by_status = {(s.labels["endpoint"], s.labels["status"]): s.value
                 for s in families["detforge_requests"].samples if s.name.endswith("_total")}
    assert by_status[("/health", "200")] >= 1 and by_status[("other", "404")] >= 1
    assert next(s.value for s in families["detforge_model_ready"].samples) == 1.0


@pytest.fixture(scope="module")
def keyed_client() -> Iterator[httpx.Client]:
    os.environ["TEST_SERVE_KEY"] = KEY
    try:
        config = ServeConfig(model="fake", api_key_env="TEST_SERVE_KEY", warmup=False)
        app = create_app(config, load=lambda: fake_model(FakeBackend.echo()))
    finally:
        del os.environ["TEST_SERVE_KEY"]
    with running_server(app) as url, httpx.Client(base_url=url) as c:
        _wait_ready(c)
        yield c


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"X-API-Key": "wrong"}, 401),
    ({"Authorization": f"Bearer {KEY}"}, 200),
    ({"X-API-Key": KEY}, 200),
], ids=["none", "bearer-wrong", "header-wrong", "bearer-ok", "header-ok"])
def test_api_key(keyed_client: httpx.Client, headers: dict[str, str], status: int) -> None:
    c = keyed_client
    resp = c.post("/v1/detect", files=_files([solid_image(16, 16, 200)]), headers=headers)
    assert resp.status_code == status, resp.text
    assert c.get("/v1/model", headers=headers).status_code == status
    assert c.get("/health").status_code == 200  # probes stay open
    if status == 401:
        assert "API key" in resp.json()["detail"]
        assert resp.headers["www-authenticate"] == "Bearer"


def test_ready_is_503_until_loaded_then_failure_is_reported() -> None:
    gate = threading.Event()

    def load() -> Any:
        gate.wait(10)
        raise RuntimeError("weights corrupt")

    failures: list[BaseException] = []
    app = create_app(ServeConfig(model="m"), load=load, on_failure=failures.append)
    with running_server(app) as url, httpx.Client(base_url=url) as c:
        assert c.get("/health").status_code == 200
        loading = c.get("/ready")
        assert loading.status_code == 503 and "still loading" in loading.json()["detail"]
        busy = c.post("/v1/detect", files=_files([solid_image(8, 8, 1)]))
        assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        gate.set()
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        failed = c.get("/ready").json()
        assert "failed to load: RuntimeError: weights corrupt" in failed["detail"]
    assert isinstance(failures[0], RuntimeError)

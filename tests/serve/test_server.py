"""Through real HTTP: batching across concurrent requests, overload, and the CLI process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from detforge.cli import app as cli_app
from detforge.serve import ServeConfig, create_app
from detforge.testing import FakeBackend, fake_model, random_image, solid_image

from .conftest import encode, running_server
from .test_batcher import Gate


def _post(url: str, value: int) -> httpx.Response:
    files = [("images", (f"{value}.png", encode(solid_image(64, 64, value)), "image/png"))]
    return httpx.post(f"{url}/v1/detect", files=files, timeout=30)


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


def test_concurrent_requests_are_batched() -> None:
    backend = FakeBackend.echo(delay=0.05)
    config = ServeConfig(model="fake", max_batch=8, max_wait_ms=100, warmup=False)
    app = create_app(config, load=lambda: fake_model(backend))
    n = 8
    with running_server(app) as url:
        with ThreadPoolExecutor(n) as pool:
            responses = list(pool.map(lambda v: _post(url, v), [20 + 25 * i for i in range(n)]))
        batches = _metric(url, "detforge_batch_size_count")
        images = _metric(url, "detforge_images_total")
    assert [r.status_code for r in responses] == [200] * n
    for i, r in enumerate(responses):
        assert r.json()["results"][0]["detections"][0]["score"] == pytest.approx(
            (20 + 25 * i) / 255, abs=1e-3)
    assert sum(backend.batch_sizes) == n and len(backend.batch_sizes) < n
    assert batches == len(backend.batch_sizes) and images == n


def test_overload_answers_503_with_retry_after() -> None:
    gate = Gate()
    config = ServeConfig(model="fake", max_batch=1, max_wait_ms=0, max_queue=1, max_images=1)
    app = create_app(config, load=lambda: fake_model(FakeBackend(gate)))
    with running_server(app) as url, ThreadPoolExecutor(2) as pool:
        httpx.get(f"{url}/ready")
        while httpx.get(f"{url}/ready").status_code != 200:
            time.sleep(0.02)
        gate.armed = True
        first = pool.submit(_post, url, 50)
        assert gate.entered.wait(10)
        second = pool.submit(_post, url, 100)
        deadline = time.monotonic() + 10
        while _metric(url, "detforge_queue_depth") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = _post(url, 150)
        gate.open.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert refused.status_code == 503 and refused.json()["error"] == "overloaded"
    assert int(refused.headers["retry-after"]) >= 1
    assert "--max-queue" in refused.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_cli_serves_until_sigterm(tiny_onnx: Path, tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-c", "from detforge.cli import main; main()", "serve",
           str(tiny_onnx.parent), "--port", str(port), "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "DETFORGE_API_KEY": ""}
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"server did not get ready:\n{log.read()}")
            time.sleep(0.1)
        assert httpx.get(f"{url}/health").status_code == 200
        resp = _post(url, 180)
        assert resp.status_code == 200 and resp.json()["model"] == "tiny.onnx"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        log.seek(0)
        output = log.read()
        log.close()
    assert rc in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal once shut down
    assert "model ready" in output and "Application shutdown complete" in output


runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}"], "ConfigError: "),
    (["{model}", "--max-batch", "0"], "ConfigError: --max-batch: Input should be greater"),
    (["{model}", "--max-images", "100"], "max_images (100) is larger than max_queue (64)"),
    (["{model}", "--log-level", "loud"], "ConfigError: --log-level"),
    (["{model}", "--imgsz", "x"], "ConfigError: --imgsz 'x'"),
], ids=["missing-model", "max-batch", "images-over-queue", "log-level", "imgsz"])
def test_cli_rejects_bad_options_before_serving(tiny_onnx: Path, tmp_path: Path,
                                                args: list[str], message: str) -> None:
    args = [a.format(missing=tmp_path / "none.onnx", model=tiny_onnx) for a in args]
    result = runner.invoke(cli_app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_shutdown_finishes_requests_in_flight() -> None:
    gate = Gate()
    backend = FakeBackend(gate)
    config = ServeConfig(model="fake", max_batch=2, max_wait_ms=0)
    app = create_app(config, load=lambda: fake_model(backend))
    with ThreadPoolExecutor(1) as pool:
        with running_server(app) as url:
            while httpx.get(f"{url}/ready").status_code != 200:
                time.sleep(0.02)
            gate.armed = True
            pending = pool.submit(_post, url, 120)
            assert gate.entered.wait(10)
            threading.Timer(0.3, gate.open.set).start()
        # the server has stopped: the request it held was answered first
        assert pending.result(10).status_code == 200
    assert backend.closed


def test_serves_a_bundle_target_folder_like_its_reference(tiny_onnx: Path,
                                                          tmp_path: Path) -> None:
    from detforge.deploy.bundle import bundle_model
    from detforge.deploy.reference import load_reference

    bundle_model(tiny_onnx, targets=["t4"], out=tmp_path, reference_images=2)
    folder = tmp_path / "t4"
    images, expected, thresholds = load_reference(folder / "reference")
    config = ServeConfig(model=str(folder), device="cpu", threads=1,
                         conf=thresholds["conf"], iou=thresholds["iou"])
    with running_server(create_app(config)) as url:
        while httpx.get(f"{url}/ready").status_code != 200:
            time.sleep(0.02)
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images]
        body = httpx.post(f"{url}/v1/detect", files=files, timeout=30).json()
    assert body["model"] == "model.onnx"
    for result, ref in zip(body["results"], expected, strict=True):
        got = result["detections"]
        assert len(got) == len(ref) > 0
        np.testing.assert_allclose([d["xyxy"] for d in got], ref.xyxy, atol=0.02)
        np.testing.assert_allclose([d["score"] for d in got], ref.scores, atol=1e-4)
        assert [d["class_id"] for d in got] == ref.class_ids.tolist()


def test_bodies_in_progress_are_bounded() -> None:
    config = ServeConfig(model="fake", max_queue=1, max_images=1, max_image_mb=0.01,
                         warmup=False)  # body budget: 1 x (10 KiB + 16 KiB) = 26624 bytes
    app = create_app(config, load=lambda: fake_model(FakeBackend.echo()))
    noisy = encode(random_image(40, 40, seed=1, shapes=0))
    assert 4000 < len(noisy) < 10_000
    headers = {"content-type": "image/png"}
    with running_server(app) as url:
        while httpx.get(f"{url}/ready").status_code != 200:
            time.sleep(0.02)
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:  # sends 25000 of 26000
            slow.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
                         b"form-data; boundary=b\r\nContent-Length: 26000\r\n\r\n--b\r\n"
                         + b"0" * 24995)
            deadline = time.monotonic() + 10
            refused = httpx.post(f"{url}/v1/detect", content=noisy, headers=headers)
            while refused.status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.02)  # the slow request has not been read that far yet
                refused = httpx.post(f"{url}/v1/detect", content=noisy, headers=headers)
        deadline = time.monotonic() + 10
        after = httpx.post(f"{url}/v1/detect", content=noisy, headers=headers)
        while after.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)  # the server notices the closed connection
            after = httpx.post(f"{url}/v1/detect", content=noisy, headers=headers)
    assert refused.status_code == 503 and "request bodies in progress" in refused.text
    assert refused.headers["retry-after"] == "1"
    assert after.status_code == 200

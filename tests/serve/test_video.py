"""Video uploads and stream jobs in `serve`: per-frame results, sampling, limits, refusals."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.stream_server import MjpegServer

from detforge.serve import ServeConfig, create_app
from detforge.testing import FakeBackend, fake_model, solid_image, write_video

from .conftest import encode, running_server


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 12-frame MJPG AVI whose frames get brighter."""
    frames = [solid_image(48, 64, 20 * i) for i in range(12)]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", frames).read_bytes()


def _app(**options: object) -> object:
    config = ServeConfig(model="fake", api_key_env=None, **options)  # type: ignore[arg-type]
    return create_app(config, load=lambda: fake_model(FakeBackend.echo()))


def _wait_done(url: str, job: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, object] = httpx.get(f"{url}/v1/jobs/{job}").json()
        if body["state"] not in ("queued", "running"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job} still running")


def test_video_upload_answers_every_sampled_frame(clip: bytes) -> None:
    with running_server(_app()) as url:
        r = httpx.post(f"{url}/v1/videos?wait=true", content=clip,
                       headers={"content-type": "video/x-msvideo"}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "done" and body["frames_done"] == 12
        frames = body["frames"]
        assert [f["frame"] for f in frames] == list(range(12))
        scores = [f["detections"][0]["score"] for f in frames if f["detections"]]
        assert scores == sorted(scores) and len(scores) >= 10  # brighter frames score higher
        r = httpx.post(f"{url}/v1/videos?every=4", content=clip,
                       headers={"content-type": "video/x-msvideo"}, timeout=60)
        assert r.status_code == 202 and r.headers["location"] == r.json()["url"]
        done = _wait_done(url, r.json()["job"])
        assert [f["frame"] for f in done["frames"]] == [0, 4, 8]  # type: ignore[index]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'detforge_requests_total{endpoint="/v1/jobs",status="200"}' in metrics


def test_an_image_endpoint_given_a_video_says_where_to_send_it(clip: bytes) -> None:
    with running_server(_app()) as url:
        r = httpx.post(f"{url}/v1/detect", content=clip, headers={"content-type": "image/png"})
    assert r.status_code == 415 and r.json()["error"] == "video_not_image"
    assert "/v1/videos" in r.json()["detail"]


@pytest.mark.parametrize("body,ctype,status,error", [
    (encode(solid_image(8, 8, 9)), "video/mp4", 415, "unsupported_video_format"),
    (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(100), "video/x-msvideo", 422, "bad_video"),
    (b"x" * 10, "text/plain", 415, "unsupported_media_type"),
], ids=["png-as-video", "corrupt-avi", "text"])
def test_bad_videos_get_clear_errors(body: bytes, ctype: str, status: int, error: str) -> None:
    with running_server(_app()) as url:
        r = httpx.post(f"{url}/v1/videos?wait=true", content=body,
                       headers={"content-type": ctype}, timeout=60)
    assert r.status_code == status and r.json()["error"] == error, r.text


def test_video_limits(clip: bytes) -> None:
    with running_server(_app(max_video_mb=0.001)) as url:
        r = httpx.post(f"{url}/v1/videos", content=clip,
                       headers={"content-type": "video/x-msvideo"})
        assert r.status_code == 413 and "--max-video-mb" in r.json()["detail"]
    with running_server(_app(max_video_frames=5)) as url:
        r = httpx.post(f"{url}/v1/videos?wait=true", content=clip,
                       headers={"content-type": "video/x-msvideo"}, timeout=60)
        assert r.status_code == 422 and "--max-video-frames" in r.json()["detail"]
        r = httpx.post(f"{url}/v1/videos?wait=true&every=3", content=clip,
                       headers={"content-type": "video/x-msvideo"}, timeout=60)
        assert r.status_code == 200 and r.json()["frames_done"] == 4


def test_stream_jobs_need_allow_streams_and_report_counters() -> None:
    with running_server(_app()) as url:
        r = httpx.post(f"{url}/v1/streams", json={"url": "rtsp://127.0.0.1:1/x"})
        assert r.status_code == 403 and "--allow-streams" in r.json()["detail"]
    server = MjpegServer(frames=15)
    try:
        with running_server(_app(allow_streams=True, stream_keep=5)) as url:
            r = httpx.post(f"{url}/v1/streams", json={"url": "file:///etc/passwd"})
            assert r.status_code == 422
            r = httpx.post(f"{url}/v1/streams", json={"url": server.url, "reconnect": 0})
            assert r.status_code == 202, r.text
            body = _wait_done(url, r.json()["job"])
            assert body["state"] == "done", body
            assert body["frames_done"] + body["frames_dropped"] == 15  # type: ignore[operator]
            assert len(body["frames"]) <= 5  # type: ignore[arg-type]
            assert body["latency_ms"] is not None
            gone = MjpegServer()
            dead = gone.url
            gone.stop()
            r = httpx.post(f"{url}/v1/streams", json={"url": dead, "reconnect": 1})
            body = _wait_done(url, r.json()["job"])
            assert body["state"] == "failed" and "no frame was ever read" in str(body["error"])
    finally:
        server.stop()


def test_unknown_job_is_404() -> None:
    with running_server(_app()) as url:
        assert httpx.get(f"{url}/v1/jobs/nope").status_code == 404
        assert httpx.delete(f"{url}/v1/jobs/nope").status_code == 404


def test_frames_feed_the_drift_monitor(clip: bytes, tmp_path: Path) -> None:
    from detforge.monitor.reference import ModelIdentity, ReferenceBuilder
    from detforge.monitor.signals import detection_stats, image_stats

    model = fake_model(FakeBackend.echo())
    ident = ModelIdentity(file="fake", sha256="0", classes=model.classes, imgsz=model.imgsz,
                          layout="end2end")
    builder = ReferenceBuilder(ident, conf=0.25, iou=0.7)
    for v in range(100, 200, 10):
        img = solid_image(48, 64, v)
        builder.add(image_stats(img), detection_stats(model.predict([img])[0], 64, 48))
    ref = builder.build(min_images=1).write(tmp_path / "ref.json")
    config = ServeConfig(model="fake", api_key_env=None, reference=str(ref), drift_min_images=5)
    with running_server(create_app(config, load=lambda: fake_model(FakeBackend.echo()))) as url:
        r = httpx.post(f"{url}/v1/videos?wait=true", content=clip,
                       headers={"content-type": "video/x-msvideo"}, timeout=60)
        assert r.status_code == 200
        text = httpx.get(f"{url}/metrics").text
    assert "detforge_drift_window_images 12.0" in text
    assert np.isfinite(float(text.split('detforge_drift_psi{signal="brightness"} ')[1].split()[0]))

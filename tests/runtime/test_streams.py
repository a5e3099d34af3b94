"""Live streams against a real loopback MJPEG server: reconnection with backoff, frames
dropped, a stream that never delivers a frame (exit 4), and paced replay (--realtime)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.stream_server import MjpegServer
from typer.testing import CliRunner

from detforge.cli import app
from detforge.runtime.pipeline import run_pipeline
from detforge.runtime.sources import open_source
from detforge.testing import FakeBackend, fake_model, random_image, write_image


def test_stream_reconnects_when_the_server_drops_and_comes_back() -> None:
    server = MjpegServer(frames=8)
    try:
        src = open_source(server.url, reconnect=8, backoff_s=0.05, live=False)
        got = []
        for item in src:
            got.append(item)
            if len(got) == 8:  # the first connection is over: take the server away a while
                server.stop()
                threading.Timer(0.3, server.start).start()
            if len(got) == 20:
                break
    finally:
        server.stop()
    assert len(got) == 20 and src.reconnects >= 1 and server.connections >= 2
    assert all(item.bgr is not None and item.bgr.shape == (48, 64, 3) for item in got)
    assert src.never_read == [] and src.skipped == []


def test_a_stream_that_never_delivers_is_listed() -> None:
    server = MjpegServer()
    url = server.url
    server.stop()  # the port is closed now
    src = open_source(url, reconnect=2, backoff_s=0.01)
    assert list(src) == []
    assert src.never_read == [url] and src.reconnects == 2
    assert "no frame was ever read (3 connection attempt(s)" in src.skipped[0].reason


def test_live_policy_drops_frames_inference_cannot_keep_up_with() -> None:
    server = MjpegServer(frames=40, gap_s=0.002)
    try:
        src = open_source(server.url, reconnect=0, backoff_s=0.01)
        model = fake_model(FakeBackend.echo(delay=0.1))  # much slower than the stream
        stats = run_pipeline(model, src, [_NullSink()], batch=1, progress=False, workers=1)
    finally:
        server.stop()
    assert src.frames_read == 40 and src.dropped > 0
    assert stats.images + src.dropped == src.frames_read


class _NullSink:
    needs_image = False

    def write(self, prediction: object) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_predict_exits_4_when_no_frame_was_ever_read(tiny_model_path: Path,
                                                     tmp_path: Path) -> None:
    server = MjpegServer()
    url = server.url
    server.stop()
    res = CliRunner().invoke(app, ["predict", str(tiny_model_path), url, "--out",
                                   str(tmp_path / "d.jsonl"), "--reconnect", "1",
                                   "--no-progress", "--device", "cpu"])
    assert res.exit_code == 4, res.output
    assert "no frame was ever read" in res.output


def test_predict_reports_stream_counters(tiny_model_path: Path, tmp_path: Path) -> None:
    server = MjpegServer(frames=12)
    try:
        res = CliRunner().invoke(app, ["predict", str(tiny_model_path), server.url, "--out",
                                       str(tmp_path / "d.jsonl"), "--reconnect", "0",
                                       "--no-progress", "--device", "cpu", "--no-live"])
    finally:
        server.stop()
    assert res.exit_code == 0, res.output
    assert "stream: 12 frames read, 0 dropped" in res.output
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 12


def test_realtime_replay_drops_late_frames(tmp_path: Path) -> None:
    for i in range(30):
        write_image(tmp_path / "image_2" / f"{i:06d}.png", random_image(32, 48, seed=i))
    src = open_source(tmp_path / "image_2", realtime=100.0)  # 10 ms a frame
    model = fake_model(FakeBackend.echo(delay=0.05))  # 50 ms a batch: always late
    stats = run_pipeline(model, src, [_NullSink()], batch=1, progress=False, workers=1)
    assert src.dropped > 0 and stats.images + src.dropped == 30
    with pytest.raises(Exception, match="--realtime must be positive"):
        open_source(tmp_path / "image_2", realtime=0.0)


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from detforge.testing import tiny_onnx_model

    return tiny_onnx_model(tmp_path_factory.mktemp("stream-model") / "tiny.onnx")

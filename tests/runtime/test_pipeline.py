"""The pipelined engine, run on FakeBackend: order, back-pressure, skips, Ctrl-C, fast decode."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from detforge.core.errors import BackendError, ConfigError
from detforge.runtime.backend import InputSpec, RawOutput
from detforge.runtime.pipeline import run_pipeline
from detforge.runtime.sinks import JsonlSink, Prediction, partial_path, read_jsonl
from detforge.runtime.sources import SourceItem, open_source
from detforge.testing import FakeBackend, fake_model, solid_image, write_image


class ListSink:
    needs_image = False

    def __init__(self) -> None:
        self.items: list[Prediction] = []
        self.closed = False

    def write(self, prediction: Prediction) -> None:
        self.items.append(prediction)

    def close(self) -> None:
        self.closed = True


def _folder(tmp_path: Path, n: int) -> Path:
    for i in range(n):  # grey level i+1 identifies the image (FakeBackend.echo scores it)
        write_image(tmp_path / "imgs" / f"{i:03d}.png", solid_image(64, 64, i + 1))
    return tmp_path / "imgs"


def _grey(pred: Prediction) -> int:
    return int(round(float(pred.detections.scores[0]) * 255))


@pytest.mark.parametrize(("batch", "dynamic", "workers"), [
    (1, True, 1), (4, True, 3), (4, False, 2), (7, True, 4)],
    ids=["b1", "b4-dynamic", "b4-fixed", "b7-w4"])
def test_order_is_input_order(tmp_path: Path, batch: int, dynamic: bool, workers: int) -> None:
    backend = FakeBackend.echo()
    sink = ListSink()
    stats = run_pipeline(fake_model(backend), open_source(_folder(tmp_path, 23)), [sink],
                         batch=batch, dynamic=dynamic, workers=workers, progress=False)
    assert [_grey(p) for p in sink.items] == list(range(1, 24))
    assert stats.images == 23 and stats.skipped == 0 and sink.closed
    assert max(backend.batch_sizes) <= batch
    if not dynamic:
        assert backend.batch_sizes[1:-1] == [batch] * (len(backend.batch_sizes) - 2)


def test_back_pressure_bounds_the_decode_queue() -> None:
    def items():  # an endless source: only back-pressure keeps memory flat
        i = 0
        while True:
            yield SourceItem(source=f"f{i}", frame=i, bgr=solid_image(64, 64, i % 250 + 1))
            i += 1
            if i == 60:
                return

    backend = FakeBackend.echo(delay=0.01)
    sink = ListSink()
    stats = run_pipeline(fake_model(backend), items(), [sink], batch=2, workers=2,
                         queue_size=3, progress=False)
    assert stats.images == 60
    assert 1 <= stats.max_queue <= 3


def test_unreadable_files_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 5)
    (folder / "002b.jpg").write_bytes(b"not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    sink = ListSink()
    stats = run_pipeline(fake_model(FakeBackend.echo()), open_source(folder), [sink], batch=2,
                         progress=False)
    assert stats.images == 5 and stats.skipped == 2
    assert sorted(Path(s).name for s, _ in stats.skipped_sources) == ["002b.jpg", "empty.png"]
    assert "not a decodable image" in stats.skipped_sources[0][1]
    assert [_grey(p) for p in sink.items] == [1, 2, 3, 4, 5]


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt during the test, whatever this process inherited.

    A process started in the background by a non-interactive shell (``make test &``, CI
    runners, nohup-style scripts) inherits SIGINT as ignored, and Python then installs no
    KeyboardInterrupt handler: the SIGINT the test sends is dropped and the run goes on to
    the last image. That, not the pipeline, is what made this test fail on a loaded
    machine; a user's Ctrl-C in a terminal always arrives with the default handler.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("inherited", [signal.default_int_handler, signal.SIG_IGN],
                         ids=["foreground", "background-job"])
@pytest.mark.parametrize("partial", [False, True], ids=["discard", "keep-partial"])
def test_keyboard_interrupt_never_commits_the_output(tmp_path: Path, partial: bool,
                                                     inherited: Any,
                                                     request: pytest.FixtureRequest) -> None:
    previous = signal.signal(signal.SIGINT, inherited)  # as the process found it at start
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    request.getfixturevalue("ctrl_c_raises")
    # call 1 is the warm-up; call 4 sends SIGINT, as Ctrl-C does
    backend = FakeBackend.echo(interrupt_on_call=4, delay=0.05)
    out = tmp_path / "out.jsonl"
    model = fake_model(backend)
    keep = partial_path(out) if partial else None
    stats = run_pipeline(model, open_source(_folder(tmp_path, 40)),
                         [JsonlSink(out, model.classes, partial=keep)], batch=2, dynamic=False,
                         progress=False)
    assert stats.interrupted
    assert not out.exists()  # an unfinished run never looks like a result
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    if not partial:
        return
    got = read_jsonl(tmp_path / "out.partial.jsonl")
    # every batch submitted before the interrupt is finished and written, in order, and
    # reading stopped well before the end
    assert len(got) == stats.images
    assert 6 <= len(got) < 30
    assert [_grey(p) for p in got] == list(range(1, len(got) + 1))


def test_a_failing_sink_leaves_no_output(tmp_path: Path) -> None:
    class Full(JsonlSink):
        def write(self, prediction: Prediction) -> None:
            if _grey(prediction) == 7:
                raise OSError(28, "No space left on device")
            super().write(prediction)

    out = tmp_path / "out.jsonl"
    model = fake_model(FakeBackend.echo())
    with pytest.raises(OSError, match="No space"):
        run_pipeline(model, open_source(_folder(tmp_path, 12)), [Full(out, model.classes)],
                     batch=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_results_are_in_original_pixels(tmp_path: Path) -> None:
    write_image(tmp_path / "wide.png", solid_image(50, 200, 200))
    sink = ListSink()
    run_pipeline(fake_model(FakeBackend.echo()), open_source(tmp_path / "wide.png"), [sink],
                 batch=1, progress=False)
    [pred] = sink.items
    assert (pred.width, pred.height) == (200, 50)
    np.testing.assert_allclose(pred.detections.xyxy[0], [0, 0, 200, 50])


def _bright_box(batch: np.ndarray) -> list[np.ndarray]:
    """end2end output: the bounding box of the bright pixels of each input."""
    out = np.zeros((len(batch), 1, 6), np.float32)
    for i, img in enumerate(batch):
        ys, xs = np.nonzero(img.mean(0) > 0.5)
        if len(xs):  # the warm-up batch is blank
            out[i, 0] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9, 0)
    return [out]


@pytest.mark.parametrize(("hw", "box"), [((480, 640), (96, 120, 304, 360)),
                                         ((750, 1000), (200, 152, 640, 520))])
def test_pipeline_reports_original_pixels_with_fast_decode(
        tmp_path: Path, hw: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    img = np.zeros((*hw, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    cv2.imwrite(str(tmp_path / "marker.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    results = {}
    for fast in (False, True):
        sink = ListSink()
        backend = FakeBackend(_bright_box, input_spec=InputSpec(height=320, width=320,
                                                                 max_batch=None))
        run_pipeline(fake_model(backend), open_source(tmp_path / "marker.jpg"), [sink],
                     batch=1, progress=False, fast_decode=fast)
        [pred] = sink.items
        assert (pred.height, pred.width) == hw
        results[fast] = pred.detections.xyxy[0]
    np.testing.assert_allclose(results[True], box, atol=4)
    np.testing.assert_allclose(results[True], results[False], atol=4)


class _StreamBackend(FakeBackend):
    """Accepts concurrent calls; records how many overlapped and finishes them out of order
    (odd calls slower), so the pipeline has to restore the order."""

    def __init__(self) -> None:
        super().__init__(FakeBackend.echo()._outputs)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def concurrent(self, streams: int) -> FakeBackend:
        return self

    def infer(self, batch: NDArray[np.float32]) -> RawOutput:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            slow = len(self.batch_sizes) % 2
        time.sleep(0.03 if slow else 0.005)
        try:
            return super().infer(batch)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_streams_run_batches_at_once_and_keep_the_order(tmp_path: Path, streams: int) -> None:
    backend = _StreamBackend()
    model = fake_model(backend)
    sink = ListSink()
    stats = run_pipeline(model, open_source(_folder(tmp_path, 24)), [sink], batch=2,
                         dynamic=False, streams=streams, progress=False)
    assert [_grey(p) for p in sink.items] == list(range(1, 25))
    assert stats.streams == streams and stats.batch_size == 2
    assert backend.most == streams


def test_a_backend_without_streams_runs_one(tmp_path: Path) -> None:
    model = fake_model(FakeBackend.echo())
    stats = run_pipeline(model, open_source(_folder(tmp_path, 4)), [], streams=2,
                         progress=False)
    assert stats.streams == 1 and stats.images == 4


def test_bad_streams_are_refused(tmp_path: Path) -> None:
    model = fake_model(FakeBackend.echo())
    with pytest.raises(ConfigError, match="streams must be a positive integer"):
        run_pipeline(model, open_source(_folder(tmp_path, 1)), [], streams=0, progress=False)


def test_a_failing_stream_stops_the_run_with_its_error(tmp_path: Path) -> None:
    def boom(batch: NDArray[np.float32]) -> RawOutput:
        raise BackendError("inference failed on purpose")

    backend = _StreamBackend()
    backend._outputs = boom
    with pytest.raises(BackendError, match="on purpose"):
        run_pipeline(fake_model(backend), open_source(_folder(tmp_path, 12)), [], batch=2,
                     streams=2, warmup=False, progress=False)

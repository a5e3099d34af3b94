"""The batching worker on its own: batches, per-request thresholds, overload, drain, failure."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from detforge.core.errors import BackendError
from detforge.runtime.model import Model
from detforge.serve.batcher import Batcher, NotReady, Overloaded
from detforge.testing import FakeBackend, fake_model, solid_image


class Gate:
    """An echo backend function that blocks while the gate is closed (after warm-up)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.armed = False
        self.echo = FakeBackend.echo()

    def __call__(self, batch: NDArray[np.float32]) -> Any:
        if self.armed:
            self.entered.set()
            if not self.open.wait(10):
                raise TimeoutError("gate never opened")
        return self.echo.infer(batch)


def _started(model: Model, **kwargs: Any) -> Batcher:
    batcher = Batcher(lambda: model, **kwargs)
    batcher.start()
    assert batcher.wait_ready(10)
    return batcher


def _items(model: Model, values: list[int]) -> list[Any]:
    return [model.preprocess(solid_image(64, 64, v)) for v in values]


def test_concurrent_jobs_share_batches_and_keep_their_thresholds() -> None:
    backend = FakeBackend.echo(delay=0.02)
    model = fake_model(backend)
    batcher = _started(model, max_batch=4, max_wait_s=0.2, warmup=False)
    try:
        values = [40, 80, 120, 160, 200, 240]
        futures = [batcher.submit(_items(model, [v]), conf=0.5 if v < 128 else 0.0)
                   for v in values]
        results = [f.result(10)[0] for f in futures]
    finally:
        batcher.close()
    assert sum(backend.batch_sizes) == len(values) and len(backend.batch_sizes) < len(values)
    assert max(backend.batch_sizes) <= 4
    for v, det in zip(values, results, strict=True):
        if v < 128:  # scored v/255 < 0.5: filtered by this job's own threshold
            assert len(det) == 0
        else:
            assert det.scores[0] == pytest.approx(v / 255, abs=1e-3)
            np.testing.assert_allclose(det.xyxy[0], [0, 0, 64, 64], atol=0.5)


def test_multi_image_job_spans_batches_in_order() -> None:
    model = fake_model(FakeBackend.echo())
    batcher = _started(model, max_batch=2, max_wait_s=0.0, warmup=False)
    try:
        values = [10, 60, 110, 160, 210]
        dets = batcher.submit(_items(model, values)).result(10)
    finally:
        batcher.close()
    assert [round(float(d.scores[0]) * 255) for d in dets] == values


def test_full_queue_raises_overloaded_then_recovers() -> None:
    gate = Gate()
    model = fake_model(FakeBackend(gate))
    batcher = _started(model, max_batch=1, max_wait_s=0.0, max_queue=2)
    gate.armed = True
    try:
        first = batcher.submit(_items(model, [50]))
        assert gate.entered.wait(10)
        queued = [batcher.submit(_items(model, [v])) for v in (100, 150)]
        assert batcher.queue_depth == 2
        with pytest.raises(Overloaded, match="queue holds 2 of 2 images") as info:
            batcher.submit(_items(model, [200]))
        assert info.value.retry_after >= 1
        gate.open.set()
        assert len(first.result(10)) == 1 and all(len(f.result(10)) == 1 for f in queued)
        assert len(batcher.submit(_items(model, [200])).result(10)) == 1
    finally:
        gate.open.set()
        batcher.close()


def test_close_drains_queue_and_releases_model() -> None:
    gate = Gate()
    backend = FakeBackend(gate)
    model = fake_model(backend)
    batcher = _started(model, max_batch=2, max_wait_s=0.0)
    gate.armed = True
    futures = [batcher.submit(_items(model, [v])) for v in (30, 60, 90)]
    assert gate.entered.wait(10)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(NotReady, match="shutting down"):
        batcher.submit(_items(model, [1]))
    gate.open.set()
    closer.join(10)
    assert all(len(f.result(0)) == 1 for f in futures)
    assert backend.closed and batcher.state == "closed"


def test_load_failure_is_reported() -> None:
    seen: list[BaseException] = []

    def load() -> Model:
        raise BackendError("m.onnx: not an ONNX file")

    batcher = Batcher(load, on_failure=seen.append)
    batcher.start()
    assert not batcher.wait_ready(10)
    assert batcher.state == "failed" and isinstance(seen[0], BackendError)
    with pytest.raises(NotReady, match="failed to load: BackendError: m.onnx"):
        batcher.check_room(1)


def test_inference_error_fails_only_that_batch() -> None:
    calls: list[int] = []

    def flaky(batch: NDArray[np.float32]) -> Any:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: out of memory")
        return FakeBackend.echo().infer(batch)

    model = fake_model(FakeBackend(flaky))
    batcher = _started(model, max_batch=4, max_wait_s=0.0, warmup=False)
    try:
        with pytest.raises(BackendError, match="inference failed on a batch of 1: RuntimeError"):
            batcher.submit(_items(model, [10])).result(10)
        assert len(batcher.submit(_items(model, [10])).result(10)) == 1
    finally:
        batcher.close()

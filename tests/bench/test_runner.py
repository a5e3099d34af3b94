"""run_benchmark on tiny ONNX models and FakeBackend: rows, skips, mAP, bad inputs."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import pytest

from detforge.bench import run_benchmark
from detforge.bench.memory import RssSampler, current_rss_bytes
from detforge.bench.table import format_markdown, format_table
from detforge.core.errors import ConfigError, DetforgeError
from detforge.runtime.backend import InputSpec
from detforge.testing import FakeBackend, fake_model, tiny_onnx_model

FAST: dict[str, Any] = {"repeats": 2, "seconds": 0.02, "progress": False}


def test_rows_side_by_side(bench_models: dict[str, Path], bench_images: Path) -> None:
    fake = fake_model(FakeBackend.echo())
    result = run_benchmark([bench_models["dynamic"], bench_models["fixed"], fake],
                           source=bench_images, batches=(1, 3), **FAST)
    keys = [(r.model, r.format, r.batch) for r in result.rows]
    assert keys == [("dynamic.onnx", "onnx", 1), ("dynamic.onnx", "onnx", 3),
                    ("fixed.onnx", "onnx", 1), ("model2", "fake", 1), ("model2", "fake", 3)]
    assert result.skipped == ["fixed.onnx batch 3: the model's batch is fixed at 1; "
                              "re-export it with a dynamic batch"]
    for row in result.rows:
        assert row.precision == "fp32" and row.imgsz == (64, 64) and row.map50_95 is None
        assert row.model_only_ips > 0 and row.end_to_end_ips > 0
        assert 0 < row.p50_ms <= row.p95_ms <= row.p99_ms
        assert row.peak_rss_mb > 10
    # two repetitions of one pass over the 4 images, each batch of 3 built from 3 images
    fake_backend = fake.backend
    assert isinstance(fake_backend, FakeBackend) and 3 in fake_backend.batch_sizes
    assert not fake_backend.closed  # a model passed in stays open
    assert result.settings["repeats"] == 2 and result.settings["source_images"] == 4
    table = format_table(result.rows)
    assert table.splitlines()[0].startswith("model") and "dynamic.onnx" in table
    assert format_markdown(result.rows).count("\n") == len(result.rows) + 1


def test_imgsz_list_and_fixed_size_skip(tmp_path: Path, bench_images: Path) -> None:
    dyn = tiny_onnx_model(tmp_path / "any.onnx")
    fixed = fake_model(FakeBackend.echo(input_spec=InputSpec(height=64, width=64,
                                                             max_batch=None)))
    result = run_benchmark([dyn, fixed], source=bench_images, imgszs=[(64, 64), (32, 64)],
                           **FAST)
    assert [(r.model, r.imgsz) for r in result.rows] == [("any.onnx", (64, 64)),
                                                        ("model1", (64, 64))]
    assert result.skipped == ["any.onnx 32x64: the model's input is fixed at 64x64; "
                              "re-export it at this size or with a dynamic input",
                              "model1 32x64: the model's input is fixed at 64x64; re-export "
                              "it at this size or with a dynamic input"]


def test_duplicate_names_use_paths(tmp_path: Path, bench_images: Path) -> None:
    a = tiny_onnx_model(tmp_path / "a" / "m.onnx")
    b = tiny_onnx_model(tmp_path / "b" / "m.onnx")
    result = run_benchmark([a, b], source=bench_images, **FAST)
    assert [r.model for r in result.rows] == [str(a), str(b)]


def test_map_with_dataset(tmp_path: Path) -> None:
    from detforge.data.synth import class_names, synthesize

    synthesize(tmp_path / "ds", images=6, classes=2, size=(64, 64), fmt="yolo")
    model = tiny_onnx_model(tmp_path / "m.onnx", classes=class_names(2))
    result = run_benchmark([model], source=tmp_path / "ds", data=tmp_path / "ds", batches=(1, 2),
                           **FAST)
    maps = [r.map50_95 for r in result.rows]
    assert maps[0] is not None and maps[0] == maps[1] and 0.0 <= maps[0] <= 1.0


@pytest.mark.parametrize(("kwargs", "expectation"), [
    ({}, contextlib.nullcontext()),
    ({"models": []}, pytest.raises(ConfigError, match="at least one model")),
    ({"batches": ()}, pytest.raises(ConfigError, match="positive integers")),
    ({"repeats": 0}, pytest.raises(ConfigError, match="repeats")),
    ({"seconds": 0.0}, pytest.raises(ConfigError, match="seconds")),
    ({"source": "nowhere/*.jpg"}, pytest.raises(ConfigError, match="matched no image")),
    ({"source": "rtsp://cam/1"}, pytest.raises(ConfigError, match="never ends")),
    ({"imgszs": [(32, 32)], "fixed": True}, pytest.raises(ConfigError,
                                                         match="nothing to measure")),
    ({"imgszs": [(50, 64)], "fake": True}, pytest.raises(ConfigError,
                                                        match="multiple of the model stride")),
    ({"models": ["missing.onnx"]}, pytest.raises(ConfigError, match="no such model file")),
], ids=["ok", "no-models", "no-batches", "repeats", "seconds", "empty-source", "stream",
        "all-skipped", "stride", "missing-model"])
def test_bad_inputs(kwargs: dict[str, object], expectation: contextlib.AbstractContextManager[
        object], bench_models: dict[str, Path], bench_images: Path) -> None:
    args: dict[str, object] = {"source": bench_images, **FAST}
    fixed = kwargs.pop("fixed", False)
    models = kwargs.pop("models", [bench_models["fixed" if fixed else "dynamic"]])
    if kwargs.pop("fake", False):  # any input size
        models = [fake_model(FakeBackend.echo(input_spec=InputSpec(height=None, width=None,
                                                                   max_batch=None)))]
    args.update(kwargs)
    with expectation:
        run_benchmark(models, **args)  # type: ignore[arg-type]


def test_unreadable_source(tmp_path: Path, bench_models: dict[str, Path]) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DetforgeError, match="no readable image"):
        run_benchmark([bench_models["dynamic"]], source=tmp_path, **FAST)


def test_rss_sampler_sees_an_allocation() -> None:
    before = current_rss_bytes()
    assert before is not None and before > 0
    with RssSampler(interval_s=0.001) as rss:
        block = b"x" * 64 * 2**20
        time.sleep(0.05)  # the sampler thread needs the GIL, which the copy above holds
        del block
    assert rss.peak_mb >= before / 2**20 + 50
    assert math.isfinite(rss.peak_mb)


def test_fast_decode_reaches_the_end_to_end_runs(bench_images: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from detforge.runtime import reduced_decode

    calls: list[Path] = []
    real = reduced_decode.decode_reduced

    def counting(path: Path, size: tuple[int, int], **kwargs: Any) -> Any:
        calls.append(Path(path))
        return real(path, size, **kwargs)

    monkeypatch.setattr(reduced_decode, "decode_reduced", counting)
    model = fake_model(FakeBackend.echo())
    plain = run_benchmark([model], source=bench_images, **FAST)
    assert not calls and plain.settings["fast_decode"] is False
    fast = run_benchmark([model], source=bench_images, fast_decode=True, **FAST)
    assert fast.settings["fast_decode"] is True
    assert sorted(set(calls)) == sorted(bench_images.glob("*.jpg"))
    assert fast.rows[0].end_to_end_ips > 0

"""`serve --reference`: drift gauges per signal and class, histograms, and refusals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from detforge.monitor import build_reference
from detforge.serve import ServeConfig, create_app
from detforge.testing import random_image, tiny_onnx_model

from .conftest import encode, running_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny model, a folder of bright-ish images, and the model's reference on them."""
    root = tmp_path_factory.mktemp("drift-serve")
    model = tiny_onnx_model(root / "tiny.onnx")
    images = root / "images"
    images.mkdir()
    for i in range(30):
        (images / f"{i:02d}.png").write_bytes(encode(random_image(48, 64, seed=i)))
    ref = build_reference(model, _as_dataset(images), split=None, device="cpu", min_images=1)
    return model, images, ref.write(root / "ref.json")


def _as_dataset(images: Path) -> Path:
    """A YOLO dataset over ``images`` (no labels needed for a reference)."""
    root = images.parent / "ds"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for p in images.iterdir():
        (root / "images" / p.name).write_bytes(p.read_bytes())
        (root / "labels" / f"{p.stem}.txt").write_text("")
    (root / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [cat, dog]\n")
    return root


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from the exposition text (NaN stays NaN)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{(.*)\}})? (\S+)$", line)
        if m and ",".join(sorted((m.group(2) or "").split(","))) == want:
            return float(m.group(3))
    raise KeyError(f"{name}{{{want}}} not in /metrics")


def _post(url: str, image: np.ndarray) -> None:
    r = httpx.post(f"{url}/v1/detect", content=encode(image),
                   headers={"content-type": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text


def test_drift_gauges_follow_shifted_inputs(served: tuple[Path, Path, Path]) -> None:
    model, _, ref = served
    config = ServeConfig(model=str(model), reference=str(ref), drift_window=40,
                         drift_min_images=20, device="cpu", api_key_env=None)
    with running_server(create_app(config)) as url:
        for i in range(10):
            _post(url, random_image(48, 64, seed=i))
        text = httpx.get(f"{url}/metrics").text
        assert math.isnan(metric(text, "detforge_drift_psi", signal="brightness"))
        assert metric(text, "detforge_drift_window_images") == 10
        assert metric(text, "detforge_drift_threshold", signal="score") == 0.2
        for i in range(30):
            _post(url, (random_image(48, 64, seed=100 + i) * 0.3).astype(np.uint8))
        text = httpx.get(f"{url}/metrics").text
        for signal in ("brightness", "score"):
            assert metric(text, "detforge_drift_psi", signal=signal) > 0.2
            assert metric(text, "detforge_drift_ks", signal=signal) > 0.3
        assert metric(text, "detforge_drift_psi", signal="resolution") < 0.2
        assert metric(text, "detforge_class_share", **{"class": "dog", "source": "live"}) > 0
        assert metric(text, "detforge_detection_score_count") == metric(
            text, "detforge_detections_by_class_total", **{"class": "dog"}) + metric(
            text, "detforge_detections_by_class_total", **{"class": "cat"})
        assert metric(text, "detforge_detections_per_image_count") == 40
        assert "detforge_drift_class_psi{" in text


def test_no_reference_no_drift_metrics(served: tuple[Path, Path, Path]) -> None:
    config = ServeConfig(model=str(served[0]), device="cpu", api_key_env=None)
    with running_server(create_app(config)) as url:
        text = httpx.get(f"{url}/metrics").text
    assert "detforge_drift_psi" not in text and "detforge_model_ready 1.0" in text


def test_a_reference_of_another_model_stops_the_server(served: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    from detforge.serve.batcher import Batcher

    other = tiny_onnx_model(tmp_path / "other.onnx", classes=("car", "bus"))
    failures: list[BaseException] = []
    app = create_app(ServeConfig(model=str(other), reference=str(served[2]), device="cpu",
                                 api_key_env=None), on_failure=failures.append)
    with running_server(app) as url:
        batcher: Batcher = app.state.detforge.batcher
        batcher.wait_ready(30)
        r = httpx.get(f"{url}/ready")
    assert r.status_code == 503 and "built for classes ['cat', 'dog']" in r.json()["detail"]
    assert failures and "car" in str(failures[0])


def test_cli_refuses_a_malformed_reference_in_one_line(served: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from detforge.cli import app

    bad = tmp_path / "ref.json"
    bad.write_text('{"format": "detforge-reference/1"}')
    res = CliRunner().invoke(app, ["serve", str(served[0]), "--reference", str(bad)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "invalid reference" in lines[0]

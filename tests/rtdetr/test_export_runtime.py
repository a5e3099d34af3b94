"""The RT-DETR ONNX: layouts, TensorRT rules per target, and every consumer that runs it
(detforge's runtime, Ultralytics' own predict, ``detforge predict``/``benchmark``/``serve``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from tests.rtdetr.conftest import TrainedRTDETR
from typer.testing import CliRunner

from detforge.cli import app
from detforge.runtime import load_model
from detforge.runtime.metadata import read_onnx_meta

pytestmark = [pytest.mark.slow, pytest.mark.train]
runner = CliRunner()


def _val(data: Path, n: int = 4) -> list[Path]:
    return sorted((data / "images" / "val").iterdir())[:n]


def test_export_writes_the_rtdetr_layout(rtdetr_trained: TrainedRTDETR,
                                         rtdetr_onnx: Path) -> None:
    meta = read_onnx_meta(rtdetr_onnx)
    assert meta.layout == "rtdetr" and meta.imgsz == rtdetr_trained.imgsz
    assert not meta.letterbox.scale_fill and meta.dynamic_batch
    graph = onnx.load(str(rtdetr_onnx)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == [
        "output"]
    dims = graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [50, 6]
    import onnxruntime as ort

    session = ort.InferenceSession(str(rtdetr_onnx), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the batch is dynamic
        x = np.random.default_rng(0).random((batch, 3, *meta.imgsz), dtype=np.float32)
        out = session.run(None, {"input": x})[0]
        assert out.shape == (batch, 50, 6)
        assert (np.diff(out[..., 4], axis=1) <= 0).all()  # best first
        assert (out[..., 2] >= out[..., 0]).all() and (out[..., 3] >= out[..., 1]).all()


@pytest.mark.parametrize(("layout", "code", "says"), [
    ("raw", 2, "has no raw YOLO head"),
    ("deepstream", 0, "--layout deepstream writes the rtdetr layout"),
    ("end2end", 0, "--layout end2end writes the rtdetr layout"),
], ids=["raw-refused", "deepstream", "end2end"])
def test_layouts_for_rtdetr(rtdetr_trained: TrainedRTDETR, tmp_path: Path, layout: str,
                            code: int, says: str) -> None:
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(rtdetr_trained.pt), "--out", str(out),
                                 "--layout", layout, "--batch", "1", "--no-simplify"])
    assert result.exit_code == code, result.output
    assert says in (result.output if code == 0 else result.stderr)
    if code == 0:
        assert read_onnx_meta(out).layout == "rtdetr"


def test_targets_pick_the_opset_and_pass_the_engine_check(rtdetr_trained: TrainedRTDETR,
                                                          tmp_path: Path) -> None:
    """TensorRT 8.5 (Xavier) lacks LayerNormalization: opset 16 there, 17 elsewhere; the
    engine check of every target passes; TensorRT 8.2 (Nano) is refused, naming GridSample."""
    out = tmp_path / "xavier.onnx"
    made = runner.invoke(app, ["export", str(rtdetr_trained.pt), "--out", str(out),
                               "--target", "xavier-nx", "--target", "orin-nano", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["opset"] == 16
    for target in ("xavier-nx", "orin-nano", "t4", "rtx-50"):
        checked = runner.invoke(app, ["engine", "check", str(out), "--target", target])
        assert checked.exit_code == 0, (target, checked.output)
    nano = runner.invoke(app, ["export", str(rtdetr_trained.pt), "--out",
                               str(tmp_path / "nano.onnx"), "--target", "jetson-nano"])
    assert nano.exit_code != 0 and not (tmp_path / "nano.onnx").exists()
    assert "GridSample" in nano.stderr and "TensorRT 8.2.1" in nano.stderr


def test_ultralytics_predict_on_the_same_onnx_gives_the_same_boxes(
        rtdetr_trained: TrainedRTDETR, tmp_path: Path) -> None:
    """``YOLO("m.onnx")`` reads the metadata detforge writes: same letterbox, same rows."""
    from ultralytics import YOLO

    from detforge.core.imageio import read_image_bgr

    out = tmp_path / "b1.onnx"  # Ultralytics letterboxes exactly only for a fixed batch
    assert runner.invoke(app, ["export", str(rtdetr_trained.pt), "--out", str(out),
                               "--batch", "1"]).exit_code == 0
    ours = load_model(out, device="cpu", conf=0.05)
    ref = YOLO(str(out), task="detect")
    compared = 0
    for f in _val(rtdetr_trained.data, 6):
        bgr = read_image_bgr(f)
        assert bgr is not None
        got = ours.predict([np.ascontiguousarray(bgr[..., ::-1])])[0]
        res = ref.predict(bgr, conf=0.05, imgsz=rtdetr_trained.imgsz, verbose=False)[0].boxes
        want = res.xyxy.numpy()
        assert len(got) == len(want)
        diff = np.abs(got.xyxy[:, None, :] - want[None, :, :]).max(-1)
        same = (diff <= 1.0) & (got.class_ids[:, None] == res.cls.numpy()[None, :])
        assert same.any(1).all()
        compared += len(got)
    assert compared >= 20


def test_torch_backend_preprocesses_as_training_did(rtdetr_trained: TrainedRTDETR) -> None:
    model = load_model(rtdetr_trained.pt, device="cpu")
    assert model.meta.layout == "rtdetr-normalized" and model.imgsz == rtdetr_trained.imgsz
    assert not model.meta.letterbox.scale_fill  # trained letterboxed, not stretched


def test_predict_benchmark_and_serve_run_the_onnx(rtdetr_trained: TrainedRTDETR,
                                                  rtdetr_onnx: Path, tmp_path: Path) -> None:
    import httpx
    from tests.serve.conftest import running_server

    from detforge.serve import ServeConfig, create_app

    src = tmp_path / "src"
    src.mkdir()
    for f in _val(rtdetr_trained.data):
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out.jsonl"
    predicted = runner.invoke(app, ["predict", str(rtdetr_onnx), str(src), "--out", str(out),
                                    "--no-progress"])
    assert predicted.exit_code == 0, predicted.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4 and sum(len(r["detections"]) for r in records) > 0

    bench = tmp_path / "bench.json"
    ran = runner.invoke(app, ["benchmark", str(rtdetr_onnx), "--source", str(src), "--batch",
                              "1,2", "--json", str(bench), "--repeats", "1", "--seconds",
                              "0.05", "--no-progress"])
    assert ran.exit_code == 0, ran.output
    rows = json.loads(bench.read_text())["rows"]
    assert [r["imgsz"] for r in rows] == [list(rtdetr_trained.imgsz)] * 2
    assert all(r["end_to_end_ips"] > 0 for r in rows)

    config = ServeConfig(model=str(rtdetr_onnx), device="cpu", threads=1, max_batch=2,
                         api_key_env=None)
    with running_server(create_app(config)) as url, httpx.Client(base_url=url,
                                                                 timeout=60) as client:
        for _ in range(200):
            if client.get("/ready").status_code == 200:
                break
            import time

            time.sleep(0.05)
        files = [("images", (f.name, f.read_bytes(), "image/jpeg")) for f in _val(
            rtdetr_trained.data, 2)]
        resp = client.post("/v1/detect", files=files, params={"conf": 0.25})
    assert resp.status_code == 200, resp.text
    served = {r["filename"]: r["detections"] for r in resp.json()["results"]}
    expected = {r["source"].split("/")[-1]: r["detections"] for r in records}
    for name, dets in served.items():
        want = [d for d in expected[name] if d["score"] > 0.25]
        assert len(dets) == len(want)
        for got, ref in zip(dets, want, strict=True):
            np.testing.assert_allclose(got["xyxy"], ref["xyxy"], atol=0.05)

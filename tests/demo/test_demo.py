"""The demo chain end to end at toy size: every step runs, artifacts exist, reruns reuse,
its pages read like reports, and (the suite's network guard) nothing tries the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")
pytest.importorskip("lap")

from detforge.demo.pipeline import STEPS, DemoConfig, run_demo  # noqa: E402

from .test_report import _assert_reads_like_a_report, _parse  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.train]


def test_demo_runs_every_step_then_reuses(tmp_path: Path) -> None:
    cfg = DemoConfig(out=tmp_path / "demo", images=24, epochs=1, imgsz=160, video_frames=8)
    lines: list[str] = []
    summary = run_demo(cfg, echo=lines.append)
    assert [ln for ln in lines if ln.endswith("running")] == [f"[{n}] running" for n, _ in STEPS]
    for key in ("dataset", "run", "pt", "onnx", "int8_onnx", "engine_script", "video", "tracks"):
        assert Path(summary[key]).exists(), key
    assert json.loads((cfg.out / "summary.json").read_text()) == summary
    assert summary["figures"]["video_frames"] == cfg.video_frames
    assert summary["figures"]["parity_max_abs_diff"] < 1e-2
    assert set(summary["seconds"]) == {n for n, _ in STEPS}
    page = _parse((cfg.out / "index.html").read_text())
    _assert_reads_like_a_report(page)
    assert page.tags.count("svg") == 1 and "detforge demo" in page.text
    fidelity = _parse(Path(summary["fidelity_report"]).read_text())
    _assert_reads_like_a_report(fidelity)
    assert "INT8 quantisation" in " ".join(fidelity.text)

    again: list[str] = []
    assert run_demo(cfg, echo=again.append)["onnx"] == summary["onnx"]
    assert all("reused" in ln for ln in again)

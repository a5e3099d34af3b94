"""ONNX Runtime backend session settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detforge.runtime.backends.onnxruntime import OrtBackend
from detforge.testing import tiny_onnx_model


def test_idle_threads_do_not_spin(tmp_path: Path) -> None:
    """Spinning intra-op threads starve the pipeline's decode threads on a small CPU."""
    with OrtBackend(tiny_onnx_model(tmp_path / "m.onnx"), device="cpu", threads=2) as backend:
        opts = backend.session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
        (out,) = backend.infer(np.zeros((2, 3, 64, 64), np.float32))
        assert out.shape == (2, 6, 3)


def test_spin_is_passed_from_load_model_and_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from detforge.cli import app
    from detforge.runtime import load_model

    model = tiny_onnx_model(tmp_path / "m.onnx")
    for spin, expect in ((True, "1"), (False, "0")):
        with load_model(model, device="cpu", spin=spin) as m:
            opts = m.backend.session.get_session_options()
            assert opts.get_session_config_entry("session.intra_op.allow_spinning") == expect
    for cmd in ("predict", "benchmark"):
        result = CliRunner().invoke(app, [cmd, "--help"], terminal_width=200)
        assert "--spin" in result.output and "--no-spin" in result.output


def test_concurrent_streams_share_the_cores(tmp_path: Path) -> None:
    """Two streams on two cores: one extra single-thread session, built once, closed with
    the backend; it gives the same outputs as the full session."""
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    backend = OrtBackend(tiny_onnx_model(tmp_path / "m.onnx"), device="cpu", threads=2)
    stream = backend.concurrent(2)
    assert stream is not None and stream is backend.concurrent(2)
    assert stream.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(stream.infer(x)[0], backend.infer(x)[0], rtol=1e-6)
    assert backend.concurrent(1) is None  # one stream: the backend itself
    backend.close()
    assert not hasattr(stream, "session")
    with OrtBackend(tmp_path / "m.onnx", device="cpu", threads=1) as single:
        assert single.concurrent(2) is None  # nothing to split

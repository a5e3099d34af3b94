"""Benchmark fixtures: tiny ONNX models (no torch) and a handful of small images."""

from __future__ import annotations

from pathlib import Path

import pytest

from detforge.testing import random_image, tiny_onnx_model, write_image


@pytest.fixture(scope="session")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``dynamic``: 64x64 with a dynamic batch; ``fixed``: batch fixed at 1."""
    folder = tmp_path_factory.mktemp("bench-models")
    return {"dynamic": tiny_onnx_model(folder / "dynamic.onnx"),
            "fixed": tiny_onnx_model(folder / "fixed.onnx", dynamic_batch=False)}


@pytest.fixture(scope="session")
def bench_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small JPEGs of two sizes."""
    folder = tmp_path_factory.mktemp("bench-images")
    for i in range(4):
        write_image(folder / f"im{i}.jpg", random_image(48 + 16 * (i % 2), 64, seed=i))
    return folder

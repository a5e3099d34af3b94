"""Fixtures of the library tests: a generated library, a tiny detector, a tiny CLIP."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from detforge.library.synth import make_library, write_tiny_clip
from detforge.testing import tiny_onnx_model

TAGS = ("beach", "forest", "city")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX detector: bright pictures give ``dog`` boxes, dark ones none."""
    return tiny_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx",
                           classes=("cat", "dog"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCLIP model folder (skips when open_clip is absent)."""
    pytest.importorskip("open_clip")
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="session")
def tags_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tags") / "tags.txt"
    path.write_text("# test vocabulary\n" + "\n".join(TAGS) + "\n")
    return path


@pytest.fixture(scope="session")
def library_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The generated library, written once; tests that change files copy it."""
    pytest.importorskip("pillow_heif")
    pytest.importorskip("rawpy")
    root = tmp_path_factory.mktemp("master") / "Photos"
    return root, make_library(root)


@pytest.fixture
def library(library_master: tuple[Path, dict[str, Any]], tmp_path: Path
            ) -> tuple[Path, dict[str, Any]]:
    """A fresh copy of the library (mtimes kept) and its manifest with paths re-rooted."""
    src, manifest = library_master
    root = tmp_path / "Photos"
    shutil.copytree(src, root, copy_function=shutil.copy2)
    paths = {k: v.replace(str(src), str(root)) for k, v in manifest["paths"].items()}
    return root, {**manifest, "paths": paths}


@pytest.fixture(scope="session")
def indexed(library_master: tuple[Path, dict[str, Any]], tiny_model: Path, tiny_clip: Path,
            tags_file: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Path, dict[str, Any]]:
    """The master library indexed once with every phase: (root, db, manifest)."""
    from detforge.library import index_library

    root, manifest = library_master
    db = tmp_path_factory.mktemp("db") / "library.sqlite"
    summary = index_library(root, db=db, model=tiny_model, tagger=str(tiny_clip),
                            tags=tags_file, progress=False, video_every_s=0.5, workers=2)
    manifest = {**manifest, "summary": summary}
    return root, db, manifest

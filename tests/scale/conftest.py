"""Scale-out fixtures: one local Ray cluster (2 CPUs) for the whole test session.

Ray takes seconds to start, so the cluster is started once, by the first test that needs
it, and stopped when the session ends; every run in between finds Ray connected and uses
it, as a notebook would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from detforge.testing import random_image, tiny_onnx_model, write_image, write_video


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """The session's local cluster (its :class:`~detforge.scale.ClusterInfo`)."""
    pytest.importorskip("ray")
    from detforge.scale import Cluster

    with Cluster("local", num_cpus=2) as cluster:
        yield cluster.require()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX detector whose scores follow each image's exact pixels."""
    return tiny_onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 36 images of many sizes (JPEG and PNG), one corrupt file and a video."""
    root = tmp_path_factory.mktemp("photos")
    for i in range(32):
        h, w = 40 + 9 * i, 300 - 5 * i
        write_image(root / f"{i // 10}" / f"img_{i:02d}.jpg", random_image(h, w, seed=i))
    for i in range(4):
        write_image(root / "png" / f"p{i}.png", random_image(50 + i, 70, seed=100 + i))
    (root / "png" / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    write_video(root / "v" / "clip.avi", [random_image(40, 60, seed=s) for s in range(8)],
                fps=8)
    return root

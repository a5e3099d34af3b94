"""detforge's DeepStream parser: compiled here against stand-ins of the nvdsinfer headers
(the SDK's struct layouts), run on known tensors through ctypes, held equal to its numpy
twin, and built by the bundle's own Makefile the way a device builds it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from detforge.core.errors import BackendError
from detforge.deploy import parser as ds_parser
from detforge.deploy import verify_on_device as twin
from detforge.deploy.targets import TARGETS

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

NET_W, NET_H = 96, 64


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> ds_parser.HostParser:
    return ds_parser.HostParser(ds_parser.host_library(cache=tmp_path_factory.mktemp("lib")))


def _rows(*rows: list[float]) -> np.ndarray:
    return np.asarray(rows, np.float32).reshape(-1, 6)


@pytest.mark.parametrize(("rows", "thresholds", "want"), [
    # x1, y1, x2, y2, score, class -> class, left, top, width, height, confidence
    (_rows([10, 5, 30, 25, 0.9, 1]), [0.25, 0.25], [[1, 10, 5, 20, 20, 0.9]]),
    (_rows([-5, -3, 20, 70, 0.8, 0]), [0.25], [[0, 0, 0, 20, 64, 0.8]]),           # clipped
    (_rows([90, 10, 120, 30, 0.7, 0]), [0.25], [[0, 90, 10, 6, 20, 0.7]]),         # at the edge
    (_rows([100, 10, 120, 30, 0.7, 0]), [0.25], []),                               # outside
    (_rows([10, 5, 30, 25, 0.25, 0]), [0.25], [[0, 10, 5, 20, 20, 0.25]]),         # >= threshold
    (_rows([10, 5, 30, 25, 0.2499, 0]), [0.25], []),
    (_rows([10, 5, 30, 25, 0.5, 1]), [0.25, 0.6], []),                             # per class
    (_rows([10, 5, 30, 25, 0.9, 2]), [0.25, 0.25], []),                            # unknown class
    (_rows([10, 5, 30, 25, 0.9, -1]), [0.25], []),
    (_rows([10, 5, 30, 25, 0.9, 0.9999]), [0.25, 0.25], [[1, 10, 5, 20, 20, 0.9]]),  # lround
    (_rows([np.nan, 5, 30, 25, 0.9, 0], [10, 5, 30, 25, np.nan, 0]), [0.25], []),
    (_rows([10, 5, 10, 25, 0.9, 0]), [0.25], []),                                  # zero width
    (_rows([10, 5, 30, 25, 1.5, 0]), [0.25], [[0, 10, 5, 20, 20, 1.0]]),           # capped
], ids=["plain", "clip", "edge", "outside", "at-threshold", "below", "per-class", "class-range",
        "negative-class", "class-rounding", "nan", "degenerate", "score-cap"])
def test_parser_known_tensors(host: ds_parser.HostParser, rows: np.ndarray,
                              thresholds: list[float], want: list[list[float]]) -> None:
    got = host.parse(rows, NET_W, NET_H, thresholds)
    np.testing.assert_allclose(got, np.asarray(want, np.float32).reshape(-1, 6), atol=1e-6)
    twin_got = twin.parse_rows(rows, NET_W, NET_H, thresholds, len(thresholds))
    np.testing.assert_array_equal(got, twin_got)


def test_parser_equals_numpy_twin_on_random_tensors(host: ds_parser.HostParser) -> None:
    rng = np.random.default_rng(0)
    for seed in range(20):
        n = int(rng.integers(0, 400))
        xy = rng.uniform(-20, 120, (n, 2)).astype(np.float32)
        wh = rng.uniform(-5, 60, (n, 2)).astype(np.float32)
        rows = np.concatenate([xy, xy + wh, rng.uniform(0, 1, (n, 1)),
                               rng.integers(-1, 5, (n, 1))], axis=1).astype(np.float32)
        rows[rng.random(n) < 0.02, int(rng.integers(0, 6))] = np.nan
        thr = rng.uniform(0.1, 0.6, int(rng.integers(1, 5))).tolist()
        got = host.parse(rows, NET_W, NET_H, thr)
        np.testing.assert_array_equal(got, twin.parse_rows(rows, NET_W, NET_H, thr, len(thr)),
                                      err_msg=f"seed {seed}")


def test_parser_reads_fp16_outputs(host: ds_parser.HostParser) -> None:
    rows = _rows([10.5, 5.25, 30, 25, 0.75, 1], [1, 2, 3, 4, 0.1, 0])
    got = host.parse(rows.astype(np.float16), NET_W, NET_H, [0.25, 0.25])
    np.testing.assert_allclose(got, [[1, 10.5, 5.25, 19.5, 19.75, 0.75]], atol=1e-3)


@pytest.mark.parametrize(("tensor", "layer"), [
    (np.zeros((10, 7), np.float32), "output"),      # not 6 columns: no layout matches
    (np.zeros((60,), np.float32), "output"),        # 1-D
    (np.zeros((10, 6), np.float32), "scores"),      # the only output, whatever its name
], ids=["width-7", "one-dim", "other-name"])
def test_parser_refuses_unknown_layouts(host: ds_parser.HostParser, tensor: np.ndarray,
                                        layer: str) -> None:
    if layer != "output":
        assert len(host.parse(tensor, NET_W, NET_H, [0.25], layer=layer)) == 0
        return
    with pytest.raises(BackendError, match="refused"):
        host.parse(tensor, NET_W, NET_H, [0.25], layer=layer)


def test_cluster_nms_is_nvinfers(host: ds_parser.HostParser) -> None:
    """Per class, by score, IoU <= threshold kept, topk per class, class order out."""
    objs = np.array([[1, 0, 0, 10, 10, 0.9], [1, 1, 1, 10, 10, 0.8], [1, 30, 30, 5, 5, 0.7],
                     [0, 0, 0, 10, 10, 0.6], [0, 50, 50, 4, 4, 0.95], [0, 60, 50, 4, 4, 0.3],
                     [3, 0, 0, 5, 5, 0.99]], np.float32)
    out = twin.cluster_nms(objs, num_classes=2, iou_threshold=0.5, topk=2)
    np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 1])  # class 3 is unconfigured
    np.testing.assert_allclose(out[:, 5], [0.95, 0.6, 0.9, 0.7])  # topk=2 cut 0.3; NMS 0.8


def test_unclustered_is_nvinfers_cluster_mode_4() -> None:
    """No NMS: per class by score, topk per class, unconfigured classes and scores below the
    pre-cluster threshold dropped, no post-cluster threshold (fillUnclusteredOutput)."""
    objs = np.array([[1, 0, 0, 10, 10, 0.8], [1, 1, 1, 10, 10, 0.9], [1, 30, 30, 5, 5, 0.7],
                     [0, 0, 0, 10, 10, 0.6], [0, 1, 1, 10, 10, 0.95], [0, 60, 50, 4, 4, 0.1],
                     [3, 0, 0, 5, 5, 0.99]], np.float32)
    out = twin.unclustered(objs, num_classes=2, topk=2, pre_threshold=[0.25, 0.25])
    np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 1])
    np.testing.assert_allclose(out[:, 5], [0.95, 0.6, 0.9, 0.8])  # overlaps kept, 0.7 cut
    mode4 = {"num_classes": 2, "pre_cluster": 0.25, "nms_iou": 0.5, "topk": 300,
             "cluster_mode": 4}
    rows = np.array([[0, 0, 10, 10, 0.9, 0], [1, 1, 11, 11, 0.8, 0]], np.float32)
    assert len(twin.nvinfer_objects(rows, 64, 64, mode4)) == 2  # twins survive
    assert len(twin.nvinfer_objects(rows, 64, 64, {**mode4, "cluster_mode": 2})) == 1


def _fake_deepstream(root: Path) -> Path:
    """A DeepStream install holding only the headers a parser build includes."""
    inc = root / "sources" / "includes"
    inc.mkdir(parents=True)
    for name in ("nvdsinfer.h", "nvdsinfer_custom_impl.h"):
        shutil.copyfile(Path(ds_parser.__file__).parent / "host" / name, inc / name)
    return root


@pytest.mark.parametrize("target", ["jetson-nano", "xavier-nx", "orin-nano", "t4"], ids=str)
def test_bundle_makefile_builds_the_parser(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "bundle"
    ds_parser.write_parser(folder, TARGETS[target])
    make = (folder / ds_parser.PARSER_DIR / "Makefile").read_text()
    t = TARGETS[target]
    assert f"CUDA_VER ?= {ds_parser.cuda_version(t)}" in make
    assert f"NVDS_VERSION ?= {t.deepstream}" in make
    ds = _fake_deepstream(tmp_path / "ds")
    done = subprocess.run(["make", "-C", str(folder / ds_parser.PARSER_DIR), f"NVDS_ROOT={ds}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lib = folder / ds_parser.CUSTOM_LIB
    record = twin.read_record(str(lib) + ".sha256")
    assert set(record) == {ds_parser.LIBRARY, *ds_parser.SOURCES}
    assert twin.check_build_record(
        str(folder), f"{ds_parser.CUSTOM_LIB}.sha256",
        {f"{ds_parser.PARSER_DIR}/{n}": twin.sha256_of(str(folder / ds_parser.PARSER_DIR / n))
         for n in ds_parser.SOURCES}) == []
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                        text=True, check=False).stdout
    assert ds_parser.FUNCTION in nm  # what parse-bbox-func-name looks up with dlsym


def test_makefile_without_deepstream_says_so(tmp_path: Path) -> None:
    ds_parser.write_parser(tmp_path, TARGETS["t4"])
    done = subprocess.run(["make", "-C", str(tmp_path / ds_parser.PARSER_DIR),
                           f"NVDS_ROOT={tmp_path / 'nowhere'}"], capture_output=True, text=True,
                          check=False)
    assert done.returncode != 0 and "DeepStream headers not found" in done.stderr

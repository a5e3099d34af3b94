"""The emulated DeepStream pipeline on a trained detector: it agrees with the workstation on
4:3 and 16:9 letterboxed images, and a config that changes what the device detects
(a stretching streammux) fails verify with the reason."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from detforge.deploy.bundle import bundle_model
from detforge.deploy.dsconfig import read_pipeline
from detforge.deploy.emulation import STAGES, Geometry, nvinfer_scale, streammux
from detforge.deploy.reference import load_reference
from detforge.deploy.verify import verify_bundle

pytestmark = [pytest.mark.slow, pytest.mark.train]

IMGSZ = 96
CONF = 0.15
ASPECTS = {"4:3": ((128, 96), (640, 480)), "16:9": ((160, 90), (1920, 1080))}
"""name -> (reference image size, --source-size)."""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulation")


@pytest.fixture(scope="module")
def detector_onnx(root: Path, trained_detector: Path) -> Path:
    from detforge.export.onnx_export import export_onnx

    return export_onnx(trained_detector, root / "det.onnx", imgsz=(IMGSZ, IMGSZ), batch=None,
                       layout="deepstream").path


@pytest.fixture(scope="module")
def bundles(root: Path, detector_onnx: Path) -> dict[str, Path]:
    """One FP16 Orin Nano bundle per aspect, references from a synthetic val split."""
    from detforge.data.synth import synthesize

    out = {}
    for name, (size, source) in ASPECTS.items():
        tag = name.replace(":", "x")
        synthesize(root / f"ds{tag}", images=24, classes=1, seed=3, size=size,
                   splits=(0.5, 0.5))
        bundle_model(detector_onnx, targets=["orin-nano"], out=root / f"b{tag}",
                     precision="fp16", data=root / f"ds{tag}", reference_images=12,
                     source_size=source, conf=CONF)
        out[name] = root / f"b{tag}" / "orin-nano"
    return out


@pytest.mark.parametrize("aspect", list(ASPECTS), ids=["4x3", "16x9"])
def test_emulated_device_agrees_with_workstation(bundles: dict[str, Path], aspect: str) -> None:
    folder = bundles[aspect]
    _, reference, _ = load_reference(folder / "reference")
    assert sum(len(d) for d in reference) >= 8  # a detector that finds things
    report = verify_bundle(folder, speed_seconds=0.05, min_device_agreement=0.95)
    assert report.passed, report.reasons
    assert [s["stage"] for s in report.stages] == list(STAGES)
    assert report.stages[-1]["agreement"] >= 0.95
    assert report.stages[-1]["matched"] >= 8


def _stretch(folder: Path) -> None:
    """streammux at the model size without padding: 16:9 and 4:3 squeezed to a square."""
    path = folder / "deepstream_app_config.txt"
    text = path.read_text()
    mux = read_pipeline(folder).mux_size
    text = text.replace(f"width={mux[0]}\nheight={mux[1]}\nenable-padding=1",
                        f"width={IMGSZ}\nheight={IMGSZ}\nenable-padding=0")
    assert "enable-padding=0" in text
    path.write_text(text)


@pytest.mark.parametrize("aspect", list(ASPECTS), ids=["4x3", "16x9"])
def test_stretched_streammux_fails_verify(bundles: dict[str, Path], tmp_path: Path,
                                          aspect: str) -> None:
    folder = Path(shutil.copytree(bundles[aspect], tmp_path / "b"))
    before = verify_bundle(folder, speed_seconds=0.05)
    _stretch(folder)
    report = verify_bundle(folder, speed_seconds=0.05)
    assert not report.passed
    reasons = " | ".join(report.reasons)
    assert "streammux-aspect: streammux 96x96 with enable-padding=0 stretches" in reasons
    stretched = report.stages[STAGES.index("streammux")]["agreement"]
    assert stretched < before.stages[STAGES.index("streammux")]["agreement"]
    assert stretched < 0.95 and "device emulation" in reasons
    assert "files changed" not in reasons  # an app config edit is judged by its meaning


def _edit_app(old: str, new: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "deepstream_app_config.txt"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return edit


def _no_parser(folder: Path) -> None:
    shutil.rmtree(folder / "nvdsinfer_custom_impl_detforge")


@pytest.mark.parametrize(("plant", "reasons"), [
    (_no_parser, ["files missing: nvdsinfer_custom_impl_detforge/Makefile",
                  "parser-shipped: nvdsinfer_custom_impl_detforge/ (parser source and "
                  "Makefile) is missing"]),
    (_edit_app("config-file=config_infer_primary.txt", "config-file=/etc/ds/infer.txt"),
     ["relative-paths: deepstream_app_config.txt: [primary-gie] config-file=/etc/ds/infer.txt"
      " is absolute"]),
    (_edit_app("uri=file:///opt", "uri=rtsp://camera/stream\n#uri=file:///opt"),
     ["live-source: [source0] is a live source but streammux live-source=0"]),
    (_edit_app("batch-size=1", "batch-size=4"), ["batch-size: streammux batch-size=4"]),
], ids=["missing-parser", "absolute-path", "rtsp-not-live", "batch-mismatch"])
def test_planted_config_violations(bundles: dict[str, Path], tmp_path: Path,
                                   plant: Callable[[Path], None], reasons: list[str]) -> None:
    folder = Path(shutil.copytree(bundles["16:9"], tmp_path / "b"))
    plant(folder)
    report = verify_bundle(folder, speed_seconds=0.05)
    assert not report.passed
    joined = " | ".join(report.reasons)
    for reason in reasons:
        assert reason in joined, joined


def test_black_padding_measured_against_grey(root: Path, detector_onnx: Path,
                                             bundles: dict[str, Path]) -> None:
    """Without the pad-fill adapter the device's black bands cost agreement on 16:9 frames;
    with it the device sees the training grey (the figures go to BENCHMARKS.md)."""
    bundle_model(detector_onnx, targets=["orin-nano"], out=root / "nofill", precision="fp16",
                 data=root / "ds16x9", reference_images=12, source_size=(1920, 1080),
                 conf=CONF, pad_fill=False)
    raw = verify_bundle(root / "nofill" / "orin-nano", speed_seconds=0.05,
                        min_device_agreement=0)
    filled = verify_bundle(bundles["16:9"], speed_seconds=0.05)
    by = {s["stage"]: s["agreement"] for s in raw.stages}
    assert by[STAGES[0]] >= 0.95  # grey bands: only nvinfer's rounding differs
    assert filled.stages[1]["agreement"] >= by[STAGES[1]]
    assert filled.stages[1]["agreement"] >= 0.95


@pytest.mark.parametrize(("frame", "net", "symmetric", "size", "left", "top"), [
    ((1920, 1080), (640, 640), True, (640, 360), 0, 140),
    ((1001, 600), (640, 640), True, (640, 384), 0, 128),   # odd width cropped to 1000
    ((640, 480), (640, 384), True, (512, 384), 64, 0),
    ((640, 480), (640, 384), False, (512, 384), 0, 0),
    ((1280, 721), (96, 96), True, (96, 54), 0, 21),        # 720 rows: 54 = trunc(53.999)
], ids=["1080p", "odd-width", "pillarbox", "corner", "odd-height"])
def test_nvinfer_geometry(frame: tuple[int, int], net: tuple[int, int], symmetric: bool,
                          size: tuple[int, int], left: int, top: int) -> None:
    pipe = _pipe(net=net, symmetric=symmetric)
    image = np.full((frame[1], frame[0], 3), 200, np.uint8)
    out, geo = nvinfer_scale(image, pipe, pad=0)
    assert out.shape == (net[1], net[0], 3)
    assert (geo.left, geo.top) == (left, top)
    assert round(geo.ratio_x * (frame[0] // 2 * 2)) == size[0]
    assert round(geo.ratio_y * (frame[1] // 2 * 2)) == size[1]
    inside = out[top:top + size[1], left:left + size[0]]
    assert inside.min() == 200 and out.sum() == inside.sum()  # bands are black


@pytest.mark.parametrize(("padding", "frame_size", "ratio"), [
    (True, (160, 90), (1.0, 1.0)),      # source size: the muxer scales nothing
    (False, (160, 160), (1.0, 1.78)),   # squeezed to a square, as a 1920x1080 source would be
], ids=["padded", "stretched"])
def test_streammux_geometry(padding: bool, frame_size: tuple[int, int],
                            ratio: tuple[float, float]) -> None:
    pipe = _pipe(mux=(1920, 1080) if padding else (96, 96), padding=padding)
    frame, geo = streammux(np.zeros((90, 160, 3), np.uint8), pipe, (1920, 1080))
    assert (frame.shape[1], frame.shape[0]) == frame_size
    assert isinstance(geo, Geometry)
    assert (round(geo.ratio_x, 2), round(geo.ratio_y, 2)) == ratio


def _pipe(*, net: tuple[int, int] = (96, 96), symmetric: bool = True,
          mux: tuple[int, int] = (1920, 1080), padding: bool = True) -> object:
    from detforge.deploy.dsconfig import KeyFile, Pipeline

    empty = KeyFile(Path("x"), {})
    return Pipeline(app=empty, infer=empty, mux_size=mux, mux_padding=padding, mux_batch=1,
                    live_source=False, net_size=net, maintain_aspect=True, symmetric=symmetric,
                    scale=1 / 255, offsets=(0, 0, 0), bgr=False, scaling_filter=1,
                    crop_to_frame=True, num_classes=1, cluster_mode=2, pre_cluster=0.25,
                    post_cluster=0.0, nms_iou=0.45, topk=300)

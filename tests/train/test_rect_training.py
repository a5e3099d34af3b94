"""Letterboxed rectangular training: config rules, the dataset's geometry, trainer helpers."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.train.config import TrainConfig, load_train_config, nearest_shape


@pytest.mark.parametrize(("overrides", "expect"), [
    (["model=rtdetr-tiny.yaml", "imgsz=[1088,1920]"], contextlib.nullcontext((1088, 1920))),
    (["model=rtdetr-tiny.yaml", "imgsz=[1080,1920]"],
     pytest.raises(ConfigError, match=r"imgsz 1080,1920 cannot be trained as given.*--imgsz "
                                      r"1088,1920")),
    (["model=rtdetr-l.yaml", "imgsz=100"], pytest.raises(ConfigError, match="--imgsz 96,96")),
    (["imgsz=[384,640]", "rect=true"], contextlib.nullcontext((384, 640))),
    (["imgsz=[380,640]", "rect=true"], pytest.raises(ConfigError, match="384,640")),
    (["imgsz=[384,640]"], contextlib.nullcontext((640, 640))),
    (["imgsz=[380,640]"], contextlib.nullcontext((640, 640))),
    (["model=rtdetr-tiny.yaml", "imgsz=[256,448]", "device=0,1"],
     pytest.raises(ConfigError, match="runs on one device")),
], ids=["rtdetr-1088", "rtdetr-1080", "rtdetr-square", "yolo-rect", "yolo-rect-odd",
        "yolo-square-mosaics", "yolo-no-rect-any", "rtdetr-ddp"])
def test_train_shape_is_honoured_or_refused(overrides: list[str], expect: Any) -> None:
    with expect as shape:
        cfg = load_train_config(overrides=overrides)
        assert cfg.train_shape == shape


def test_nearest_shape_rounds_to_the_nearest_multiple() -> None:
    assert nearest_shape((1080, 1920)) == (1088, 1920)
    assert nearest_shape((1050, 10)) == (1056, 32)


@pytest.mark.parametrize(("overrides", "match"), [
    (["optim.lr_schedule=multistep"], "needs lr_milestones"),
    (["optim.lr_milestones=[5]"], "apply to lr_schedule multistep"),
    (["optim.lr_schedule=multistep", "optim.lr_milestones=[5,3]"], "increase strictly"),
    (["optim.cos_lr=true", "optim.lr_schedule=multistep", "optim.lr_milestones=[3]"],
     "drop cos_lr"),
    (["optim.lr_gamma=0"], "lr_gamma"),
    (["optim.max_grad_norm=-1"], "max_grad_norm"),
    (["ema.decay=1"], "ema.decay"),
], ids=["no-milestones", "milestones-without-multistep", "decreasing", "cos-conflict",
        "gamma", "clip", "ema"])
def test_optimisation_options_are_validated(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_train_config(overrides=overrides)


def test_cos_lr_is_the_cosine_schedule() -> None:
    assert load_train_config(overrides=["optim.cos_lr=true"]).optim.lr_schedule == "cosine"
    assert load_train_config(overrides=["optim.lr_schedule=cosine"]).optim.cos_lr is True
    cfg = load_train_config(preset="traffic-rtdetr")
    assert cfg.is_rtdetr and cfg.train_shape == (1088, 1920) and cfg.letterboxed
    assert cfg.optim.lr_schedule == "multistep" and cfg.optim.max_grad_norm == 0.1
    assert cfg.ema.enabled and cfg.amp


def test_ultralytics_arguments_leave_detforge_options_out(tmp_path: Path) -> None:
    """Ultralytics refuses unknown arguments: the trainer's own options must not reach it."""
    pytest.importorskip("ultralytics")
    from ultralytics.cfg import get_cfg

    from detforge.train.backends.ultralytics import UltralyticsBackend

    cfg = TrainConfig(model="rtdetr-tiny.yaml", imgsz=(256, 448),
                      optim={"lr_schedule": "multistep", "lr_milestones": [3]},
                      augment={"multi_scale": 0.2})
    args = UltralyticsBackend()._args(cfg, tmp_path / "data.yaml", tmp_path / "run")
    get_cfg(overrides=args)  # raises on any key Ultralytics does not know
    assert args["imgsz"] == 448 and args["multi_scale"] == 0.0 and args["rect"] is False


@pytest.fixture(scope="module")
def hooks() -> Any:
    pytest.importorskip("ultralytics")
    from detforge.train.offline import import_ultralytics

    import_ultralytics()
    from detforge.train.backends import ul_trainer

    return ul_trainer


def test_multistep_factor_and_scaled_shape(hooks: Any) -> None:
    assert [hooks.multistep_factor(e, [1, 3], 0.5) for e in range(5)] == [1, 0.5, 0.5, 0.25,
                                                                         0.25]
    assert hooks.scaled_shape((288, 512), 1.0) == (288, 512)
    assert hooks.scaled_shape((1088, 1920), 0.75) == (832, 1440)  # 16:9 kept within a row


@pytest.fixture(scope="module")
def wide_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Eight 16:9 synthetic images (320x180), as Ultralytics' dataset check reads them."""
    pytest.importorskip("ultralytics")
    from detforge.data.synth import synthesize
    from detforge.train.offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.utils import check_det_dataset

    root = tmp_path_factory.mktemp("wide") / "ds"
    synthesize(root, images=8, classes=2, seed=3, size=(320, 180), splits=None)
    data: dict[str, Any] = check_det_dataset(str(root / "data.yaml"))
    return data


def _dataset(data: dict[str, Any], shape: tuple[int, int], augment: bool, **hyp: Any) -> Any:
    from ultralytics.cfg import get_cfg

    from detforge.train.backends.rect_data import RectDataset

    return RectDataset(img_path=data["train"], shape=shape, batch_size=4, augment=augment,
                       hyp=get_cfg(overrides=hyp), rect=False, stride=32, pad=0.0, data=data,
                       task="detect")


@pytest.mark.train
def test_validation_letterbox_matches_the_runtime(wide_dataset: dict[str, Any]) -> None:
    """Training's validation input is the runtime's letterbox: boxes land on the same pixels."""
    from detforge.core.imageio import read_image_bgr
    from detforge.runtime.preprocess import letterbox

    shape = (192, 256)  # 4:3, so the 16:9 images get grey bands above and below
    ds = _dataset(wide_dataset, shape, augment=False)
    for i in range(len(ds)):
        item = ds[i]
        assert tuple(item["img"].shape) == (3, *shape)
        bgr = read_image_bgr(Path(item["im_file"]))
        assert bgr is not None
        want, info = letterbox(np.ascontiguousarray(bgr[..., ::-1]), shape)
        got = item["img"].numpy().transpose(1, 2, 0)  # RGB, as the network sees it
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 2.0  # same pixels
        label = ds.labels[i]
        if not len(label["bboxes"]):
            continue
        h0, w0 = label["shape"]
        cxcy = label["bboxes"][:, :2] * [w0, h0] * [info.gain_x, info.gain_y] + [info.pad_x,
                                                                                   info.pad_y]
        got_cxcy = item["bboxes"][:, :2].numpy() * [shape[1], shape[0]]
        np.testing.assert_allclose(got_cxcy, cxcy, atol=1.0)


@pytest.mark.train
@pytest.mark.parametrize("mosaic", [1.0, 0.0], ids=["mosaic", "letterbox-jitter"])
def test_augmented_batches_keep_the_rectangle(wide_dataset: dict[str, Any],
                                              mosaic: float) -> None:
    shape = (160, 288)
    ds = _dataset(wide_dataset, shape, augment=True, mosaic=mosaic, scale=0.3)
    boxes = 0
    for i in range(len(ds)):
        item = ds[i]
        assert tuple(item["img"].shape) == (3, *shape)
        b = item["bboxes"].numpy()
        assert ((b[:, :2] >= 0) & (b[:, :2] <= 1)).all()
        boxes += len(b)
    assert boxes > 0

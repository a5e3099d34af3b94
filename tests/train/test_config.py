from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from detforge.core.errors import ConfigError
from detforge.train.config import (
    PRESETS,
    TrainConfig,
    config_to_yaml,
    load_preset,
    load_train_config,
    model_for_size,
    overfit_config,
    overfit_done,
    parse_imgsz,
    parse_sizes,
)


def test_defaults_are_valid() -> None:
    cfg = load_train_config()
    assert cfg == TrainConfig()
    assert cfg.model == "yolo11n.yaml" and cfg.train_imgsz == 640 and not cfg.on_gpu


@pytest.mark.parametrize(
    ("overrides", "expect"),
    [
        (["epochs=3"], contextlib.nullcontext()),
        (["optim.nbs=32", "augment.mosaic=0.5"], contextlib.nullcontext()),
        (["imgsz=[384,640]"], contextlib.nullcontext()),
        (["tracking.uri=sqlite:///x.db"], contextlib.nullcontext()),
        (["epoch=3"], pytest.raises(ConfigError, match="unknown key 'epoch'.*valid keys")),
        (["optim.lr=0.1"], pytest.raises(
            ConfigError, match=r"unknown key 'optim.lr' \(did you mean 'optim.lrf'\?\); "
                               r"valid keys under 'optim': \['cos_lr', 'lr0'")),
        (["tracking.url=x"], pytest.raises(ConfigError, match="under 'tracking'.*'uri'")),
        (["epochs=0"], pytest.raises(ConfigError, match="epochs")),
        (["device=gpu"], pytest.raises(ConfigError, match="'cpu' or GPU indices")),
        (["model=yolo99z.yaml"], pytest.raises(ConfigError, match="nothing is downloaded")),
        (["model=yolo11n.pt"], pytest.raises(ConfigError, match="local .pt")),
        (["name=a/b"], pytest.raises(ConfigError, match="run name")),
        (["augment.fliplr=2"], pytest.raises(ConfigError, match="augment.fliplr")),
        (["epochs"], pytest.raises(ConfigError, match="key.sub=value")),
    ],
    ids=["epochs", "nested", "rect-size", "tracking-uri", "unknown-top", "unknown-nested",
         "unknown-tracking", "zero-epochs", "bad-device", "unknown-model", "missing-weights",
         "bad-name", "prob-range", "no-equals"],
)
def test_overrides_are_validated(overrides: list[str], expect: Any) -> None:
    with expect:
        load_train_config(overrides=overrides)


@pytest.mark.parametrize("name", PRESETS, ids=list(PRESETS))
def test_every_preset_loads_through_the_model(name: str) -> None:
    cfg = load_train_config(preset=name)
    assert cfg.preset == name
    assert cfg.classes and len(cfg.classes) == len(set(cfg.classes))
    assert cfg.sizes and cfg.epochs > 0
    assert load_preset(name)["preset"] == name


def test_traffic_preset_is_rectangular_and_trains_at_longer_side() -> None:
    cfg = load_train_config(preset="traffic")
    assert cfg.imgsz == (384, 640) and cfg.train_imgsz == 640


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\naugment:\n  mosiac: 0.5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'augment.mosiac' \(did you "
                                          r"mean 'augment.mosaic'\?\)"):
        load_train_config(path)


def test_unknown_preset_lists_choices() -> None:
    with pytest.raises(ConfigError, match="choose one of.*traffic"):
        load_train_config(preset="mining")


def test_precedence_preset_file_flags_set(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("preset: ppe\nepochs: 7\nbatch: 4\naugment:\n  mixup: 0.3\n")
    cfg = load_train_config(cfg_file, flags={"batch": 2, "seed": None},
                            overrides=["augment.scale=0.1"])
    assert cfg.preset == "ppe" and cfg.epochs == 7 and cfg.batch == 2 and cfg.seed == 0
    assert cfg.augment.mixup == 0.3 and cfg.augment.scale == 0.1
    assert cfg.augment.fliplr == load_preset("ppe")["augment"]["fliplr"]  # kept from preset


@pytest.mark.parametrize(
    ("text", "expect"),
    [("", "mapping"), ("- a\n- b\n", "mapping"), ("epochs: [\n", "cannot read")],
    ids=["empty-ok", "list", "broken-yaml"],
)
def test_bad_config_files(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    ctx = contextlib.nullcontext() if text == "" else pytest.raises(ConfigError, match=expect)
    with ctx:
        load_train_config(path)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_train_config(preset="traffic", overrides=["epochs=5", "optim.cos_lr=true"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_train_config(path) == cfg


@pytest.mark.parametrize(
    ("text", "expect"),
    [("320", 320), ("384,640", (384, 640)), ("0", None), ("a", None), ("1,2,3", None)],
    ids=["square", "rect", "zero", "word", "three"],
)
def test_parse_imgsz(text: str, expect: Any) -> None:
    if expect is None:
        with pytest.raises(ConfigError, match="N or H,W"):
            parse_imgsz(text)
    else:
        assert parse_imgsz(text) == expect


@pytest.mark.parametrize(
    ("text", "expect"),
    [("n,s", ["n", "s"]), (" n , m ", ["n", "m"]), ("n,q", None), ("n,n", None), (",", None)],
    ids=["two", "spaces", "bad-size", "repeat", "empty"],
)
def test_parse_sizes(text: str, expect: Any) -> None:
    if expect is None:
        with pytest.raises(ConfigError, match="distinct sizes"):
            parse_sizes(text)
    else:
        assert parse_sizes(text) == expect


@pytest.mark.parametrize(
    ("model", "size", "expect"),
    [("yolo11n.yaml", "s", "yolo11s.yaml"), ("yolov8m.yaml", "x", "yolov8x.yaml"),
     ("rtdetr-l.yaml", "x", "rtdetr-x.yaml"), ("rtdetr-l.yaml", "n", None),
     ("weights/best.pt", "s", None)],
    ids=["yolo11", "yolov8", "rtdetr", "rtdetr-no-n", "local-file"],
)
def test_model_for_size(model: str, size: str, expect: str | None) -> None:
    if expect is None:
        with pytest.raises(ConfigError):
            model_for_size(model, size)
    else:
        assert model_for_size(model, size) == expect


def test_overfit_config_turns_augmentation_off_and_steps_every_batch() -> None:
    cfg = load_train_config(overrides=["overfit=2", "batch=2", "val=false"])
    fitted = overfit_config(cfg)
    assert fitted.augment.mosaic == fitted.augment.fliplr == fitted.augment.scale == 0
    assert fitted.augment.close_mosaic == 0 and fitted.val
    assert fitted.optim.nbs == 2 and fitted.optim.lr0 == cfg.optim.lr0
    plain = load_train_config()
    assert overfit_config(plain) is plain


@pytest.mark.parametrize(
    ("overfit", "metrics", "done"),
    [(2, {"mAP50": 0.995}, True), (2, {"mAP50": 0.9}, False), (2, {}, False),
     (0, {"mAP50": 1.0}, False)],
    ids=["memorised", "not-yet", "no-metric", "normal-run"],
)
def test_overfit_done(overfit: int, metrics: dict[str, float], done: bool) -> None:
    assert overfit_done(TrainConfig(overfit=overfit), metrics) is done


def test_activation_needs_a_yolo_yaml(tmp_path: Path) -> None:
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"x")
    assert TrainConfig(model="yolo11n.yaml", activation="relu").activation == "relu"
    with pytest.raises(ConfigError, match="keep the activation they were trained with") as err:
        load_train_config(overrides=[f"model={weights}", "activation=relu"])
    assert str(err.value).startswith("activation 'relu' applies to a model built from a YAML")
    assert "got {" not in str(err.value)  # not the whole config dumped after it
    with pytest.raises(ConfigError, match="RT-DETR"):
        load_train_config(overrides=["model=rtdetr-l.yaml", "activation=relu"])
    with pytest.raises(ConfigError, match="activation"):
        load_train_config(overrides=["activation=gelu"])

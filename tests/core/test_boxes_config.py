from __future__ import annotations

import numpy as np
import pytest

from detforge.core.boxes import (
    box_iou,
    cxcywh_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from detforge.core.config import StrictModel, load_config
from detforge.core.errors import ConfigError


def test_box_round_trips() -> None:
    b = np.array([[1.5, 2.0, 11.0, 7.25], [0, 0, 1, 1]])
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)


def test_iou_hand_computed() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 0.0, 1.0]])


class _Cfg(StrictModel):
    epochs: int = 1
    name: str = "x"


def test_config_overrides_and_unknown_keys(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 3\n")
    assert load_config(_Cfg, p, ["name=y"]) == _Cfg(epochs=3, name="y")
    with pytest.raises(ConfigError, match="valid keys.*epochs"):
        load_config(_Cfg, p, ["epoch=4"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(_Cfg, None, ["novalue"])

"""The CLIP tagger: local files only, the same scores as OpenCLIP, clear errors."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.library import TaggerError, load_tagger, read_vocabulary
from detforge.library.taggers import DEFAULT_TAGS, Tagger
from detforge.testing import random_image


def test_tagger_scores_match_open_clip(tiny_clip: Path) -> None:
    import open_clip
    import torch
    from PIL import Image

    tags = ["beach", "forest", "city", "snow"]
    tagger = load_tagger(str(tiny_clip), vocabulary=tags, threshold=0.0, top_k=4)
    assert isinstance(tagger, Tagger)
    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{tiny_clip}", load_weights=True)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny_clip}")
    images = [random_image(96, 128, seed=s) for s in range(3)]
    ours = tagger.tag(np.stack([tagger.prepare(im) for im in images]))
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.fromarray(im)) for im in images]))
        txt = model.encode_text(tokenizer([f"a photo of {t}" for t in tags]))
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        probs = (model.logit_scale.exp() * img @ txt.T).softmax(dim=-1).numpy()
    for row, found in zip(probs, ours, strict=True):
        got = dict(found)
        assert sorted(got) == sorted(tags)
        for i, tag in enumerate(tags):  # resize differs (OpenCV vs PIL bicubic): close, not equal
            assert got[tag] == pytest.approx(float(row[i]), abs=0.05)
    assert tagger.name.startswith("clip:open_clip_model.safetensors@")
    tagger.close()


def test_threshold_and_top_k(tiny_clip: Path) -> None:
    tagger = load_tagger(f"clip={tiny_clip}", vocabulary=["a", "b", "c", "d", "e"],
                         threshold=0.0, top_k=2)
    out = tagger.tag(tagger.prepare(random_image(64, 64))[None])
    assert len(out[0]) == 2 and out[0][0][1] >= out[0][1][1]
    strict = load_tagger(str(tiny_clip), vocabulary=["a", "b"], threshold=1.0, top_k=2)
    assert strict.tag(strict.prepare(random_image(64, 64))[None]) == [[]]


def test_loading_makes_no_network_attempt(tiny_clip: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network attempt: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    load_tagger(str(tiny_clip), vocabulary=["x", "y"]).close()


@pytest.mark.parametrize("case,match", [
    ("missing", "no such file"),
    ("text-file", "not a model weights file"),
    ("no-config", "open_clip_config.json: missing"),
    ("bad-json", "not a JSON OpenCLIP config"),
    ("not-open-clip", "not an OpenCLIP config"),
    ("hub-text", "Hugging Face hub"),
    ("timm-pretrained", "timm_model_pretrained"),
    ("garbage-weights", "not an OpenCLIP model"),
    ("wrong-shapes", "not an OpenCLIP model"),
    ("no-weights", "no weights files"),
], ids=lambda x: x if " " not in x and ":" not in x and "." not in x else "")
def test_files_that_are_not_a_model_are_one_line_errors(tiny_clip: Path, tmp_path: Path,
                                                        case: str, match: str) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_clip, folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    target: Path = folder
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "text-file":
        target = tmp_path / "tags.txt"
        target.write_text("beach\n")
    elif case == "no-config":
        (folder / "open_clip_config.json").unlink()
    elif case == "bad-json":
        (folder / "open_clip_config.json").write_text("{not json")
    elif case == "not-open-clip":
        (folder / "open_clip_config.json").write_text('{"hello": 1}')
    elif case in ("hub-text", "timm-pretrained", "wrong-shapes"):
        cfg = config["model_cfg"]
        if case == "hub-text":
            cfg["text_cfg"]["hf_model_name"] = "bert-base-uncased"
        elif case == "timm-pretrained":
            cfg["vision_cfg"]["timm_model_pretrained"] = True
        else:
            cfg["vision_cfg"]["width"] = 64
        (folder / "open_clip_config.json").write_text(json.dumps(config))
    elif case == "garbage-weights":
        (folder / "open_clip_model.safetensors").write_bytes(b"\0" * 100)
    elif case == "no-weights":
        (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(TaggerError, match=match) as err:
        load_tagger(str(target), vocabulary=["x"])
    assert "\n" not in str(err.value)


def test_tagger_specs_and_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown tagger"):
        load_tagger("siglip=/x", vocabulary=["a"])
    with pytest.raises(ConfigError, match="no model path"):
        load_tagger("clip=", vocabulary=["a"])
    with pytest.raises(ConfigError, match="cannot import"):
        load_tagger("nowhere.module:Tagger=/x", vocabulary=["a"])
    default = read_vocabulary()
    assert "beach" in default and len(default) == len(set(default)) > 50
    assert DEFAULT_TAGS.is_file()
    empty = tmp_path / "t.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="no tags"):
        read_vocabulary(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        read_vocabulary(tmp_path / "missing.txt")


def test_missing_open_clip_is_a_missing_extra_error(tiny_clip: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from detforge.core.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(MissingExtraError, match=r"detforge\[library\]"):
        load_tagger(str(tiny_clip), vocabulary=["x"])

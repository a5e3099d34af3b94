"""The CLIP tagger: zero-shot scene tags with an OpenCLIP model the user gives.

The model is loaded only from local files, never from a hub: a folder in OpenCLIP's
``local-dir`` layout (``open_clip_config.json`` with ``model_cfg`` and optional
``preprocess_cfg``, plus one weights file: ``open_clip_model.safetensors``,
``open_clip_pytorch_model.bin``, ...), or a weights file with that config beside it.

OpenCLIP reaches the network in three places, all closed here: ``hf-hub:`` model names
and pretrained *tags* (only ``local-dir:`` is ever passed, with an explicit weights file),
Hugging Face text towers and tokenizers (``hf_model_name`` / ``hf_tokenizer_name`` in the
config: refused unless they name a local folder), and timm image towers with
``timm_model_pretrained`` (refused); ``pretrained_image`` and ``pretrained_text`` are off.

Each tag is asked as ``"a photo of {tag}"``; an image's tag scores are the softmax of
``logit_scale * cos(image, prompt)`` over the vocabulary, so they sum to 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import MissingExtraError
from detforge.library.errors import TaggerError

__all__ = ["CONFIG_NAME", "WEIGHT_NAMES", "ClipTagger"]

CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                "model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin",
                "open_clip_pytorch_model.pth", "model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
PROMPT = "a photo of {}"


class ClipTagger:
    """Zero-shot tags from an OpenCLIP model in a local folder or file.

    Args:
        path: The model folder, or its weights file (config beside it).
        vocabulary: Tags to choose from.
        threshold: Keep tags scoring at least this (softmax over the vocabulary).
        top_k: Keep at most this many tags per image.
        device: Torch device.

    Raises:
        TaggerError: Missing files, a config that is not OpenCLIP's or that needs the
            network, or weights that do not fit the config.
        MissingExtraError: open_clip (or torch) is not installed.
    """

    def __init__(self, path: str | Path, *, vocabulary: Sequence[str], threshold: float = 0.1,
                 top_k: int = 5, device: str = "cpu") -> None:
        folder, weights = _locate(Path(path))
        config = _read_config(folder)
        try:
            import open_clip
            import torch
        except ImportError as exc:
            raise MissingExtraError("the CLIP tagger needs open_clip and torch: pip install "
                                    "'detforge[library]'") from exc
        if not vocabulary:
            raise TaggerError("the tag vocabulary is empty; pass --tags FILE with one tag "
                              "per line")
        self._torch = torch
        logging.disable(logging.WARNING)  # "initialized randomly": the weights load next
        try:
            model: Any = open_clip.create_model(
                f"local-dir:{folder}", load_weights=False, pretrained_image=False,
                pretrained_text=False, device=device)
            open_clip.load_checkpoint(model, str(weights), strict=True)
            tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        except Exception as exc:  # open_clip raises many kinds for a wrong file
            raise TaggerError(f"{weights}: not an OpenCLIP model matching {folder / CONFIG_NAME} "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); pass a "
                              f"folder saved by OpenCLIP") from exc
        finally:
            logging.disable(logging.NOTSET)
        model.eval()
        self._model = model
        self._device = device
        pre = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = pre.get("size", config["model_cfg"]["vision_cfg"].get("image_size", 224))
        self.size = int(size[0] if isinstance(size, list | tuple) else size)
        self._mean = np.asarray(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)),
                                np.float32).reshape(3, 1, 1)
        self._std = np.asarray(pre.get("std", (0.26862954, 0.26130258, 0.27577711)),
                               np.float32).reshape(3, 1, 1)
        self.vocabulary = list(vocabulary)
        self.threshold, self.top_k = threshold, top_k
        with torch.no_grad():
            text = model.encode_text(tokenizer([PROMPT.format(t) for t in self.vocabulary]))
            self._text = text / text.norm(dim=-1, keepdim=True)
            self._scale = float(model.logit_scale.exp())
        digest = hashlib.sha256(_file_digest(weights).encode())
        digest.update("\n".join(self.vocabulary).encode())
        self.name = f"clip:{weights.name}@{digest.hexdigest()[:16]}"

    def prepare(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Resize the short side to the model's size (bicubic), centre-crop, normalise."""
        import cv2

        h, w = rgb.shape[:2]
        scale = self.size / min(h, w)
        nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        crop = resized[top:top + self.size, left:left + self.size]
        chw = crop.transpose(2, 0, 1).astype(np.float32) / 255.0
        return np.ascontiguousarray((chw - self._mean) / self._std, np.float32)

    def tag(self, batch: NDArray[np.float32]) -> list[list[tuple[str, float]]]:
        """The kept tags of each image, best first."""
        torch = self._torch
        with torch.no_grad():
            image = self._model.encode_image(torch.from_numpy(batch).to(self._device))
            image = image / image.norm(dim=-1, keepdim=True)
            probs = (self._scale * image @ self._text.T).softmax(dim=-1).cpu().numpy()
        out: list[list[tuple[str, float]]] = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:self.top_k]
            out.append([(self.vocabulary[i], round(float(row[i]), 4)) for i in order
                        if row[i] >= self.threshold])
        return out

    def close(self) -> None:
        """Drop the model."""
        self._model = None


def _locate(path: Path) -> tuple[Path, Path]:
    """The model folder and its weights file."""
    if path.is_file():
        if path.suffix not in _WEIGHT_SUFFIXES:
            raise TaggerError(f"{path}: not a model weights file (expected one of "
                              f"{list(_WEIGHT_SUFFIXES)}); pass an OpenCLIP model folder")
        return path.parent, path
    if not path.is_dir():
        raise TaggerError(f"{path}: no such file or folder; pass a local OpenCLIP model "
                          f"folder (nothing is downloaded)")
    for name in WEIGHT_NAMES:
        if (path / name).is_file():
            return path, path / name
    found = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(found) == 1:
        return path, found[0]
    raise TaggerError(f"{path}: {'several' if found else 'no'} weights files "
                      f"({[p.name for p in found]}); keep one, e.g. {WEIGHT_NAMES[0]}")


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG_NAME
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TaggerError(f"{file}: missing; an OpenCLIP model folder holds its "
                          f"{CONFIG_NAME} next to the weights") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaggerError(f"{file}: not a JSON OpenCLIP config ({exc})") from exc
    cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("vision_cfg"), dict) \
            or not isinstance(cfg.get("text_cfg"), dict):
        raise TaggerError(f"{file}: no 'model_cfg' with 'vision_cfg' and 'text_cfg'; it is "
                          f"not an OpenCLIP config")
    text, vision = cfg["text_cfg"], cfg["vision_cfg"]
    for key in ("hf_model_name", "hf_tokenizer_name"):
        name = text.get(key)
        if name and not Path(str(name)).is_dir():
            raise TaggerError(f"{file}: text_cfg.{key} = {name!r} would be fetched from the "
                              f"Hugging Face hub; point it at a local folder")
    if vision.get("timm_model_pretrained"):
        raise TaggerError(f"{file}: vision_cfg.timm_model_pretrained would download timm "
                          f"weights; set it to false (the CLIP weights hold the image tower)")
    return dict(config)


def _file_digest(path: Path) -> str:
    from detforge.library.hashing import file_sha256

    return file_sha256(path)

"""Scene taggers: plug-ins that give an image a few words from a vocabulary (zero-shot).

A tagger implements :class:`Tagger`. Built-in ones are listed in :data:`TAGGERS` as
``"module:Class"`` strings, imported on first use; any other class can be named the same
way on the command line:

* ``--tagger models/clip`` -- the CLIP tagger, model folder ``models/clip``;
* ``--tagger clip=models/clip`` -- the same, with the tagger named;
* ``--tagger mypkg.tagging:MyTagger=weights.bin`` -- a third-party tagger class.

A tagger class is called as ``cls(path, vocabulary=..., threshold=..., top_k=...)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError
from detforge.library.errors import TaggerError

__all__ = ["DEFAULT_TAGS", "TAGGERS", "Tagger", "load_tagger", "read_vocabulary"]

TAGGERS: dict[str, str] = {
    "clip": "detforge.library.taggers.clip:ClipTagger",
}

DEFAULT_TAGS = Path(__file__).with_name("default_tags.txt")


@runtime_checkable
class Tagger(Protocol):
    """Zero-shot scene tagger.

    Attributes:
        name: Identity of the model and vocabulary; stored with each tagged file so a
            re-run with another model or vocabulary tags the library again.
    """

    name: str

    def prepare(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Turn an RGB image into the model's input (thread-safe; runs in decode threads)."""
        ...

    def tag(self, batch: NDArray[np.float32]) -> list[list[tuple[str, float]]]:
        """Tags and their scores (0..1, best first) for a stacked batch of inputs."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def read_vocabulary(path: str | Path | None = None) -> list[str]:
    """Tags from a text file: one per line, ``#`` comments and blank lines ignored.

    Args:
        path: The file; None for the shipped default list (:data:`DEFAULT_TAGS`).

    Raises:
        ConfigError: The file is missing or holds no tag.
    """
    file = Path(path) if path is not None else DEFAULT_TAGS
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the tag list ({exc.strerror}); pass a text "
                          f"file with one tag per line") from exc
    tags: list[str] = []
    for line in lines:
        tag = line.split("#", 1)[0].strip()
        if tag and tag not in tags:
            tags.append(tag)
    if not tags:
        raise ConfigError(f"{file}: no tags in it; write one tag per line")
    return tags


def load_tagger(spec: str, *, vocabulary: Sequence[str] | None = None,
                threshold: float = 0.1, top_k: int = 5) -> Tagger:
    """Load the tagger named by ``spec`` (see the module docstring).

    Args:
        spec: ``PATH``, ``NAME=PATH`` or ``module:Class=PATH``.
        vocabulary: Tags to choose from (default: the shipped list).
        threshold: Keep tags scoring at least this.
        top_k: Keep at most this many tags per image.

    Raises:
        ConfigError: Unknown tagger name or bad option.
        TaggerError: The model cannot be loaded.
        MissingExtraError: The tagger's package is not installed.
    """
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = "clip", spec
    if not path:
        raise ConfigError(f"--tagger {spec!r}: no model path; pass PATH or NAME=PATH")
    if not 0.0 <= threshold <= 1.0 or top_k < 1:
        raise ConfigError(f"tag threshold {threshold} must lie in [0, 1] and top-k {top_k} "
                          f"be at least 1")
    target = TAGGERS.get(name, name if ":" in name else None)
    if target is None:
        raise ConfigError(f"--tagger {spec!r}: unknown tagger {name!r}; choose one of "
                          f"{sorted(TAGGERS)} or name a class as module:Class=PATH")
    module, _, cls_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as exc:
        if isinstance(exc, ImportError) and name in TAGGERS:
            raise
        raise ConfigError(f"--tagger {spec!r}: cannot import {target} ({exc})") from exc
    words = list(vocabulary) if vocabulary is not None else read_vocabulary()
    tagger = cls(Path(path), vocabulary=words, threshold=threshold, top_k=top_k)
    if not isinstance(tagger, Tagger):
        raise TaggerError(f"{target} does not implement the Tagger interface "
                          f"(name, prepare, tag, close)")
    return tagger

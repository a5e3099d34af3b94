"""Build a reference: run a model over a dataset split with the inference runtime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detforge.core.errors import ConfigError, DatasetError
from detforge.export.engine_plan import sha256_file
from detforge.monitor.reference import ModelIdentity, Reference, ReferenceBuilder
from detforge.monitor.signals import detection_stats, image_stats
from detforge.runtime.model import Model
from detforge.runtime.sinks import Prediction

__all__ = ["build_reference", "model_identity"]


def model_identity(model: Model, path: str | Path) -> ModelIdentity:
    """The identity of ``model`` loaded from the file ``path``."""
    path = Path(path)
    meta = model.meta
    return ModelIdentity(file=path.name, sha256=sha256_file(path), classes=model.classes,
                         imgsz=model.imgsz, layout=meta.layout, run_id=meta.run_id,
                         dataset_version=meta.dataset_version)


class _ReferenceSink:
    """Pipeline sink that feeds every prediction (with its image) to the builder."""

    needs_image = True

    def __init__(self, builder: ReferenceBuilder) -> None:
        self.builder = builder

    def write(self, prediction: Prediction) -> None:
        if prediction.image is None:
            return
        self.builder.add(image_stats(prediction.image),
                         detection_stats(prediction.detections, prediction.width,
                                         prediction.height))

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


def _split_images(data: str | Path, split: str | None, max_images: int | None) -> tuple[
        list[Path], dict[str, Any]]:
    from detforge.data.formats import read_dataset

    dataset = read_dataset(data)
    names = dataset.split_names()
    if split is not None and split not in names:
        raise ConfigError(f"--data {data}: no {split!r} split (splits: {names or 'none'}); "
                          f"pass --split with one of them, or --split all")
    rows = [i for i in range(dataset.num_images)
            if split is None or dataset.images.split[i] == split]
    if max_images is not None:
        rows = rows[:max_images]
    if not rows:
        raise DatasetError("the dataset has no images", path=data)
    version = dataset.info.get("version") if isinstance(dataset.info, dict) else None
    return [dataset.image_path(r) for r in rows], {
        "source": str(data), "split": split or "all", "version": version}


def build_reference(model: str | Path, data: str | Path, *, split: str | None = "val",
                    conf: float = 0.25, iou: float = 0.7, imgsz: tuple[int, int] | None = None,
                    device: str = "auto", max_images: int | None = None,
                    min_images: int = 8, batch: int | str = "auto",
                    progress: bool = False) -> Reference:
    """Reference statistics of ``model`` on a dataset split.

    Args:
        model: Model file, folder or stem (as ``predict``).
        data: Dataset folder or file (any format ``detforge data`` reads).
        split: Split to read (None: every image).
        conf: Confidence threshold (use the server's).
        iou: NMS IoU threshold.
        imgsz: Input size for dynamic models.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        max_images: Read at most this many images of the split.
        min_images: Refuse a reference built on fewer images.
        batch: Images per inference call, or ``"auto"``.
        progress: Show a progress bar.

    Returns:
        The reference (write it with :meth:`Reference.write`).

    Raises:
        ConfigError: Bad options, an unknown split, too few images or no detection.
        DatasetError: The dataset cannot be read.

    Example:
        >>> ref = build_reference("model.onnx", "datasets/ppe")  # doctest: +SKIP
        >>> ref.write("ref.json")  # doctest: +SKIP
    """
    from detforge.runtime import load_model, resolve_model_path
    from detforge.runtime.pipeline import run_pipeline
    from detforge.runtime.sources import SourceItem

    paths, info = _split_images(data, split, max_images)
    file = resolve_model_path(model, device=device)
    with load_model(file, device=device, imgsz=imgsz, conf=conf, iou=iou) as m:
        builder = ReferenceBuilder(model_identity(m, file), conf=conf, iou=iou)
        items: Sequence[SourceItem] = [SourceItem(source=str(p), path=p) for p in paths]
        stats = run_pipeline(m, items, [_ReferenceSink(builder)], batch=batch,
                             progress=progress, warmup=False)
    if stats.skipped:
        first = stats.skipped_sources[0]
        raise DatasetError(f"{stats.skipped} image(s) could not be read (first: {first[0]}: "
                           f"{first[1]}); a reference must cover the whole split; fix them "
                           f"with `detforge data validate --fix`", path=data)
    return builder.build(data=info, min_images=min_images)

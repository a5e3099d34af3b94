"""Sinks: where predictions go (JSON Lines, COCO results JSON, CSV, annotated images/video).

Every file sink writes to a hidden temporary file beside its output: :meth:`Sink.close`
(the run succeeded) renames it into place; :meth:`Sink.abort` (an error, a full disk,
Ctrl-C) removes it, or, for a sink given a ``partial`` path, keeps the records written so
far under that name (``dets.partial.jsonl``, see :func:`partial_path`), never under the
output's own. A killed run's temporary file is removed by the next run writing there.

JSON Lines record (one per image or frame)::

    {"source": "a.jpg", "frame": null, "width": 640, "height": 480,
     "detections": [{"xyxy": [x1, y1, x2, y2], "score": 0.9, "class_id": 0,
                     "class_name": "person", "track_id": null}]}
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import AtomicFile, atomic_write_json
from detforge.core.detections import Detections
from detforge.core.errors import ConfigError, DatasetError
from detforge.runtime.vis import VisSink

__all__ = ["SINK_FORMATS", "CocoSink", "CsvSink", "JsonlSink", "Prediction", "Sink", "VisSink",
           "coco_ids_from_gt", "make_sink", "partial_path", "read_coco_results", "read_csv",
           "read_jsonl"]

SINK_FORMATS = ("jsonl", "coco", "csv")
CSV_FIELDS = ("source", "frame", "width", "height", "x1", "y1", "x2", "y2", "score", "class_id",
              "class_name", "track_id")


@dataclass(frozen=True, slots=True)
class Prediction:
    """The detections of one image or video frame.

    Attributes:
        source: The file (or stream) it came from.
        frame: Frame index for video, None for an image.
        width: Original width in pixels.
        height: Original height in pixels.
        detections: In original pixels.
        image: The RGB image, kept only when a sink draws it (else None).
    """

    source: str
    frame: int | None
    width: int
    height: int
    detections: Detections
    image: NDArray[np.uint8] | None = None

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        """The JSON Lines record."""
        d = self.detections
        tracks = d.track_ids.tolist() if d.track_ids is not None else [None] * len(d)
        dets = [{"xyxy": [round(float(v), 2) for v in box], "score": round(float(s), 5),
                 "class_id": int(c), "class_name": _name(classes, int(c)), "track_id": t}
                for box, s, c, t in zip(d.xyxy, d.scores, d.class_ids, tracks, strict=True)]
        return {"source": self.source, "frame": self.frame, "width": self.width,
                "height": self.height, "detections": dets}


def _name(classes: Sequence[str], cid: int) -> str:
    return classes[cid] if 0 <= cid < len(classes) else str(cid)


def partial_path(path: str | Path) -> Path:
    """Where an unfinished run keeps its records: ``dets.jsonl`` -> ``dets.partial.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class Sink(Protocol):
    """Receives predictions in input order; ``close`` commits the output, ``abort`` drops it
    (or keeps it under the sink's partial name)."""

    needs_image: bool

    def write(self, prediction: Prediction) -> None:
        """Add one prediction."""
        ...

    def close(self) -> None:
        """Finish and commit the output."""
        ...

    def abort(self) -> None:
        """The run did not finish: remove the output, or keep it under its partial name."""
        ...


class _FileSink:
    needs_image = False

    def __init__(self, path: str | Path, classes: Sequence[str], *,
                 partial: str | Path | None = None) -> None:
        self.path = Path(path)
        self.partial = None if partial is None else Path(partial)
        self.classes = tuple(classes)
        self._file = AtomicFile(self.path, "w")
        self._fh: IO[Any] = self._file.file

    def close(self) -> None:
        """Commit the file (rename the temporary file into place)."""
        self._file.commit()

    def abort(self) -> None:
        """Remove the temporary file, or rename it to the partial path when there is one."""
        if self.partial is None:
            self._file.discard()
        else:
            self._file.commit(self.partial)


class JsonlSink(_FileSink):
    """One JSON object per image or frame (see the module docstring)."""

    def write(self, prediction: Prediction) -> None:
        """Append one record."""
        self._fh.write(json.dumps(prediction.to_record(self.classes), ensure_ascii=False) + "\n")


class CsvSink(_FileSink):
    """One row per detection; an image without detections gets one row with empty box fields."""

    def __init__(self, path: str | Path, classes: Sequence[str], *,
                 partial: str | Path | None = None) -> None:
        super().__init__(path, classes, partial=partial)
        self._writer = csv.writer(self._fh, lineterminator="\n")
        self._writer.writerow(CSV_FIELDS)

    def write(self, prediction: Prediction) -> None:
        """Append the prediction's rows."""
        head = [prediction.source, "" if prediction.frame is None else prediction.frame,
                prediction.width, prediction.height]
        rec = prediction.to_record(self.classes)
        if not rec["detections"]:
            self._writer.writerow(head + [""] * 8)
        for det in rec["detections"]:
            self._writer.writerow(head + det["xyxy"] + [
                det["score"], det["class_id"], det["class_name"],
                "" if det["track_id"] is None else det["track_id"]])


class CocoSink:
    """A COCO results JSON: ``[{image_id, category_id, bbox: [x, y, w, h], score}]``.

    Args:
        path: Output file.
        classes: Class names.
        image_ids: COCO image id by file path; a source matches the longest of its path
            suffixes listed (``ds/images/a.jpg`` matches ``images/a.jpg`` or ``a.jpg``, the
            ``file_name`` of a ground-truth JSON). Default: 1, 2, ... in order.
        category_ids: COCO category id per class id; default: the class id itself.
        partial: Where :meth:`abort` writes the results so far (None: nowhere).

    See :func:`coco_ids_from_gt` for both maps from a ground-truth file.
    """

    needs_image = False

    def __init__(self, path: str | Path, classes: Sequence[str], *,
                 image_ids: Mapping[str, int] | None = None,
                 category_ids: Sequence[int] | None = None,
                 partial: str | Path | None = None) -> None:
        self.path = Path(path)
        self.partial = None if partial is None else Path(partial)
        self.classes = tuple(classes)
        self.image_ids = image_ids
        self.category_ids = category_ids
        self._results: list[dict[str, Any]] = []
        self._count = 0

    def write(self, prediction: Prediction) -> None:
        """Add the prediction's detections."""
        self._count += 1
        key = prediction.source if prediction.frame is None else (
            f"{prediction.source}#{prediction.frame}")
        if self.image_ids is not None:
            parts = Path(key).parts
            found = next((self.image_ids[k] for k in (
                "/".join(parts[i:]) for i in range(len(parts))) if k in self.image_ids), None)
            if found is None:
                raise ConfigError(f"{key}: not in the COCO image id map; pass the ground-truth "
                                  f"JSON that lists it, or drop the map")
            image_id = found
        else:
            image_id = self._count
        d = prediction.detections
        for box, score, cid in zip(d.xyxy.tolist(), d.scores.tolist(), d.class_ids.tolist(),
                                   strict=True):
            cat = self.category_ids[cid] if self.category_ids is not None else cid
            self._results.append({
                "image_id": image_id, "category_id": int(cat), "score": round(score, 5),
                "bbox": [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2),
                         round(box[3] - box[1], 2)]})

    def close(self) -> None:
        """Write the JSON file."""
        atomic_write_json(self.path, self._results, indent=None)

    def abort(self) -> None:
        """Write the results so far to the partial path, if there is one."""
        if self.partial is not None:
            atomic_write_json(self.partial, self._results, indent=None)


def coco_ids_from_gt(gt: str | Path, classes: Sequence[str]) -> tuple[dict[str, int],
                                                                     list[int]]:
    """Image ids by ``file_name`` and the category id of each class, from a COCO GT file.

    With these, ``detforge predict --format coco --gt GT.json`` writes results that
    ``detforge evaluate --predictions`` scores against that file directly.

    Raises:
        DatasetError: The file is unreadable, not a COCO ground truth (checked as
            ``detforge evaluate --gt`` checks it), or an image has no ``file_name``.
        ConfigError: A class has no category of that name (the message lists the file's).
    """
    from detforge.evaluate.coco import load_json, validate_gt

    path = Path(gt)
    data = validate_gt(load_json(path, "COCO ground-truth"), path)
    nameless = [i for i, im in enumerate(data["images"]) if "file_name" not in im]
    if nameless:
        raise DatasetError(f"images[{nameless[0]}] lacks 'file_name'; predictions are matched "
                           "to ground-truth images by file name", path=path)
    images = {Path(str(im["file_name"])).as_posix(): int(im["id"]) for im in data["images"]}
    by_name = {str(c["name"]): int(c["id"]) for c in data["categories"]}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ConfigError(f"{path}: no category named {missing} (it has {sorted(by_name)}); "
                          "the model's class names must match the ground truth's")
    return images, [by_name[c] for c in classes]


def make_sink(fmt: str, path: str | Path, classes: Sequence[str], *,
              gt: str | Path | None = None, partial: bool = False) -> Sink:
    """A file sink by format name.

    Args:
        fmt: ``"jsonl"``, ``"coco"`` or ``"csv"``.
        path: Output file.
        classes: Class names.
        gt: COCO ground truth whose image and category ids the ``coco`` results use.
        partial: An unfinished run keeps its records in :func:`partial_path` of ``path``.

    Raises:
        ConfigError: Unknown format (the message lists the valid ones), ``gt`` with another
            format, or model classes ``gt`` does not name.
        DatasetError: An unusable ``gt`` file.
    """
    if gt is not None and fmt != "coco":
        raise ConfigError(f"--gt only applies to --format coco, not {fmt!r}")
    keep = partial_path(path) if partial else None
    if fmt == "jsonl":
        return JsonlSink(path, classes, partial=keep)
    if fmt == "csv":
        return CsvSink(path, classes, partial=keep)
    if fmt == "coco":
        if gt is None:
            return CocoSink(path, classes, partial=keep)
        image_ids, category_ids = coco_ids_from_gt(gt, classes)
        return CocoSink(path, classes, image_ids=image_ids, category_ids=category_ids,
                        partial=keep)
    raise ConfigError(f"unknown output format {fmt!r}; choose one of {list(SINK_FORMATS)}")


def read_jsonl(path: str | Path) -> list[Prediction]:
    """Read predictions written by :class:`JsonlSink`."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            dets = rec["detections"]
            tracks = [d["track_id"] for d in dets]
            det = Detections.from_arrays(
                np.array([d["xyxy"] for d in dets], np.float32).reshape(-1, 4),
                [d["score"] for d in dets], [d["class_id"] for d in dets],
                tracks if dets and all(t is not None for t in tracks) else None)
            out.append(Prediction(rec["source"], rec["frame"], rec["width"], rec["height"], det))
    return out


def read_csv(path: str | Path) -> list[Prediction]:
    """Read predictions written by :class:`CsvSink` (rows grouped by image, in order)."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault((row["source"], row["frame"]), []).append(row)
    out = []
    for (source, frame), rows in groups.items():
        rows = [r for r in rows if r["x1"] != ""] or []
        det = Detections.from_arrays(
            np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in rows],
                     np.float32).reshape(-1, 4),
            [float(r["score"]) for r in rows], [int(r["class_id"]) for r in rows],
            [int(r["track_id"]) for r in rows] if rows and all(r["track_id"] for r in rows)
            else None)
        first = groups[(source, frame)][0]
        out.append(Prediction(source, int(frame) if frame else None, int(first["width"]),
                              int(first["height"]), det))
    return out


def read_coco_results(path: str | Path) -> dict[int, Detections]:
    """Read a COCO results JSON into detections per image id (xywh -> xyxy)."""
    with open(path, encoding="utf-8") as fh:
        results = json.load(fh)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    out = {}
    for image_id, rs in by_image.items():
        xywh = np.array([r["bbox"] for r in rs], np.float32).reshape(-1, 4)
        xywh[:, 2:] += xywh[:, :2]
        out[image_id] = Detections.from_arrays(xywh, [r["score"] for r in rs],
                                               [r["category_id"] for r in rs])
    return out


"""Valid seed datasets of every format, the starting point of each fuzzed input.

Each seed is a small dataset folder described as ``{relative path: bytes}`` plus the
files worth mutating. The seeds use what real exports hold (COCO segmentation, crowd
regions and flags; a YOLO ``data.yaml`` with a names mapping; VOC ``difficult`` and
``truncated``; KITTI ``DontCare`` lines and 3-D fields), so mutations reach deep code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from PIL import Image

__all__ = ["SEEDS", "Seed", "png"]


def png(width: int, height: int, shade: int = 90) -> bytes:
    """A tiny RGB PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Seed:
    """A valid dataset to mutate.

    Attributes:
        format: The format name (a key of ``detforge.data.formats.FORMATS``).
        files: Every file of the dataset, by path relative to its root.
        targets: The files mutations apply to (annotation files, YAML, lists).
    """

    format: str
    files: dict[str, bytes]
    targets: tuple[str, ...]


def _coco() -> Seed:
    images = [{"id": 1, "file_name": "a.png", "width": 32, "height": 24, "license": 1},
              {"id": 2, "file_name": "b.png", "width": 20, "height": 20},
              {"id": 3, "file_name": "sub/c.png", "width": 16, "height": 16}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.5, 2, 10, 8], "area": 60,
         "iscrowd": 0, "segmentation": [[1.5, 2, 11.5, 2, 11.5, 10]]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [12, 4, 6, 6], "area": 36,
         "iscrowd": 1, "segmentation": {"counts": [0, 10, 20], "size": [24, 32]}},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0,
         "difficult": 1, "truncated": 0.25, "occluded": 1},
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        {"id": 5, "image_id": 3, "category_id": 3, "bbox": [2, 2, 8, 9], "iscrowd": 0,
         "keypoints": [3, 3, 2], "num_keypoints": 1, "attributes": {"pose": "left"}}]
    cats = [{"id": 1, "name": "car", "supercategory": "vehicle"},
            {"id": 3, "name": "person", "supercategory": "human"}]
    doc = {"info": {"year": 2024}, "licenses": [{"id": 1, "name": "CC0"}], "images": images,
           "annotations": anns, "categories": cats}
    files = {"images/train/a.png": png(32, 24), "images/train/b.png": png(20, 20, 30),
             "images/train/sub/c.png": png(16, 16, 200),
             "annotations/instances_train.json": json.dumps(doc, indent=1).encode()}
    return Seed("coco", files, ("annotations/instances_train.json",))


def _yolo() -> Seed:
    yaml_text = ("path: .\ntrain: images/train\nval: images/val\ntest: test.txt\n"
                 "names:\n  0: car\n  1: person\n  2: dog\n")
    files = {"data.yaml": yaml_text.encode(),
             "images/train/a.png": png(32, 24), "images/train/b.png": png(20, 20, 30),
             "images/val/c.png": png(16, 16, 200), "images/test/d.png": png(8, 8),
             "labels/train/a.txt": b"0 0.5 0.5 0.25 0.5\n1 0.1 0.2 0.1 0.1\n2 0.9 0.9 0.1 0.1\n",
             "labels/train/b.txt": b"0 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.5 0.5\n",
             "labels/val/c.txt": b"1 0.3 0.3 0.2 0.2\n",
             "labels/val/orphan.txt": b"2 0.5 0.5 0.2 0.2\n",
             "test.txt": b"./images/test/d.png\n"}
    return Seed("yolo", files, ("data.yaml", "labels/train/a.txt", "labels/train/b.txt",
                                "labels/val/c.txt", "test.txt"))


_VOC_OBJECT = ("<object><name>{name}</name><pose>Left</pose><truncated>{tr}</truncated>"
               "<difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
               "<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def _voc_xml(filename: str, w: int, h: int, objects: list[tuple[str, int, int, int, int]],
             ) -> bytes:
    body = "".join(_VOC_OBJECT.format(name=n, tr=k % 2, d=int(k == 1), x1=a, y1=b, x2=c, y2=d)
                   for k, (n, a, b, c, d) in enumerate(objects))
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<annotation><folder>JPEGImages</folder>'
            f"<filename>{filename}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size><segmented>0</segmented>{body}</annotation>\n").encode()


def _voc() -> Seed:
    files = {"JPEGImages/a.png": png(32, 24), "JPEGImages/b.png": png(20, 20, 30),
             "Annotations/a.xml": _voc_xml("a.png", 32, 24, [("cat", 1, 2, 10, 12),
                                                             ("dog", 12, 4, 30, 20)]),
             "Annotations/b.xml": _voc_xml("b.png", 20, 20, [("cat", 0, 0, 5, 5)]),
             "ImageSets/Main/train.txt": b"a\n", "ImageSets/Main/val.txt": b"# ids\nb\n",
             "labels.txt": b"cat\ndog\n"}
    return Seed("voc", files, ("Annotations/a.xml", "Annotations/b.xml",
                               "ImageSets/Main/train.txt", "labels.txt"))


def _kitti() -> Seed:
    files = {"image_2/000001.png": png(32, 24), "image_2/000002.png": png(20, 20, 30),
             "label_2/000001.txt": (b"Car 0.00 0 -1.58 1.00 2.00 10.00 12.00 1.48 1.60 3.69 "
                                    b"3.04 1.65 46.70 -1.59\nPedestrian 0.50 2 0.21 12.00 4.00 "
                                    b"30.00 20.00 1.89 0.48 1.20 1.84 1.47 8.41 0.01\n"
                                    b"DontCare -1 -1 -10 20.00 1.00 25.00 6.00 -1 -1 -1 -1000 "
                                    b"-1000 -1000 -10\n"),
             "label_2/000002.txt": (b"Car 0.00 0 -1.58 0.00 0.00 5.00 5.00 1.48 1.60 3.69 "
                                    b"3.04 1.65 46.70 -1.59 0.9\n"),
             "ImageSets/train.txt": b"000001\n", "ImageSets/val.txt": b"000002\n"}
    return Seed("kitti", files, ("label_2/000001.txt", "label_2/000002.txt",
                                 "ImageSets/train.txt"))


SEEDS = {"coco": _coco, "yolo": _yolo, "voc": _voc, "kitti": _kitti}
"""Seed builders by format."""

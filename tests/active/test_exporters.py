"""Pre-annotations as the labelling tools read them, and back through ``active merge``.

Label Studio: its own ``label-studio-converter`` parses the labelling config and converts an
export of our tasks to COCO. CVAT (and Datumaro) cannot be installed here, so the rules of
their importers are encoded below from their source (cited in :mod:`detforge.active.cvat`)
and checked; pycocotools reads the COCO file.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from detforge.active import merge, select
from detforge.active.cvat import COCO_JSON, write_cvat_coco, write_cvat_xml
from detforge.active.labels import ImageLabels
from detforge.active.labelstudio import read_labelstudio, write_labelstudio
from detforge.data.formats import read_dataset
from detforge.data.synth import synthesize

from .conftest import probe_onnx, textured, write_pool

CLASSES = ("cat", "dog & bird", "ünïcode")
ITEMS = [
    ImageLabels("b/two.png", 64, 48, np.array([[1.25, 2.5, 30.0, 40.125],
                                               [10.0, 0.0, 64.0, 48.0]]),
                ("dog & bird", "ünïcode"), np.array([0.9, 0.4], np.float32)),
    ImageLabels("a one.png", 64, 64, np.zeros((0, 4)), (), np.zeros(0, np.float32)),
    ImageLabels("c.png", 64, 64, np.array([[5.0, 6.0, 7.5, 9.0]]), ("cat",),
                np.array([0.3], np.float32)),
]


# --- CVAT for images 1.1: the importer's rules (cvat/apps/dataset_manager/formats/cvat.py
# load_anno; bindings.py match_dm_item / label lookup) ---------------------------------------

def cvat_import(xml: bytes, frames: list[str], labels: set[str]) -> dict[str, list[Any]]:
    """What CVAT's importer would load, or an AssertionError naming the broken rule."""
    root = ET.fromstring(xml)
    assert root.tag == "annotations"
    shapes: dict[str, list[Any]] = {}
    for image in root.iter("image"):
        name, frame_id = image.attrib["name"], image.attrib["id"]       # both required
        # match_dm_item: by name with extension, then without, then the id as frame number
        if name in frames:
            frame = name
        elif any(f.rsplit(".", 1)[0] == name.rsplit(".", 1)[0] for f in frames):
            frame = next(f for f in frames if f.rsplit(".", 1)[0] == name.rsplit(".", 1)[0])
        else:
            frame = frames[int(frame_id)]
        for box in image.iter("box"):
            assert box.attrib["label"] in labels, "label not in the task"
            pts = [float(box.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr")]
            assert box.attrib.get("occluded", "0") in ("0", "1")
            int(box.attrib.get("z_order", 0))
            float(box.attrib.get("rotation", 0))
            assert not list(box), "attributes must be declared for the label; none written"
            shapes.setdefault(frame, []).append((box.attrib["label"], pts))
    return shapes


def test_cvat_xml_follows_the_cvat_importer(tmp_path: Path) -> None:
    path = tmp_path / "annotations.xml"
    write_cvat_xml(path, ITEMS, CLASSES)
    xml = path.read_bytes()
    frames = sorted(it.key for it in ITEMS)  # CVAT orders a task's frames by name
    shapes = cvat_import(xml, frames, set(CLASSES))
    assert shapes == {"b/two.png": [("dog & bird", [1.25, 2.5, 30.0, 40.12]),
                                    ("ünïcode", [10.0, 0.0, 64.0, 48.0])],
                      "c.png": [("cat", [5.0, 6.0, 7.5, 9.0])]}
    root = ET.fromstring(xml)
    assert root.findtext("version") == "1.1"
    assert [e.text for e in root.iterfind("meta/task/labels/label/name")] == list(CLASSES)
    ids = {im.attrib["name"]: int(im.attrib["id"]) for im in root.iter("image")}
    assert ids == {name: i for i, name in enumerate(frames)}  # the id fallback is right too
    renamed = cvat_import(xml.replace(b'name="c.png"', b'name="c.jpg"'), frames, set(CLASSES))
    assert "c.png" in renamed  # matched without the extension, as match_dm_item does


def test_cvat_labels_json_is_the_raw_label_editor_format(tmp_path: Path) -> None:
    from detforge.active.cvat import write_cvat_labels

    write_cvat_labels(tmp_path / "labels.json", CLASSES)
    labels = json.loads((tmp_path / "labels.json").read_text(encoding="utf-8"))
    assert [lab["name"] for lab in labels] == list(CLASSES)
    assert all(lab["type"] == "rectangle" and lab["attributes"] == [] for lab in labels)


# --- COCO 1.0 for CVAT: pycocotools, and Datumaro's coco importer's field rules -------------

def test_cvat_coco_is_read_by_pycocotools_and_fits_datumaro(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    archive = write_cvat_coco(tmp_path / "coco", ITEMS, CLASSES)
    coco = COCO(str(tmp_path / "coco" / COCO_JSON))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert min(coco.getCatIds()) == 1                      # 0 means "no label" to Datumaro
    doc = json.loads((tmp_path / "coco" / COCO_JSON).read_text(encoding="utf-8"))
    for ann in doc["annotations"]:                         # _CocoBase._load_annotations
        assert isinstance(ann["id"], int) and isinstance(ann["iscrowd"], int)
        assert isinstance(ann["image_id"], int) and isinstance(ann["category_id"], int)
        assert len(ann["bbox"]) == 4 and ann["segmentation"] == []
    for im in doc["images"]:                               # _CocoBase._parse_item
        assert isinstance(im["file_name"], str) and isinstance(im["width"], int)
    with zipfile.ZipFile(archive) as zf:                   # DirPathExtracter
        assert set(zf.namelist()) == {COCO_JSON, "images/"}
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert coco.loadImgs(1)[0]["file_name"] == "a one.png" and ann == []
    two = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    np.testing.assert_allclose(two[0]["bbox"], [1.25, 2.5, 28.75, 37.625])


# --- Label Studio: its own converter -------------------------------------------------------

def test_labelstudio_config_and_tasks_are_read_by_label_studio_tools(tmp_path: Path) -> None:
    from label_studio_converter.imports.coco import convert_coco_to_ls
    from label_studio_tools.core.label_config import parse_config

    write_labelstudio(tmp_path, ITEMS, CLASSES, values=[0.9, None, 0.1])
    schema = parse_config((tmp_path / "label_config.xml").read_text(encoding="utf-8"))
    assert schema == {"label": {"type": "RectangleLabels", "to_name": ["image"],
                                "inputs": [{"type": "Image", "value": "image"}],
                                "labels": list(CLASSES),
                                "labels_attrs": schema["label"]["labels_attrs"]}}
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    # Our regions have the keys Label Studio's own COCO importer writes for a box.
    write_cvat_coco(tmp_path / "coco", ITEMS, CLASSES)
    convert_coco_to_ls(str(tmp_path / "coco" / COCO_JSON), str(tmp_path / "ls.json"),
                       out_type="predictions")
    theirs = json.loads((tmp_path / "ls.json").read_text(encoding="utf-8"))
    their_region = next(r for t in theirs for p in t["predictions"] for r in p["result"])
    for task in tasks:
        assert set(task["data"]) >= {"image", "detforge_key"}
        for region in task["predictions"][0]["result"]:
            assert set(region) - {"score"} == set(their_region)
            assert set(region["value"]) == set(their_region["value"])
            tag = schema[region["from_name"]]
            assert region["to_name"] in tag["to_name"]
            assert region["type"] == tag["type"].lower()
            assert set(region["value"]["rectanglelabels"]) <= set(tag["labels"])
    assert [t["data"]["detforge_rank"] for t in tasks] == [1, 2, 3]
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=b/two.png"
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=a%20one.png"


def _accepted(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Label Studio export in which each prediction was accepted as the annotation."""
    out = []
    for i, t in enumerate(tasks, start=1):
        ann = {"id": i, "result": t["predictions"][0]["result"], "was_cancelled": False,
               "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
        out.append({**t, "id": i, "annotations": [ann]})
    return out


def test_label_studio_converter_reads_the_accepted_predictions_back(tmp_path: Path) -> None:
    from label_studio_converter import Converter

    write_labelstudio(tmp_path, ITEMS, CLASSES)
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_accepted(tasks)), encoding="utf-8")
    conv = Converter(str(tmp_path / "label_config.xml"), str(tmp_path),
                     download_resources=False)
    conv.convert_to_coco(str(export), str(tmp_path / "conv"), is_dir=False)
    coco = json.loads((tmp_path / "conv" / "result.json").read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = sorted((names[a["category_id"]], *[round(v, 4) for v in a["bbox"]])
                 for a in coco["annotations"])
    want = sorted((lab, *[round(v, 4) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])])
                  for it in ITEMS for b, lab in zip(it.xyxy.tolist(), it.labels, strict=True))
    assert got == want
    ours = read_labelstudio(export)
    for it in ITEMS:
        back = next(im for im in ours.images if im.key == it.key)
        np.testing.assert_allclose(back.xyxy, it.xyxy, atol=1e-4)
        assert back.labels == it.labels


# --- the whole loop: select -> tool files -> export -> merge, nothing lost ---------------------

@pytest.fixture
def selection(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(parent dataset, selection folder, pool) with two classes; every pick has boxes."""
    parent = tmp_path / "ds"
    synthesize(parent, images=6, classes=2, seed=3, size=(64, 64))
    model = probe_onnx(tmp_path / "m.onnx", classes=("circle", "square"), slopes=[1.0, -1.0],
                       offsets=[0.0, 1.0])
    pool = write_pool(tmp_path / "pool", {f"p{i}.png": textured(v, seed=40 + i)
                                          for i, v in enumerate([60, 120, 190, 230])})
    select(model, pool, budget=3, out=tmp_path / "sel", strategy="entropy",
           preannotate_conf=0.2, progress=False)
    return parent, tmp_path / "sel", pool


def _boxes(ds_path: Path) -> dict[str, list[tuple[str, list[float]]]]:
    from detforge.data.images import image_key

    ds = read_dataset(ds_path)
    out: dict[str, list[tuple[str, list[float]]]] = {}
    for rows, f in zip(ds.boxes_per_image(), ds.images.file.tolist(), strict=True):
        out[image_key(str(f))] = sorted((ds.classes.names[ds.boxes.class_id[r]],
                                         ds.boxes.xyxy[r].tolist()) for r in rows)
    return out


def _expected(sel: Path) -> dict[str, list[tuple[str, list[float]]]]:
    from detforge.active.labelstudio import read_labelstudio as rd

    tasks = json.loads((sel / "labelstudio" / "tasks.json").read_text(encoding="utf-8"))
    export = sel.parent / "expected.json"
    export.write_text(json.dumps(_accepted(tasks)), encoding="utf-8")
    return {im.key: sorted(zip(im.labels, im.xyxy.tolist(), strict=True))
            for im in rd(export).images}


@pytest.mark.parametrize("tool", ["cvat-xml", "cvat-zip", "cvat-coco", "labelstudio"])
def test_exports_are_merged_back_without_loss(selection: tuple[Path, Path, Path],
                                              tmp_path: Path, tool: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETFORGE_HOME", str(tmp_path / "home"))
    parent, sel, _ = selection
    if tool == "cvat-xml":
        labels = sel / "cvat" / "annotations.xml"
    elif tool == "cvat-zip":  # CVAT's export is a zip holding annotations.xml
        labels = tmp_path / "task_export.zip"
        with zipfile.ZipFile(labels, "w") as zf:
            zf.write(sel / "cvat" / "annotations.xml", "annotations.xml")
    elif tool == "cvat-coco":
        labels = sel / "cvat" / "coco.zip"
    else:
        tasks = json.loads((sel / "labelstudio" / "tasks.json").read_text(encoding="utf-8"))
        labels = tmp_path / "ls_export.json"
        labels.write_text(json.dumps(_accepted(tasks)), encoding="utf-8")
    res = merge(parent, labels, out=tmp_path / "ds2", selection=sel)
    before, after, want = _boxes(parent), _boxes(tmp_path / "ds2"), _expected(sel)
    assert res.added_images == 3 and res.added_boxes == sum(len(v) for v in want.values()) > 0
    assert {k: v for k, v in after.items() if k in before} == before   # parent untouched
    atol = 0.005 if tool.startswith("cvat-x") or tool == "cvat-zip" else 1e-4
    for key, boxes in want.items():
        got = after[key]
        assert [c for c, _ in got] == [c for c, _ in boxes]
        for (_, g), (_, w) in zip(got, boxes, strict=True):
            assert all(math.isclose(a, b, abs_tol=atol) for a, b in zip(g, w, strict=True))
    assert res.parent_version != res.version
    lineage = json.loads((tmp_path / "ds2" / "detforge-lineage.json").read_text())
    assert lineage["selection"]["strategy"] == "entropy"
    assert lineage["parent"]["version"] == res.parent_version

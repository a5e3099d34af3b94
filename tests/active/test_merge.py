"""``active merge`` refusals (one line, nothing written), options that accept them, lineage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from detforge.active import merge, read_labelled
from detforge.cli import app
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.catalog import Catalog
from detforge.data.formats import read_dataset, write_dataset
from detforge.data.synth import synthesize

from .conftest import last_line, textured, write_pool


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A parent dataset (circle, square) and two new images with a Label Studio export."""
    monkeypatch.setenv("DETFORGE_HOME", str(tmp_path / "home"))
    parent = tmp_path / "ds"
    synthesize(parent, images=5, classes=2, seed=2, size=(64, 64))
    images = write_pool(tmp_path / "new", {"n1.png": textured(90, seed=1),
                                           "n2.png": textured(170, seed=2)})
    return {"parent": parent, "images": images, "tmp": tmp_path}


def _region(label: str, x: float = 10, y: float = 10, w: float = 20, h: float = 30,
            rotation: float = 0, kind: str = "rectanglelabels") -> dict[str, Any]:
    value: dict[str, Any] = {"x": x, "y": y, "width": w, "height": h, "rotation": rotation,
                             kind: [label]}
    return {"type": kind, "from_name": "label", "to_name": "image", "original_width": 64,
            "original_height": 64, "value": value}


def _ls_export(path: Path, tasks: dict[str, list[dict[str, Any]] | None]) -> Path:
    out = []
    for i, (key, result) in enumerate(tasks.items(), start=1):
        anns = [] if result is None else [{"id": i, "result": result, "was_cancelled": False,
                                           "updated_at": f"2026-01-0{i}T00:00:00Z"}]
        out.append({"id": i, "data": {"image": f"/data/upload/1/abcd1234-{key}"},
                    "annotations": anns})
    path.write_text(json.dumps(out), encoding="utf-8")
    return path


def _merge(w: dict[str, Path], labels: Path, **kwargs: Any) -> Any:
    return merge(w["parent"], labels, out=w["tmp"] / "out", images=w["images"], **kwargs)


def test_label_studio_upload_names_and_unannotated_tasks(world: dict[str, Path]) -> None:
    labels = _ls_export(world["tmp"] / "e.json", {"n1.png": [_region("circle")],
                                                  "n2.png": None})
    res = _merge(world, labels)
    assert res.added_images == 1 and res.unannotated == ["n2.png"]
    ds = read_dataset(world["tmp"] / "out")
    assert ds.num_images == 6
    row = [str(f).endswith("n1.png") for f in ds.images.file].index(True)
    box = ds.boxes.xyxy[ds.boxes.image_index == row]
    np.testing.assert_allclose(box, [[6.4, 6.4, 19.2, 25.6]])
    assert ds.images.split[row] == "train"


@pytest.mark.parametrize(("tasks", "kwargs", "match"), [
    ({"n1.png": [_region("dgo")]}, {}, r"labels \['dgo'\] are not classes.*--add-classes"),
    ({"n1.png": [_region("circle", kind="polygonlabels")]}, {}, r"1 polygonlabels.*--allow-lossy"),
    ({"n1.png": [_region("circle", rotation=30)]}, {}, r"1 rotated rectangle.*--allow-lossy"),
    ({"n1.png": None, "n2.png": None}, {}, r"nothing is annotated yet \(2 task"),
    ({"gone.png": [_region("circle")]}, {}, r"1 labelled image\(s\) cannot be found.*gone.png"),
    ({"n1.png": [_region("circle", x=110)]}, {}, r"1 label error.*outside"),
], ids=["unknown-class", "polygon", "rotated", "nothing-annotated", "missing-image",
        "box-outside"])
def test_bad_labels_are_one_line_errors_and_write_nothing(
        world: dict[str, Path], tasks: dict[str, Any], kwargs: dict[str, Any], match: str) -> None:
    labels = _ls_export(world["tmp"] / "e.json", tasks)
    with pytest.raises(DatasetError, match=match) as info:
        _merge(world, labels, **kwargs)
    assert "\n" not in str(info.value)
    assert not (world["tmp"] / "out").exists()
    assert not [p for p in world["tmp"].iterdir() if p.name.startswith(".out")]
    assert not (world["tmp"] / "home").exists()  # nothing catalogued either


def test_options_accept_new_classes_and_lossy_shapes(world: dict[str, Path]) -> None:
    labels = _ls_export(world["tmp"] / "e.json", {
        "n1.png": [_region("triangle"), _region("circle", kind="polygonlabels"),
                   _region("circle", x=90)],   # partly outside: a warning, kept as it is
        "n2.png": [_region("square", x=25, y=25, w=10, h=10, rotation=90)]})
    res = _merge(world, labels, add_classes=True, allow_lossy=True)
    assert res.lossy == {"polygonlabels": 1, "rotated rectangle": 1} and res.added_boxes == 3
    assert res.warnings == {"box_partly_outside": 1}
    ds = read_dataset(world["tmp"] / "out")
    assert list(ds.classes.names) == ["circle", "square", "triangle"]
    row = [str(f).endswith("n2.png") for f in ds.images.file].index(True)
    # 90 degrees clockwise about the top-left corner (16, 16): x from 16 - 6.4 to 16
    np.testing.assert_allclose(ds.boxes.xyxy[ds.boxes.image_index == row],
                               [[9.6, 16.0, 16.0, 22.4]], atol=1e-9)


def test_size_mismatch_and_key_conflicts(world: dict[str, Path]) -> None:
    bad = [_region("circle")]
    bad[0]["original_width"] = 128
    with pytest.raises(DatasetError, match=r"64x64 on disk.*drawn on another picture"):
        _merge(world, _ls_export(world["tmp"] / "e.json", {"n1.png": bad}))
    parent = read_dataset(world["parent"])
    first = Path(str(parent.images.file[0])).name
    shutil.copy(parent.image_path(0), world["images"] / first)       # the same picture
    labels = _ls_export(world["tmp"] / "e.json", {first: [_region("square")]})
    with pytest.raises(DatasetError, match="already labelled in the parent.*--replace"):
        _merge(world, labels)
    res = _merge(world, labels, replace=True)
    assert res.replaced == 1
    ds = read_dataset(world["tmp"] / "out")
    assert ds.num_images == 5
    row = [Path(str(f)).name == first for f in ds.images.file].index(True)
    assert [ds.classes.names[c] for c in ds.boxes.class_id[ds.boxes.image_index == row]] == \
        ["square"]
    write_pool(world["images"], {first: textured(10, seed=7)})      # another picture, same name
    with pytest.raises(DatasetError, match="another picture named.*--prefix"):
        merge(world["parent"], labels, out=world["tmp"] / "out2", images=world["images"])
    res = merge(world["parent"], labels, out=world["tmp"] / "out3", images=world["images"],
                prefix="round1/")
    assert res.added_images == 1


def test_catalogue_records_parent_and_selection(world: dict[str, Path]) -> None:
    labels = _ls_export(world["tmp"] / "e.json", {"n1.png": [_region("circle")]})
    res = _merge(world, labels, name="shapes")
    cat = Catalog()
    entries = {e.version: e for e in cat.list()}
    assert set(entries) == {res.parent_version, res.version}
    child = cat.show("shapes")
    assert child.version == res.version and child.parent == res.parent_version
    assert child.selection is not None and child.selection["added"]["images"] == 1
    assert entries[res.parent_version].parent is None
    assert "parent:    " + res.parent_version in child.to_text()


def test_dataset_formats_are_read_through_detforge_readers(world: dict[str, Path]) -> None:
    from detforge.core.classes import ClassMap
    from detforge.data.dataset import BoxTable, Dataset, ImageTable

    ds = Dataset(ClassMap.from_names(["circle", "square"]),
                 ImageTable.build(["n1.png", "n2.png"], [64, 64], [64, 64]),
                 BoxTable.build([0, 1], [[1, 2, 30, 40], [5, 5, 9, 9]], [1, 0]),
                 root=world["images"])
    for fmt in ("coco", "voc", "yolo"):
        folder = world["tmp"] / f"lab_{fmt}"
        write_dataset(ds if fmt != "yolo" else ds.with_split(["train", "val"]), folder, fmt)
        src = read_labelled(folder)
        assert src.tool == fmt and src.dataset.num_boxes == 2
        res = merge(world["parent"], folder, out=world["tmp"] / f"out_{fmt}", record=False)
        assert (res.added_images, res.added_boxes) == (2, 2)


def test_output_must_be_new_and_cli_errors_are_one_line(world: dict[str, Path]) -> None:
    labels = _ls_export(world["tmp"] / "e.json", {"n1.png": [_region("dgo")]})
    (world["tmp"] / "out").mkdir()
    (world["tmp"] / "out" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        _merge(world, labels)
    runner = CliRunner()
    result = runner.invoke(app, ["active", "merge", str(world["parent"]), str(labels),
                                 "--out", str(world["tmp"] / "o2"), "--images",
                                 str(world["images"])])
    assert result.exit_code == 2
    assert last_line(result.output).startswith("DatasetError: ")
    assert "--add-classes" in last_line(result.output) and "Traceback" not in result.output
    ok = _ls_export(world["tmp"] / "e2.json", {"n1.png": [_region("circle")], "n2.png": None})
    result = runner.invoke(app, ["active", "merge", str(world["parent"]), str(ok), "--out",
                                 str(world["tmp"] / "o3"), "--images", str(world["images"])])
    assert result.exit_code == 0, result.output
    assert "+1 images, +1 boxes" in result.output
    assert "left out: 1 task(s) not annotated yet" in result.output

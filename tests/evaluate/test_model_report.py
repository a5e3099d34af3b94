"""evaluate_model through the runtime (FakeBackend), compare() and the HTML report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detforge.core import ClassMap, ConfigError
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.evaluate import (
    EvalResult,
    compare,
    evaluate_model,
    render_html_report,
    write_html_report,
)
from detforge.evaluate.coco import dataset_to_coco
from detforge.evaluate.metrics import evaluate_coco

from .conftest import make_coco_pair


def _image_dataset(root: Path) -> Dataset:
    """Bright images hold one full-frame "thing"; dark images hold nothing."""
    from detforge.testing import solid_image, write_image

    files, boxes = [], []
    for i, value in enumerate([200, 20, 220, 30, 180]):
        write_image(root / f"{i}.png", solid_image(64, 64, value))
        files.append(f"{i}.png")
        if value > 100:
            boxes.append(i)
    images = ImageTable.build(files, [64] * 5, [64] * 5, split=["val"] * 4 + ["train"])
    table = BoxTable.build(boxes, [[0, 0, 64, 64]] * len(boxes), [0] * len(boxes))
    return Dataset(ClassMap.from_names(["thing"]), images, table, root=root)


def test_evaluate_model_with_fake_backend(tmp_path: Path) -> None:
    from detforge.testing import FakeBackend, fake_model

    ds = _image_dataset(tmp_path)
    backend = FakeBackend.echo()
    res = evaluate_model(fake_model(backend), ds, split="val", batch=3)
    assert backend.batch_sizes == [3, 1]  # the 4 val images, in batches of 3
    assert res.num_images == 4 and res.num_detections == 4
    assert res.stats[1] == pytest.approx(1.0)  # bright TPs outscore dark FPs
    thing = res.per_class["thing"]
    assert (thing.precision, thing.recall, thing.support) == (1.0, 1.0, 2)


def test_evaluate_model_rejects_foreign_classes(tmp_path: Path) -> None:
    from detforge.testing import FakeBackend, fake_model

    ds = _image_dataset(tmp_path)
    with pytest.raises(ConfigError, match="lack the dataset classes"):
        evaluate_model(fake_model(FakeBackend.echo(), classes=("car",)), ds)


def _result(seed: int) -> EvalResult:
    gt, dts = make_coco_pair(seed, images=20)
    return evaluate_coco(gt, dts)


def test_compare_table() -> None:
    a, b = _result(0), _result(1)
    comp = compare({"fp32": a, "int8": b})
    text = comp.to_text()
    assert text.splitlines()[0].split() == ["model", "AP", "AP50", "AP75", "APs", "APm",
                                            "APl", "AR100", "dAP"]
    assert text.splitlines()[1].split()[8] == "+0.000" and "class_0" not in text
    per_class = comp.to_text(per_class=True).splitlines()
    assert per_class[4].split() == ["class", "fp32", "int8"]
    assert per_class[5].split() == ["class_0", f"{a.per_class['class_0'].ap:.3f}",
                                    f"{b.per_class['class_0'].ap:.3f}"]
    assert comp.to_dict()["int8"]["summary"]["AP"] == b.stats[0]
    assert comp.to_markdown().count("\n") == 3 + 1 + 2 + 4  # summary, blank, class table
    with pytest.raises(ConfigError):
        compare({})


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    page = render_html_report({"a": _result(0), "b": _result(2)}, subtitle="x on y")
    for title in ("Comparison", "Per class: a", "PR curves: b", "F1 versus confidence",
                  "Confusion matrix", "Worst images"):
        assert title in page
    assert page.count("data:image/png;base64,") == 4  # PR and F1 curves of each
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    out = write_html_report(tmp_path / "r" / "report.html", _result(0))
    assert "Summary (COCO bbox)" in out.read_text(encoding="utf-8")


def test_dataset_to_coco_uses_coco_source_ids() -> None:
    ds = Dataset(ClassMap(("a", "b"), source_ids=(3, 7)), ImageTable.build(["x.jpg"], [9], [9]),
                 BoxTable.build([0], [[0, 0, 4, 4]], [1]), info={"format": "coco"})
    gt = dataset_to_coco(ds)
    assert gt.cat_ids == (3, 7) and gt.coco["annotations"][0]["category_id"] == 7

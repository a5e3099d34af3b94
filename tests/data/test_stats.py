from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from detforge.core.classes import ClassMap
from detforge.data.dataset import BoxTable, Dataset, ImageTable
from detforge.data.stats import (
    Distribution,
    dataset_stats,
    format_stats,
    render_stats_html,
)


def hand_dataset() -> Dataset:
    """4 images, 7 boxes; every expected number below is counted by hand."""
    images = ImageTable.build(
        ["images/train/a.jpg", "images/val/b.jpg", "images/c.jpg", "images/train/d.jpg"],
        [100, 100, 0, 200], [50, 50, 0, 100], split=["train", "val", "", "train"])
    boxes = BoxTable.build(
        [0, 0, 0, 1, 1, 3, 3],
        [[0, 0, 10, 20],      # a: cat   10x20   area 200   aspect 0.5
         [0, 0, 40, 40],      # a: dog   40x40   area 1600  aspect 1
         [5, 5, 105, 55],     # a: cat  100x50   area 5000  aspect 2
         [0, 0, 20, 10],      # b: dog   20x10   area 200   aspect 2
         [0, 0, 50, 50],      # b: ignore region (not an object)
         [0, 0, 0, 10],       # d: cat, zero width (degenerate)
         [1, 1, 11, 11]],     # d: class id 7 (unknown)  10x10  area 100  aspect 1
        [0, 1, 0, 1, -1, 0, 7],
        ignore=[False, False, False, False, True, False, False])
    return Dataset(ClassMap.from_names(["cat", "dog"]), images, boxes)


def test_stats_match_hand_counts() -> None:
    s = dataset_stats(hand_dataset())
    assert s.splits == ("train", "val", "unsplit")
    assert s.images == {"train": 2, "val": 1, "unsplit": 1}
    assert s.empty_images == {"train": 0, "val": 0, "unsplit": 1}
    assert s.boxes == {"train": 5, "val": 1, "unsplit": 0}
    assert s.class_boxes == {"train": (3, 1), "val": (0, 1), "unsplit": (0, 0)}
    assert s.class_images == {"train": (2, 1), "val": (0, 1), "unsplit": (0, 0)}
    assert s.total_class_boxes() == (3, 2) and s.total_class_images() == (2, 2)
    assert (s.ignore_boxes, s.invalid_class_boxes, s.degenerate_boxes) == (1, 1, 1)
    assert s.boxes_per_image == (1, 1, 1, 1)  # c: 0, b: 1, d: 2, a: 3
    assert s.num_images == 4 and s.num_boxes == 6
    assert (s.box_width.count, s.box_width.min, s.box_width.max) == (5, 10.0, 100.0)
    assert s.box_width.median == 20.0 and s.box_height.median == 20.0
    assert s.box_area.mean == pytest.approx((200 + 1600 + 5000 + 200 + 100) / 5)
    assert (s.box_aspect.min, s.box_aspect.median, s.box_aspect.max) == (0.5, 1.0, 2.0)
    assert s.size_buckets == {"small": 3, "medium": 2, "large": 0}
    assert s.image_sizes == ((100, 50, 2), (200, 100, 1))
    assert s.unknown_size_images == 1


def test_histograms_count_every_value() -> None:
    s = dataset_stats(hand_dataset())
    for d in (s.box_width, s.box_height, s.box_area, s.box_aspect):
        assert sum(d.counts) == d.count == 5
        assert len(d.edges) == len(d.counts) + 1
        assert d.edges[0] <= d.min and d.edges[-1] >= d.max


@pytest.mark.parametrize(("values", "log", "expected_counts"), [
    ([], False, ()),
    ([3.0, 3.0], False, (0, 2)),
    ([0.0, 1.0, 2.0, 2.0], False, (1, 3)),
    ([1.0, 10.0, 100.0], True, (1, 2)),
    ([5.0], True, (1, 0)),
], ids=["empty", "constant", "linear", "log", "single-log"])
def test_distribution_bins(values: list[float], log: bool,
                           expected_counts: tuple[int, ...]) -> None:
    d = Distribution.of(np.asarray(values, np.float64), bins=2, log=log)
    assert d.counts == expected_counts
    assert sum(d.counts) == len(values)


def test_no_splits_and_no_boxes() -> None:
    ds = Dataset(ClassMap.from_names(["a"]), ImageTable.build(["x.jpg"], [10], [10]),
                 BoxTable.empty())
    s = dataset_stats(ds)
    assert s.splits == ("unsplit",) and s.empty_images == {"unsplit": 1}
    assert s.box_area.count == 0 and s.boxes_per_image == (1,)
    assert "unsplit" in format_stats(s)


def test_to_dict_is_json() -> None:
    d = json.loads(json.dumps(dataset_stats(hand_dataset()).to_dict()))
    assert d["class_boxes"]["train"] == [3, 1]
    assert d["num_boxes"] == 6 and d["box_width"]["count"] == 5
    assert d["image_sizes"] == [[100, 50, 2], [200, 100, 1]]


def test_text_table() -> None:
    text = format_stats(dataset_stats(hand_dataset()))
    lines = text.splitlines()
    assert lines[0].split() == ["split", "images", "empty", "boxes"]
    assert lines[1].split() == ["train", "2", "0", "5"]
    assert ["cat", "3", "0", "0", "3", "2"] in [line.split() for line in lines]
    assert "degenerate boxes: 1" in text and "100x50 (2)" in text


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    path = render_stats_html(dataset_stats(hand_dataset()), tmp_path / "sub" / "stats.html")
    html = path.read_text(encoding="utf-8")
    assert path == tmp_path / "sub" / "stats.html"
    assert html.count('<img src="data:image/png;base64,') == 4
    assert not re.search(r"https?://", html)
    for b64 in re.findall(r"base64,([A-Za-z0-9+/=]+)", html):
        png = base64.b64decode(b64)
        assert png.startswith(b"\x89PNG") and b"http" not in png
    assert "<td>cat</td>" in html and "unsplit" in html
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left


def test_bccd_stats_match_the_xml_and_split_covers_every_class(bccd_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from detforge.data.formats import read_dataset
    from detforge.data.split import split_dataset

    names: dict[str, int] = {}
    xmls = sorted((bccd_path / "Annotations").glob("*.xml"))
    for xml in xmls:
        for obj in ET.parse(xml).getroot().iter("object"):
            name = obj.findtext("name", "")
            names[name] = names.get(name, 0) + 1
    ds = read_dataset(bccd_path, "voc")
    s = dataset_stats(ds)
    assert s.num_images == len(xmls) and s.num_boxes == sum(names.values())
    assert dict(zip(s.classes, s.total_class_boxes(), strict=True)) == names
    rep = split_dataset(ds, seed=0).report
    assert (rep.class_images > 0).all()
    np.testing.assert_allclose(rep.achieved, (0.8, 0.1, 0.1), atol=0.01)


def test_report_helpers_escape_and_align() -> None:
    from detforge.data.report import Section, html_table, render_page, text_table

    assert text_table(["name", "n"], [["a", 1], ["long", 2.5]]).splitlines() == [
        "name      n", "a         1", "long  2.500"]
    table = html_table(["<b>"], [["a&b"]])
    assert "<th>&lt;b&gt;</th>" in table and "<td>a&amp;b</td>" in table
    page = render_page("R & D", [Section("<s>", "<p>ok</p>")], subtitle="x<y")
    assert page.startswith("<!DOCTYPE html>") and "<title>R &amp; D</title>" in page
    assert "<h2>&lt;s&gt;</h2>" in page and "<p>ok</p>" in page and "x&lt;y" in page
    assert not re.search(r"https?://|<link|<script", page)


def test_figure_to_data_uri_is_a_png() -> None:
    from detforge.data.report import figure_to_data_uri, html_image, new_figure

    fig = new_figure(2, 2)
    fig.subplots().plot([0, 1], [1, 0])
    uri = figure_to_data_uri(fig, dpi=50)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG")
    assert html_image(uri, 'a "plot"') == f'<img src="{uri}" alt="a &quot;plot&quot;">'

"""Reports stay readable at 80 classes (COCO): every curve in its own colour, a confusion
matrix whose labels do not overlap and whose counts are written, short terminal lines."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from detforge.evaluate import EvalResult, compare, evaluate_coco, render_html_report
from detforge.evaluate.report import class_colours, confusion_html, pr_figure

from .conftest import make_coco_pair

K = 80


@pytest.fixture(scope="module")
def pair() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_coco_pair(11, images=90, classes=K)


@pytest.fixture(scope="module")
def result(pair: tuple[dict[str, Any], list[dict[str, Any]]]) -> EvalResult:
    return evaluate_coco(*pair)


def test_every_class_has_its_own_curve_and_colour(result: EvalResult) -> None:
    with_gt = [c for c in result.class_names if result.per_class[c].support > 0]
    assert len(with_gt) > 70
    ax = pr_figure(result).axes[0]
    assert len(ax.lines) == len(with_gt)
    assert len({tuple(line.get_color()) for line in ax.lines}) == len(with_gt)
    assert len(ax.get_legend().get_texts()) == len(with_gt)
    assert len(set(class_colours(K))) == K and len(set(class_colours(7))) == 7


class _Table(HTMLParser):
    """Rows of cell texts of the first table inside ``<div class="cm">``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div" and ("class", "cm") in attrs:
            self._depth = 1
        elif self._depth and tag == "tr":
            self.rows.append([])
        elif self._depth and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "div":
            self._depth = 0

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_confusion_matrix_is_a_table_with_every_count(result: EvalResult) -> None:
    table = _Table()
    table.feed(confusion_html(result))
    labels = [*result.class_names, "background"]
    assert table.rows[0][1:] == labels
    assert [r[0] for r in table.rows[1:]] == labels
    got = np.array([[int(c) if c else 0 for c in r[1:]] for r in table.rows[1:]])
    np.testing.assert_array_equal(got, result.confusion_matrix)


class _Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.tags: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def test_html_report_lists_every_class(result: EvalResult) -> None:
    page = render_html_report(result)
    outline = _Outline()
    outline.feed(page)
    assert outline.headings[:2] == ["Summary (COCO bbox)", "Per class: result"]
    assert "Most frequent confusions" in page
    for name in result.class_names:
        assert f"<td>{name}</td>" in page


def test_terminal_output_has_short_lines(tmp_path: Path, result: EvalResult,
                                         pair: tuple[dict[str, Any], list[Any]]) -> None:
    from detforge.cli import app

    gt, dts = pair
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dts))
    out = CliRunner().invoke(app, ["evaluate", "--predictions", str(tmp_path / "dt.json"),
                                   "--gt", str(tmp_path / "gt.json")])
    assert out.exit_code == 0, out.output
    assert max(map(len, out.stdout.splitlines())) < 120
    assert sum(ln.startswith("class_") for ln in out.stdout.splitlines()) == K
    both = compare({"fp32": result, "int8": result}).to_text(per_class=True)
    assert max(map(len, both.splitlines())) < 120

"""The demo's front page and the fidelity page read like reports: checked as HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from detforge.demo.report import STEP_TITLES, render_index
from detforge.evaluate.fidelity_page import render_fidelity_page

VOID = {"meta", "img", "br", "hr", "input", "link", "path", "line", "rect"}


class _Page(HTMLParser):
    """Checks nesting, collects visible text, links and SVG elements."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag in ("style", "title") and "svg" not in self.stack:
            self._skip += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in ("style", "title") and "svg" not in self.stack:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.text.append(data.strip())


def _parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    assert p.errors == [] and p.stack == [], (p.errors, p.stack)
    return p


def _assert_reads_like_a_report(p: _Page) -> None:
    text = " ".join(p.text)
    assert not re.search(r"\d\.\d{5,}", text), "a raw float reached the page"
    assert not re.search(r"[{}]|\[\s*'|\bNone\b|\bTrue\b|\bFalse\b", text), \
        "a Python structure reached the page"


SUMMARY: dict[str, Any] = {
    "dataset_version": "sha256:1234abcd", "report": "/x/index.html",
    "figures": {"images": 200, "boxes": 1234, "findings": {"error": 0, "warning": 2, "info": 1},
                "map50_95": 0.5422182241240777, "map50": 0.8123456789,
                "map50_95_pt": 0.55, "map50_95_onnx": 0.5422182241240777,
                "map50_95_int8": 0.5333333333, "parity_max_abs_diff": 3.0517578125e-05,
                "fp32_ips": 123.456789, "int8_ips": 222.22222, "int8_speedup": 1.8000001,
                "bundle_targets": {"orin-nano": "int8", "t4": "int8"}, "verify_passed": True,
                "video_frames": 48, "track_ids": 7, "predict_ips": 55.55555},
    "benchmark_rows": [{"model": "model.onnx", "batch": 1, "model_only_ips": 101.23456,
                        "end_to_end_ips": 80.5}],
    "seconds": {k: 1.23456 for k in STEP_TITLES},
}


def test_index_reads_like_a_report(tmp_path: Path) -> None:
    for key in ("evaluation_report", "fidelity_report", "stats_report", "onnx", "tracks"):
        (tmp_path / key).touch()
        SUMMARY[key] = str(tmp_path / key)
    p = _parse(render_index(SUMMARY))
    _assert_reads_like_a_report(p)
    text = " ".join(p.text)
    for shown in ("0.542", "0 errors, 2 warnings, 1 info", "1,234", "1.80x", "3.05e-05",
                  "orin-nano (INT8), t4 (INT8)", "123.5 → 222.2 images/s", "1.2 s"):
        assert shown in text, shown
    assert p.tags.count("svg") == 1 and p.tags.count("rect") == len(STEP_TITLES)
    for title in STEP_TITLES.values():
        assert any(title in t for t in p.text), title
    assert (tmp_path / "evaluation_report").as_uri() in p.links


HOP = {"kind": "export", "source": "/r/best.pt", "target": "/m/model.onnx", "images": 40,
       "map50_95_before": 0.6123456, "map50_95_after": 0.6098765, "map50_before": 0.9,
       "map50_after": 0.8999999, "box_agreement": 0.987654, "max_abs_diff": 1.9073486e-05,
       "at": "2026-11-20T10:11:12+00:00", "map_drop_pts": 0.24691}


@pytest.mark.parametrize("hops", [[HOP], [HOP, {**HOP, "kind": "quantize-int8",
                                               "source": "/m/model.onnx",
                                               "target": "/m/model_int8.onnx",
                                               "max_abs_diff": None}], []],
                         ids=["one-hop", "two-hops", "none"])
def test_fidelity_page_is_a_report(hops: list[dict[str, Any]]) -> None:
    p = _parse(render_fidelity_page(hops))
    _assert_reads_like_a_report(p)
    text = " ".join(p.text)
    if hops:
        assert "0.612 → 0.610" in text and "-0.2 pt" in text and "98.8 %" in text
        assert p.tags.count("svg") == 1 and p.tags.count("rect") == len(hops) + 1
        assert "model.onnx" in text and "/m/" not in text
    else:
        assert "No hop measured yet" in text
